"""Start-up of ``convocate-host`` against ``python3 -c pass``, before and after, same run.

Each command runs as a fresh process, interleaved with the others, after warm-up runs:
``python -c pass`` (the floor), ``convocate-host --help``, ``convocate-host agents --json``
on an empty registry and on a registry of one reachable agent (a fake-runtime agent on
loopback), twice: through the standing tunnel of a real status service probing that registry
(``convocate status serve``, found through its config file: the default on an installed
shell host; start-up and one Ping on its socket) and with ``--direct`` (start-up, one SSH
handshake and one Ping), ``import common, asyncssh, grpc.aio`` alone (what talking SSH to
an agent must load), and the command line with every module `agents` loads for an agent,
loaded as it loads them, each way (the whole command but its registry, network and Ping: the
rest of its CPU is those). The "before" rows run the base
revision's code and packages through PYTHONPATH (:mod:`benchmarks.before_tree`), with
bytecode compiled for both as an installed ``convocate-host`` has it.

``python -m benchmarks startup`` runs this suite alone and writes ``results/startup.md``;
``CONVOCATE_BENCH_BASE=REV`` picks the "before" revision (an A/B of one change).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.before_tree import before_tree
from benchmarks.report import QUICK, Row, host_line, median, write_markdown
from tests.support.fleet import prepare_agent
from tests.support.status_stack import status_config, write_status_toml

__all__ = ["COMMANDS", "FLOOR", "IMPORTS", "LOADED", "LOADED_SHARED", "measure", "rows", "run"]

RUNS = 5 if QUICK.on else 15
WARMUP = 2
FLOOR = "python -c pass (baseline)"
IMPORTS = "import common, asyncssh, grpc.aio (what talking to an agent loads)"
LOADED = "the command line and what asking an agent directly loads, loaded as `agents --direct` loads them"
LOADED_SHARED = ("the command line and what asking an agent through the status service loads, loaded as "
                 "`agents` loads them")
# hostctl.cli, then hostctl.fleet's TRANSPORT (and, direct, SSH_TRANSPORT) as survey_now loads it
# (collection paused, then frozen), frozen again at exit as main() does: everything `agents` runs
# before and after its registry, SSH handshake, forward and Ping.
# Logging as the command's callback sets it up: structlog only when something logs (nothing here).
CLI_LOGGING = ("from common.logging import configure_logging_on_first_use\n"
               "configure_logging_on_first_use('cli', level='WARNING')\n")
LOADED_CODE = ("import importlib, hostctl.cli, hostctl.fleet\n" + CLI_LOGGING +
               "from common.startup_gc import freeze_at_exit, paused_while_loading\n"
               "with paused_while_loading():\n"
               "    for name in (*hostctl.fleet.TRANSPORT, *hostctl.fleet.SSH_TRANSPORT):\n"
               "        importlib.import_module(name)\n"
               "freeze_at_exit()\n")
# The same through the status service: its configuration read and checked, no SSH transport.
LOADED_SHARED_CODE = ("import importlib, hostctl.cli, hostctl.fleet\n" + CLI_LOGGING +
                      "from common.startup_gc import freeze_at_exit, paused_while_loading\n"
                      "import hostctl.shared_tunnel, common.config, shell.status.config\n"
                      "with paused_while_loading():\n"
                      "    for name in hostctl.fleet.TRANSPORT:\n"
                      "        importlib.import_module(name)\n"
                      "freeze_at_exit()\n")
BARE = "convocate-host version (the command line alone)"
HELP, EMPTY = "convocate-host --help", "convocate-host agents --json, empty registry"
ONE_SHARED = "convocate-host agents --json, one reachable agent, through the status service's tunnel"
ONE = "convocate-host agents --json --direct, one reachable agent"
COMMANDS = (HELP, EMPTY, ONE_SHARED, ONE)
# Where loading goes: the child's own CPU per layer, in the order `agents` loads them (the
# command line with collection on, the rest paused as survey_now pauses it). Each layer counts
# only what the layers before it did not load.
SPLIT = "split: "
SPLIT_CODE = ("import json, time\n"
              "out, t = {}, time.process_time()\n"
              "def took(name):\n"
              "    global t\n"
              "    now = time.process_time()\n"
              "    out[name], t = (now - t) * 1000, now\n"
              "import hostctl.cli\n" + CLI_LOGGING +
              "took('typer and the command line')\n"
              "import gc, importlib\n"
              "gc.disable()\n"
              "import asyncio\n"
              "took('asyncio (ssl, concurrent.futures...)')\n"
              "import asyncssh\n"
              "took('asyncssh (cryptography included)')\n"
              "import grpc.aio\n"
              "took('grpc, grpc.aio')\n"
              "import google.protobuf.descriptor_pool\n"
              "took('protobuf runtime')\n"
              "import hostctl.fleet\n"
              "for name in (*hostctl.fleet.TRANSPORT, *hostctl.fleet.SSH_TRANSPORT):\n"
              "    importlib.import_module(name)\n"
              "took(\"convocate's client: generated messages, domain types, tunnel, calls\")\n"
              "print(json.dumps(out))\n")
TARGET_MS = 150.0
TIMEOUT = 60.0   # seconds one run may take before it is killed
AGENT_INDEX = 20   # the agent listens on 127.0.0.22: clear of the other suites' addresses


def _time(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system, children included) milliseconds of one run of ``argv``.

    The wait blocks until the process ends; a timer kills it after TIMEOUT s. (``wait`` with
    a timeout polls, sleeping up to 50 ms between looks: it added up to 50 ms to every wall
    time measured here, e.g. 117 ms for a --help that takes 80.)
    """
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        watchdog = threading.Timer(TIMEOUT, proc.kill)
        watchdog.start()
        try:
            status = proc.wait()
        finally:
            watchdog.cancel()
    wall = (time.perf_counter() - t0) * 1000
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if status != 0:
        raise subprocess.CalledProcessError(status, argv)
    return wall, (cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime) * 1000


