"""The real Claude CLI at its welcome screen: memory and idle CPU of one session (scale on paper).

The scale-on-paper section counts how many sessions one agent host holds; with the real
CLI in each, the CLI's own memory decides it. This suite measures it instead of assuming
it: one real agent on :data:`HOST` whose session image is the production image (the
Debian toolset and the Claude CLI from npm, :mod:`agent.production_image`; built by
``nox -s image-production`` or here, cached by content), :data:`N` sessions created and
started through the tunnel, each CLI on its welcome screen (no API key: "Missing API
key"; onboarding done, as after an operator's first start). Side by side, a second agent
on :data:`BASE_HOST` runs the same number of sessions of the offline image (tmux and a
shell: what a session costs without a CLI), measured the same way.

Per session container, after :data:`SETTLE` seconds: the memory of every process in its
cgroup from ``/proc/PID/smaps_rollup``: USS (private pages: what one more session adds),
PSS (shared pages split among their users) and RSS; the cgroup's own anonymous memory
(``total_rss``, as :mod:`benchmarks.idle_cpu` reads it); the CPU it used over
:data:`WINDOW` seconds (``cpuacct.usage``). A CLI that works on a conversation holds more
than one waiting at its prompt: this is the floor of a real session, not its ceiling.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from agent.sessions import container_name
from benchmarks.idle_cpu import cgroup_dir, cgroup_rss_bytes, cpu_usage_ns, shim_rss_mib
from benchmarks.report import QUICK, Figures, Row, host_line, median, write_markdown
from benchmarks.scale import CliCosts
from common.client.calls import AgentCalls
from common.tunnel import Tunnel
from tests.support.agent_proc import AgentProcess
from tests.support.images import ensure_offline_image
from tests.support.production import LOGO, ensure_production_image, lay_out_cli_home

__all__ = ["figures", "run"]

N = 2 if QUICK.on else 4
SETTLE = 10.0 if QUICK.on else 60.0    # after the last welcome screen: the CLIs go on starting for a while
WINDOW = 5.0 if QUICK.on else 30.0
SCREEN_TIMEOUT = 180.0                 # a cold node start on a busy 2-core machine
HOST, BASE_HOST = "127.0.0.25", "127.0.0.26"   # clear of the other suites' agents
CLI_UID = 1337                         # the session user of the production image
CLI_SET, BASE_SET = "production image (the Claude CLI)", "offline image (tmux and a shell)"


@dataclass
class SetFigures:
    """Means per session container of one set, and the per-process detail of its first one."""

    uss_mib: float
    pss_mib: float
    rss_mib: float
    cgroup_rss_mib: float
    cpu_pct: float
    processes: dict[str, float]     # command name -> PSS (MiB) per session: summed, then the mean
    shim_mib: float


def _rollup_kib(pid: str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return out   # ended in between
    for line in text.splitlines()[1:]:
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            out[key] = int(value.split()[0])
    return out


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return "?"


def _memory(container: str) -> tuple[dict[str, float], dict[str, float]]:
    """(USS, PSS, RSS and the cgroup's total_rss in MiB; PSS by command name) of one container."""
    group = cgroup_dir(container, "memory")
    totals: dict[str, float] = defaultdict(float)
    by_comm: dict[str, float] = defaultdict(float)
    for pid in (group / "cgroup.procs").read_text().split():
        kib = _rollup_kib(pid)
        totals["uss"] += (kib.get("Private_Clean", 0) + kib.get("Private_Dirty", 0)) / 1024
        totals["pss"] += kib.get("Pss", 0) / 1024
        totals["rss"] += kib.get("Rss", 0) / 1024
        by_comm[_comm(pid)] += kib.get("Pss", 0) / 1024
    totals["cgroup_rss"] = cgroup_rss_bytes(container) / 2**20
    return dict(totals), dict(by_comm)


async def _start(agent: AgentProcess, n: int, screen: str | None) -> tuple[list[str], list[float]]:
    """Create and start ``n`` sessions, one at a time, through a tunnel to ``agent``; with ``screen``,
    wait for each session's pane to show it before the next. Returns the ids and, for each, the
    seconds from its create call to the screen."""
    ids: list[str] = []
    seconds: list[float] = []
    async with Tunnel(agent.tunnel_settings()) as tunnel:
        await tunnel.wait_up(15)
        calls = AgentCalls(agent.agent_id, lambda: tunnel.channel, call_timeout=120)
        for i in range(n):
            t0 = time.monotonic()
            ids.append((await calls.create(f"mem-{i}", 0, "tcp", "", start=True)).id)
            if screen:
                await _wait_screen(calls, ids[-1], screen, t0)
                seconds.append(time.monotonic() - t0)
    return ids, seconds


async def _wait_screen(calls: AgentCalls, session_id: str, needle: str, t0: float) -> None:
    """Return once the session's pane shows ``needle`` (bounded by :data:`SCREEN_TIMEOUT` from ``t0``)."""
    last = ""
    while time.monotonic() - t0 < SCREEN_TIMEOUT:
        last = (await calls.peek(session_id)).text
        if needle in last:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"session {session_id}: {needle!r} not on its screen after {SCREEN_TIMEOUT:.0f} s; "
                       f"last screen:\n{last}")