@contextmanager
def _one_agent(root: Path) -> Iterator[tuple[Path, Path]]:
    """A registry holding one running fake-runtime agent and a status service process probing it.

    Yields the registry directory and the service's config file (``CONVOCATE_CONFIG`` for
    the command: how it finds the service's tunnels), once its tunnel to the agent is up.
    """
    registry = root / "registry-one"
    agent = prepare_agent(root / "agents", registry, AGENT_INDEX, None)
    config = status_config(root / "st", heartbeat_interval=30.0, registry_dir=registry)
    toml = write_status_toml(config, root / "status.toml")
    agent.start()
    try:
        with (root / "status.log").open("wb") as log:
            service = subprocess.Popen([sys.executable, "-m", "shell.main", "status", "serve", "--config",
                                        str(toml)], stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT)
        try:
            sock = config.probe_sockets / f"{agent.agent_id}.sock"
            deadline = time.monotonic() + TIMEOUT
            while not sock.is_socket():
                if service.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the status service has no tunnel to {agent.agent_id}: "
                                       f"{(root / 'status.log').read_text(errors='replace')[-1000:]}")
                time.sleep(0.1)
            yield registry, toml
        finally:
            service.terminate()
            try:
                service.wait(15)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait(5)
    finally:
        agent.stop()


def _measure_sync() -> tuple[dict[str, list[float]], str]:
    with tempfile.TemporaryDirectory(prefix="cvs-") as d:
        root = Path(d)
        empty = root / "registry"
        empty.mkdir()
        base_path, note = before_tree(root / "base")
        host = [sys.executable, "-m", "hostctl"]
        # PYTHONSAFEPATH: `python -m` would otherwise put the working directory first.
        now = {**os.environ, "CONVOCATE_LOG_LEVEL": "WARNING", "PYTHONSAFEPATH": "1"}
        before = {**now, "PYTHONPATH": base_path}
        with _one_agent(root) as (one, toml):
            # The status service's config file for every run: the base revision ignores it.
            now["CONVOCATE_CONFIG"] = before["CONVOCATE_CONFIG"] = str(toml)
            cases: dict[str, tuple[list[str], dict[str, str]]] = {
                FLOOR: ([sys.executable, "-c", "pass"], now),
                IMPORTS: ([sys.executable, "-c", "import common, asyncssh, grpc.aio"], now),
                LOADED: ([sys.executable, "-c", LOADED_CODE], now),
                LOADED_SHARED: ([sys.executable, "-c", LOADED_SHARED_CODE], now),
                BARE: ([*host, "version"], now),
            }
            ask_one = ["agents", "--json", "--registry", str(one)]
            # A base revision without --direct asks directly without it (it has no status service
            # to share); one with it must be given it, or its "before" would go through the service.
            base_help = subprocess.run([*host, "agents", "--help"], env=before, capture_output=True,
                                       text=True, check=True, timeout=TIMEOUT).stdout
            base_direct = [*ask_one, "--direct"] if "--direct" in base_help else ask_one
            for name, args, base_args in (
                    (HELP, ["--help"], ["--help"]),
                    (EMPTY, ["agents", "--json", "--registry", str(empty)], None),
                    (ONE_SHARED, ask_one, ask_one),
                    (ONE, [*ask_one, "--direct"], base_direct)):
                cases[name] = ([*host, *args], now)
                cases[f"{name}, before"] = ([*host, *(base_args or args)], before)
            for name, via in ((ONE_SHARED, "status-service"), (ONE, "direct")):   # each goes the way it says
                argv, env = cases[name]
                done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True,
                                      timeout=TIMEOUT)
                reached = [row["via"] for row in json.loads(done.stdout)]
                if reached != [via]:
                    raise RuntimeError(f"{name}: the agent was reached {reached}, not {via}: {done.stderr}")
            out: dict[str, list[float]] = {}
            for i in range(WARMUP + RUNS):
                for name, (argv, env) in cases.items():
                    wall, cpu = _time(argv, env)
                    if i >= WARMUP:
                        out.setdefault(name, []).append(wall)
                        out.setdefault(f"{name} (CPU)", []).append(cpu)
                split = subprocess.run([sys.executable, "-c", SPLIT_CODE], env=now, capture_output=True,
                                       text=True, check=True, timeout=TIMEOUT)
                if i >= WARMUP:
                    for layer, ms in json.loads(split.stdout).items():
                        out.setdefault(f"{SPLIT}{layer}", []).append(ms)
    return out, note