def _cli_version_seconds(container: str) -> float:
    """Median wall time of ``claude --version`` run in ``container`` as the session user: the CLI's
    own start (node loading its bundle), with nothing of convocate in it."""
    times = []
    for _ in range(3):
        t0 = time.monotonic()
        subprocess.run(["docker", "exec", "-u", str(CLI_UID), container, "claude", "--version"],
                       capture_output=True, timeout=120, check=True)
        times.append(time.monotonic() - t0)
    return median(times)


async def _measure() -> tuple[dict[str, SetFigures], list[float], float, str]:
    built = await asyncio.to_thread(ensure_production_image)
    offline = await asyncio.to_thread(ensure_offline_image)
    with tempfile.TemporaryDirectory(prefix="cvc-") as d:
        root = Path(d)
        lay_out_cli_home(root / "cli")
        agents = {CLI_SET: AgentProcess(root / "cli", host=HOST, image=built.tags[0], name="cli"),
                  BASE_SET: AgentProcess(root / "base", host=BASE_HOST, image=offline, name="base")}
        try:
            for agent in agents.values():
                await agent.astart()
            ids, screens = await _start(agents[CLI_SET], N, LOGO)
            # The offline image's shell prompt has no fixed text to wait for (it shows at once).
            ids_base, _ = await _start(agents[BASE_SET], N, None)
            sessions = {CLI_SET: ids, BASE_SET: ids_base}
            await asyncio.sleep(SETTLE)   # nothing to wait on: the CLIs' start-up work settles
            containers = {name: [container_name(s) for s in sids] for name, sids in sessions.items()}
            before = {c: cpu_usage_ns(c) for cs in containers.values() for c in cs}
            t0 = time.monotonic()
            await asyncio.sleep(WINDOW)
            seconds = time.monotonic() - t0
            out: dict[str, SetFigures] = {}
            for name, cs in containers.items():
                mem = [_memory(c) for c in cs]
                cpu = [(cpu_usage_ns(c) - before[c]) / 1e9 / seconds * 100 for c in cs]

                def mean(key: str, mem: list[tuple[dict[str, float], dict[str, float]]] = mem) -> float:
                    return sum(m[0].get(key, 0.0) for m in mem) / len(mem)

                by_comm: dict[str, float] = defaultdict(float)
                for _, comms in mem:
                    for comm, mib in comms.items():
                        by_comm[comm] += mib / len(mem)
                out[name] = SetFigures(mean("uss"), mean("pss"), mean("rss"), mean("cgroup_rss"),
                                       sum(cpu) / len(cpu), dict(by_comm), shim_rss_mib(cs[0]))
            version_s = await asyncio.to_thread(_cli_version_seconds, containers[CLI_SET][0])
        finally:
            for agent in agents.values():
                await asyncio.to_thread(agent.close)
    return out, screens, version_s, built.cli_version