async def measure() -> tuple[dict[str, list[float]], str]:
    """Wall-clock and CPU (key + " (CPU)") milliseconds per case, and what "before" ran."""
    return await asyncio.to_thread(_measure_sync)


def rows(st: dict[str, list[float]], note: str) -> list[Row]:
    """One row per command: wall time against the 150 ms target, CPU (the robust figure) in the why."""
    floor, floor_cpu = median(st[FLOOR]), median(st[f"{FLOOR} (CPU)"])
    imports_cpu = median(st[f"{IMPORTS} (CPU)"])
    loaded_cpu = median(st[f"{LOADED} (CPU)"])
    loaded_shared_cpu = median(st[f"{LOADED_SHARED} (CPU)"])
    bare_cpu = median(st[f"{BARE} (CPU)"])
    out = []
    for cmd in COMMANDS:
        wall, wall_before = median(st[cmd]), median(st[f"{cmd}, before"])
        cpu, cpu_before = median(st[f"{cmd} (CPU)"]), median(st[f"{cmd}, before (CPU)"])
        cpu_verdict = "within" if cpu <= TARGET_MS else "over"
        why = (f"CPU {cpu:.0f} ms ({cpu_verdict} 150 ms; before {cpu_before:.0f} ms, python -c pass "
               f"{floor_cpu:.0f} ms); wall before {wall_before:.0f} ms ({note}). Wall time on a shared "
               "machine includes waiting for a core; CPU time does not")
        if cmd == EMPTY:
            why += (f". The command line alone (`version`) takes {bare_cpu:.0f} ms CPU; reading the empty "
                    f"registry and printing add {cpu - bare_cpu:.0f} ms")
        if cmd == ONE_SHARED:
            why += (". Before (the base revision has no sharing) it made its own SSH connection. Where the "
                    f"CPU goes: python, the command line and every module it loads this way (no asyncssh, no "
                    f"cryptography), loaded as it loads them, {loaded_shared_cpu:.0f} ms (of which python -c "
                    f"pass {floor_cpu:.0f} ms); the rest {cpu - loaded_shared_cpu:.0f} ms: the status "
                    "service's configuration and socket checks, registry, Ping on the service's socket, "
                    "teardown")
        if cmd == ONE:
            why += (f". Where the CPU goes: python, the command line and every module it loads, loaded as "
                    f"it loads them, {loaded_cpu:.0f} ms (of which python -c pass {floor_cpu:.0f} ms; "
                    f"`import common, asyncssh, grpc.aio` alone, collected as usual, takes {imports_cpu:.0f} "
                    f"ms); the rest {cpu - loaded_cpu:.0f} ms: registry, SSH handshake, forward, Ping, "
                    "teardown (the agent's own CPU is not counted; its share of a core is in the wall time). "
                    "Loading, layer by layer: " + ", ".join(f"{k.removeprefix(SPLIT)} {median(v):.0f} ms"
                                                             for k, v in st.items() if k.startswith(SPLIT)))

        def within(_ratio: float, value: float = wall) -> bool:
            return value <= TARGET_MS

        out.append(Row(f"`{cmd}` start-up (wall)", "python -c pass", wall, floor, "ms", "≤ 150 ms wall",
                       within, why))
    return out


def run() -> None:
    """Measure start-up alone (now against CONVOCATE_BENCH_BASE) and write results/startup.md."""
    st, note = asyncio.run(measure())
    names = [FLOOR, IMPORTS, LOADED, LOADED_SHARED, BARE, *COMMANDS]
    table = ["| command | wall p50 (ms) | CPU p50 (ms) | before: wall p50 (ms) | before: CPU p50 (ms) |",
             "|---|---|---|---|---|"]
    for name in names:
        before = [f"{median(st[f'{name}, before{k}']):.0f}" if f"{name}, before{k}" in st else "-"
                  for k in ("", " (CPU)")]
        table.append(f"| {name} | {median(st[name]):.0f} | {median(st[f'{name} (CPU)']):.0f} | "
                     f"{' | '.join(before)} |")
    layers = {k.removeprefix(SPLIT): median(v) for k, v in st.items() if k.startswith(SPLIT)}
    split = ["| layer | CPU p50 (ms) |", "|---|---|", *(f"| {k} | {ms:.1f} |" for k, ms in layers.items())]
    write_markdown("startup", [
        "# `convocate-host` start-up, now and before, in the same run", "", host_line(), "",
        (f"{RUNS} runs of each, interleaved, after {WARMUP} warm-up rounds; CPU is user + system time of "
         f"the process and its children; {note}."), "", *table, "",
        ("Where loading goes, in the order `agents` loads it (each layer: what the ones before did not "
         "load; the CPU of one process, python's own start excluded):"), "", *split, "",
        "| figure | baseline | measured | baseline value | ratio | target | met or missed, and why |",
        "|---|---|---|---|---|---|---|",
        *("| " + " | ".join(r.cells()) + " |" for r in rows(st, note)),
    ])