def _write(sets: dict[str, SetFigures], screens: list[float], version_s: float, cli_version: str) -> None:
    rows = [[name, f"{s.uss_mib:.1f}", f"{s.pss_mib:.1f}", f"{s.rss_mib:.1f}", f"{s.cgroup_rss_mib:.1f}",
             f"{s.shim_mib:.1f}", f"{s.cpu_pct:.3f}"] for name, s in sets.items()]
    cli = sets[CLI_SET]
    lines = [
        "# The real Claude CLI at its welcome screen: one session's memory and idle CPU", "",
        host_line(), "",
        (f"{N} sessions of each image through a real agent each ({HOST}: the production image, Claude CLI "
         f"{cli_version}; {BASE_HOST}: the offline image), created and started through the tunnel one at "
         "a time; from the create call to the CLI's welcome screen in its pane (read with PeekSession "
         f"every 50 ms): {median(screens):.2f} s (median; slowest {max(screens):.2f} s), of which the CLI's "
         f"own start is most (`claude --version` in a session container: {version_s:.2f} s); measured "
         f"{SETTLE:.0f} s after the last, CPU over {WINDOW:.0f} s. Means per session "
         "container, in MiB and % of one core:"), "",
        "| image | USS (private) | PSS | RSS | cgroup total_rss | its containerd-shim (RSS) | idle CPU |",
        "|---|---|---|---|---|---|---|",
        *("| " + " | ".join(r) + " |" for r in rows), "",
        ("USS counts the pages only this container's processes map: what one more session adds to the "
         "host. PSS splits the shared pages (the node binary and the CLI's files, one copy in the page "
         f"cache for all {N}) among their users; RSS counts them whole in each."), "",
        "PSS by program, per CLI session (mean):", "",
        "| program | PSS (MiB) |", "|---|---|",
        *(f"| {comm} | {mib:.1f} |" for comm, mib in sorted(cli.processes.items(), key=lambda kv: -kv[1])),
        "",
        "No API key is given, so the CLI waits at its prompt; one working on a conversation holds more.",
        "",
        ("The CLI's start is mostly node compiling the CLI's bundle (one JavaScript file of several MB). "
         "The image keeps the distribution's node, updated with the rest of the system; the time to a "
         "session's first screen with the real CLI is this start, not convocate's part, which the "
         "first-screen figure measures with the offline image."),
    ]
    write_markdown("real_cli", lines)


async def figures() -> Figures:
    """Measure; write results/real_cli.md; rows and the scale section's inputs."""
    sets, screens, version_s, version = await _measure()
    _write(sets, screens, version_s, version)
    cli, base = sets[CLI_SET], sets[BASE_SET]
    why = (f"see real_cli.md: {N} sessions of each image; PSS {cli.pss_mib:.0f} MiB, RSS {cli.rss_mib:.0f} "
           "MiB (the node binary and the CLI's files counted whole); the CLI waits at its prompt with no "
           f"API key (a conversation holds more); its welcome screen showed {median(screens):.2f} s after "
           "the create call (median)")
    rows = [
        Row(f"memory of one session, the real Claude CLI {version} at its welcome screen (USS)",
            "a session of the offline image (tmux and a shell)", cli.uss_mib, base.uss_mib, "MiB",
            "(no target; the scale section's input)", lambda _x: True, why, reference=True),
        Row(f"idle CPU of one session, the real Claude CLI {version} at its welcome screen",
            "a session of the offline image (tmux and a shell)", cli.cpu_pct, base.cpu_pct, "% of a core",
            "(no target; the scale section's input)", lambda _x: True,
            f"mean of {N} over {WINDOW:.0f} s; the CLI's own timers, not convocate's", reference=True),
    ]
    costs = CliCosts(cli_uss_mib=cli.uss_mib, cli_pss_mib=cli.pss_mib, cli_idle_cpu_pct=cli.cpu_pct,
                     cli_shim_mib=cli.shim_mib)
    return Figures(rows=rows, inputs=costs.inputs())


def run() -> None:
    """Run this suite alone: results/real_cli.md."""
    asyncio.run(figures())
