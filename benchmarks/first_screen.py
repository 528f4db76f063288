"""N in the console to the new session's first screen, in a real terminal against a real agent.

The console runs in a private tmux server (:mod:`tests.support.console_fleet`: one real
agent on 127.0.0.2, the status service) and is driven with ``tmux send-keys``; the screen
is watched through the pane's output (:class:`benchmarks.pane_watch.PaneWatch`: captured
only after new output, never in a tight loop whose tmux processes would load the machine
the create runs on), so each time is "keys sent" to "the output that made the screen show
it reached the pane".

One round: N (the create form opens: one agent), the name typed, Enter (the form is
submitted; the console creates and starts the session and selects its row, but does not
attach by itself), Enter on the new row until the session's first screen (its shell
prompt) shows; Ctrl-B d; then Enter on the same, now running, session again (attach
alone) and detach. The baseline, in the same round: a bare ``docker run -d`` of the same
image (the container's own create-to-running). Then, in the same run, the base revision
(``BASE``: its console, agent and status service, on 127.0.0.3) and this tree's alternate
whole rounds, N to the first screen (before/after). Writes results/first_screen.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import profile
from benchmarks.agent_session import python_path
from benchmarks.keystroke_ab import export_tree
from benchmarks.pane_watch import PaneWatch
from benchmarks.report import QUICK, Figures, Row, host_line, median, percentile, write_markdown
from common.client.attach_call import AttachCall
from common.client.calls import AgentCalls
from common.domain import AttachEnded, AttachMode
from common.tunnel import Tunnel
from tests.support.agent_proc import remove_labelled_containers
from tests.support.console_fleet import Fleet, console_fleet, start_console
from tests.support.env import require_tool
from tests.support.images import ensure_offline_image
from tests.support.tmux import TmuxTerminal

__all__ = ["figures", "run"]

ROUNDS = 2 if QUICK.on else 6
AB_ROUNDS = 4 if QUICK.on else 16    # whole rounds on the base revision and this tree, alternating
LOOK = 0.3      # s an operator takes to see the new row before Enter (every other A/B round)
# Before the first attach after a create took a viewer the agent started ahead (CONVOCATE_BENCH_BASE
# overrides).
BASE = "27a9705"
AB_STEPS = ("form", "created", "first screen (Enter at once)", "total (Enter at once)",
            f"first screen (Enter {LOOK:g} s after the row shows)")
REATTACH = 2 if QUICK.on else 3      # attaches to the running session per round
PROMPT = r"^\$ ?$"                   # the session's shell prompt: its first screen
STEPS = ("N: the create form shows", "form submitted: the session is created and its row selected",
         "Enter on the new row: the first screen shows")


@dataclass
class _Times:
    steps: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})
    total: list[float] = field(default_factory=list)           # N to the first screen, wall
    attach: list[float] = field(default_factory=list)          # Enter on a running session
    docker_run: list[float] = field(default_factory=list)      # bare docker run -d (baseline)
    docker_run_same: list[float] = field(default_factory=list)  # docker run -d, the session's options
    # What docker run's own time is made of: without a network of its own (the host's), and
    # with a namespace but no network in it (--network none)
    docker_run_host: list[float] = field(default_factory=list)
    docker_run_none: list[float] = field(default_factory=list)
    exec_attach: list[float] = field(default_factory=list)     # docker exec -it tmux attach (baseline)
    direct_create: list[float] = field(default_factory=list)   # the agent's create, called directly
    direct_attach: list[float] = field(default_factory=list)   # the agent's attach, called directly
    ab: dict[str, dict[str, list[float]]] = field(   # A/B: step -> before/after -> times
        default_factory=lambda: {s: {"before": [], "after": []} for s in AB_STEPS})
    sends: list[float] = field(default_factory=list)           # one tmux send-keys call
    captures: list[int] = field(default_factory=list)          # capture-pane calls per wait


def _press(watch: PaneWatch, t: _Times, *keys: str) -> tuple[float, int]:
    """Send keys; return the time just before (the keypress) and the pane's output mark."""
    since = watch.mark()
    t0 = time.monotonic()
    watch.term.send_keys(*keys)
    t.sends.append(time.monotonic() - t0)
    return t0, since


def _until(watch: PaneWatch, pattern: str, since: int, t: _Times, timeout: float = 30.0) -> float:
    """The time the output that made the screen show ``pattern`` reached the pane."""
    before = watch.captures
    shown = watch.until(pattern, since, timeout)
    t.captures.append(watch.captures - before)
    return shown


def _docker_run(image: str, label: str, options: tuple[list[str], list[str]] = ([], []), *,
                remove: bool = False) -> float:
    """Seconds of one ``docker run -d``; ``remove``: the container goes at once (else with the label's)."""
    t0 = time.monotonic()
    done = subprocess.run(["docker", "run", "-d", "--label", label, "-e", "TERM=screen", *options[0], image,
                           *options[1]], capture_output=True, text=True, check=True, timeout=120)
    took = time.monotonic() - t0
    if remove:
        subprocess.run(["docker", "rm", "-f", done.stdout.strip()], capture_output=True, check=True,
                       timeout=120)
    return took


def _session_options(container: str, scratch: Path) -> tuple[list[str], list[str]]:
    """``docker run`` flags and command for the options the agent gave ``container``.

    Its mounts, capabilities, no-new-privileges, PID limit, DNS, cgroup parent, environment,
    host name, working directory and command; each mount's source replaced by an empty one of
    the same kind and owner under ``scratch`` (the session's own are its), and none of its
    labels (the agent would take the container for a session).
    """
    out = subprocess.run(["docker", "inspect", "--format", "{{json .}}", container], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    data = json.loads(out)
    host, config = data["HostConfig"], data["Config"]
    flags = ["--rm"] if host.get("AutoRemove") else []
    flags += [f"--cap-drop={c}" for c in host.get("CapDrop") or []]
    flags += [f"--cap-add={c}" for c in host.get("CapAdd") or []]
    flags += [f"--security-opt={o}" for o in host.get("SecurityOpt") or []]
    flags += [f"--pids-limit={host['PidsLimit']}"] if host.get("PidsLimit") else []
    flags += [f"--dns={d}" for d in host.get("Dns") or []]
    flags += [f"--cgroup-parent={host['CgroupParent']}"] if host.get("CgroupParent") else []
    for i, bind in enumerate(host.get("Binds") or []):
        source, _, rest = bind.partition(":")
        fresh = scratch / f"m{i}"
        if Path(source).is_dir():
            fresh.mkdir(parents=True, exist_ok=True)
        else:
            fresh.parent.mkdir(parents=True, exist_ok=True)
            fresh.touch()
        with contextlib.suppress(OSError):
            st = Path(source).stat()
            os.chown(fresh, st.st_uid, st.st_gid)
        flags.append(f"--volume={fresh}:{rest}")
    flags += [f"--env={e}" for e in config.get("Env") or []]
    flags += [f"--hostname={config['Hostname']}"] if config.get("Hostname") else []
    flags += [f"--workdir={config['WorkingDir']}"] if config.get("WorkingDir") else []
    return flags, list(config.get("Cmd") or [])


def _exec_attach(host: PaneWatch, container: str, t: _Times) -> None:
    """Baseline: ``docker exec -it CTR tmux attach`` typed at a shell in its own terminal."""
    host.term.type(f"clear; docker exec -it -u claude {container} tmux attach -t claude")
    t0, since = _press(host, t, "Enter")
    t.exec_attach.append(_until(host, PROMPT, since, t) - t0)
    host.term.send_keys("C-b", "d")
    host.term.wait_for(r"^\[detached", timeout=20)


def _detach(term: TmuxTerminal, name: str) -> None:
    term.send_keys("C-b", "d")
    # The table is back: its notice, or its help line if a newer notice (a late heartbeat, say)
    # has already replaced it.
    term.wait_for(rf'Detached from "{name}"|\(N\)ew \(C\)lone', timeout=20)
    # ... and the row no longer says attached (C) but running (R): the agent's "detached" event,
    # which may come after the end of the stream, has arrived (else Enter asks observe/take over).
    term.wait_for(rf"^\s*\d+\s+\| {re.escape(name)}\s.*\|\s*R\s*$", timeout=20)


def _first_screen(watch: PaneWatch, name: str, t: _Times, look: float = 0.0,
                  ) -> tuple[float, float, float, float]:
    """N, the name, Enter, Enter (``look`` s after the row shows): the times to the form, to
    created, to the first screen, and N to the first screen (wall); detached after."""
    t_n, since = _press(watch, t, "n")
    form = _until(watch, r"Create on agent", since, t) - t_n
    watch.term.type(name)
    t_submit, since = _press(watch, t, "Enter")
    created = _until(watch, rf'Created session "{name}"', since, t) - t_submit
    if look:
        time.sleep(look)
    t_enter, since = _press(watch, t, "Enter")
    first = _until(watch, PROMPT, since, t)
    _detach(watch.term, name)
    return form, created, first - t_enter, first - t_n


def _round(watch: PaneWatch, i: int, t: _Times) -> None:
    name = f"fs-{i}"
    form, created, first, total = _first_screen(watch, name, t)
    for step, value in zip(STEPS, (form, created, first), strict=True):
        t.steps[step].append(value)
    t.total.append(total)
    for _ in range(REATTACH):
        t_enter, since = _press(watch, t, "Enter")
        t.attach.append(_until(watch, PROMPT, since, t) - t_enter)
        _detach(watch.term, name)


def _ab(sides: dict[str, PaneWatch], t: _Times) -> None:
    """Whole rounds (N to the first screen) on the base revision and on this tree, alternating."""
    for i in range(AB_ROUNDS):
        order = list(sides.items()) if i % 2 == 0 else list(reversed(sides.items()))
        for side, watch in order:
            _quiet(_console_pid(watch.term))
            look = LOOK if i % 4 >= 2 else 0.0     # each side: two rounds at once, two with a look
            form, created, first, _wall = _first_screen(watch, f"ab-{side}-{i}", t, look)
            t.ab[AB_STEPS[0]][side].append(form)
            t.ab[AB_STEPS[1]][side].append(created)
            if look:
                t.ab[AB_STEPS[4]][side].append(first)
            else:
                t.ab[AB_STEPS[2]][side].append(first)
                t.ab[AB_STEPS[3]][side].append(form + created + first)


async def _direct_attach(tunnel: Tunnel, session_id: str) -> float:
    """The agent's attach alone: the Attach call opened until the prompt's bytes arrive."""
    call = AttachCall(tunnel.channel, "bench", client_id="first-screen")
    t0 = time.monotonic()
    try:
        await call.start(session_id, rows=30, cols=110, term="screen", mode=AttachMode.OBSERVE)
        seen = b""
        async with asyncio.timeout(30):
            while b"$" not in seen:
                frame = await call.read()
                if frame is None or isinstance(frame, AttachEnded):
                    raise RuntimeError(f"the attach ended: {frame!r}")
                if isinstance(frame, bytes):
                    seen += frame
        return time.monotonic() - t0
    finally:
        call.cancel()


def _pids(term: TmuxTerminal) -> list[int]:
    """The pane's processes: its shell and (recursively) its children."""
    out = subprocess.run([term.tmux, "-L", term.socket, "display-message", "-p", "-t", term.target,
                          "#{pane_pid}"], capture_output=True, text=True, timeout=10, check=True)
    pids: list[int] = []
    todo = [int(out.stdout.strip())]
    while todo and len(pids) < 50:
        pid = todo.pop()
        pids.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            todo += [int(c) for c in task.read_text().split()]
    return pids


def _console_pid(term: TmuxTerminal) -> int:
    for pid in _pids(term):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"python" in Path(argv[0].decode()).name.encode() and b"shell.main" in b" ".join(argv):
            return pid
    raise RuntimeError("the console process was not found in its pane")


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])     # utime + stime


def _quiet(pid: int, timeout: float = 5.0) -> None:
    """Wait (bounded) until the console has used no CPU for two 50 ms looks in a row."""
    deadline = time.monotonic() + timeout
    last, still = _cpu_ticks(pid), 0
    while still < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        now = _cpu_ticks(pid)
        still = still + 1 if now == last else 0
        last = now


def _container(agent_id: str) -> str:
    out = subprocess.run(["docker", "ps", "--latest", "--format", "{{.Names}}", "--filter",
                          f"label=convocate.agent={agent_id}"], capture_output=True, text=True, timeout=30,
                         check=True)
    return out.stdout.strip()


async def _rounds(fleet: Fleet, watch: PaneWatch, host: PaneWatch, image: str, label: str, t: _Times,
                  ) -> list[str]:
    prof: list[str] = []
    term = watch.term
    agent = fleet.agents[0]
    async with Tunnel(agent.tunnel_settings()) as tunnel:
        await tunnel.wait_up(30)
        calls = AgentCalls(agent.agent_id, lambda: tunnel.channel, call_timeout=60)
        console = _console_pid(term)
        for i in range(ROUNDS):
            await asyncio.to_thread(_quiet, console)
            await asyncio.to_thread(_round, watch, i, t)
            container = _container(agent.agent_id)
            await asyncio.to_thread(_exec_attach, host, container, t)
            for _ in range(REATTACH):
                session_id = container.removeprefix("convocate-session-")
                t.direct_attach.append(await _direct_attach(tunnel, session_id))
            # The baselines last: the console digests the direct create's watch events before the
            # next round's N (a round measures the operator's keys, not that create's redraws).
            t.docker_run.append(await asyncio.to_thread(_docker_run, image, label))
            same = _session_options(container, fleet.root / "same" / str(i))
            t.docker_run_same.append(await asyncio.to_thread(_docker_run, image, label, same))
            # These two go at once: the rounds after keep the containers they kept before.
            t.docker_run_host.append(await asyncio.to_thread(_docker_run, image, label,
                                                             (["--network", "host"], []), remove=True))
            t.docker_run_none.append(await asyncio.to_thread(_docker_run, image, label,
                                                             (["--network", "none"], []), remove=True))
            t0 = time.monotonic()
            await calls.create(f"direct-{i}", 0, "tcp", "", start=True)
            t.direct_create.append(time.monotonic() - t0)
    if not QUICK.on and profile.available():
        assert agent.proc is not None
        await asyncio.to_thread(_quiet, console)
        targets: dict[str, int | None] = {"console": console, "agent": agent.proc.pid}
        extra = asyncio.to_thread(_round, watch, ROUNDS, _Times())
        prof = await profile.sample(targets, extra, fleet.root / "prof",
                                    f"one more round (N, create, attach, {REATTACH} re-attaches)")
    return prof


async def _measure(image: str, root: Path) -> tuple[_Times, list[str]]:
    label = f"convocate.bench=first-screen-{uuid.uuid4().hex[:8]}"
    tmux = require_tool("tmux")
    base = root / "base"
    base.mkdir()
    export_tree(os.environ.get("CONVOCATE_BENCH_BASE") or BASE, base)
    terms: list[TmuxTerminal] = []

    def terminal() -> TmuxTerminal:
        terms.append(TmuxTerminal(tmux, width=110, height=30))
        return terms[-1]

    (root / "after").mkdir()
    (root / "before").mkdir()
    try:
        with contextlib.ExitStack() as stack:
            fleet = stack.enter_context(console_fleet(root / "after", ("127.0.0.2",), image))
            term = start_console(fleet, terminal(), "console.log")
            # The base revision's status service, agent and console (its tmux server passes the
            # path on): everything of the "before" side runs the base code.
            with python_path(base):
                base_fleet = stack.enter_context(console_fleet(root / "before", ("127.0.0.3",), image))
                before = start_console(base_fleet, terminal(), "console-base.log")
            host = terminal()
            host.start(["sh"], {})
            watch, before_watch, host_watch = (stack.enter_context(PaneWatch(x))
                                               for x in (term, before, host))
            before.wait_for(r"agents 1 up", timeout=60)
            term.wait_for(r"agents 1 up", timeout=60)
            # The A/B first, while both agents hold as many sessions (each running one polls).
            t = _Times()
            await asyncio.to_thread(_ab, {"before": before_watch, "after": watch}, t)
            prof = await _rounds(fleet, watch, host_watch, image, label, t)
            return t, prof
    finally:
        for each in terms:
            each.kill()
        await asyncio.to_thread(remove_labelled_containers, label)


def _ms(values: list[float]) -> str:
    return f"{median(values) * 1000:.0f} (p90 {percentile(values, 90) * 1000:.0f})"


def _report(t: _Times, prof: list[str]) -> Figures:
    steps = [median(v) for v in t.steps.values()]
    total = sum(steps)
    run, exec_attach, attach = median(t.docker_run), median(t.exec_attach), median(t.attach)
    console_part = total - run                 # what the brief calls the console's own part
    ours = total - run - exec_attach           # what convocate adds over docker run + docker exec attach
    captures = sum(t.captures) / max(len(t.captures), 1)
    create_extra = median(t.steps[STEPS[1]]) - median(t.direct_create)
    attach_extra = median(t.steps[STEPS[2]]) - median(t.direct_attach)
    own = median(t.steps[STEPS[0]]) + create_extra + attach_extra
    base = os.environ.get("CONVOCATE_BENCH_BASE") or BASE
    lines = ["# N in the console to the new session's first screen", "", host_line(), "",
             (f"{ROUNDS} rounds, one real agent on 127.0.0.2, the console in a 110x30 tmux pane; "
              "times in ms, median (p90), from the keys sent to the output that made the screen show "
              "the step reaching the pane (tmux pipe-pane; the screen is captured only after new "
              f"output: {captures:.1f} captures per step on average, no tight polling loop); one "
              f"send-keys {median(t.sends) * 1000:.1f} ms. The console does not attach after a create: "
              'it selects the new row and says "press Enter on it to attach", so the round presses '
              "Enter. The first attach after a create takes the viewer the agent started ahead when "
              "the create ended (it is ready or nearly so); the later attaches, and the agent's attach "
              "called directly, start a fresh exec."), "",
             "| step | ms |", "|---|---|"]
    lines += [f"| {step} | {_ms(v)} |" for step, v in t.steps.items()]
    lines += [(f"| **sum of the steps** (keys to screen; typing the name and harness gaps left out) | "
               f"**{total * 1000:.0f}** |"),
              f"| N to the first screen, wall (with typing the name and the harness) | {_ms(t.total)} |",
              (f"| baseline: bare `docker run -d` of the same image (create-to-running) | "
               f"{_ms(t.docker_run)} |"),
              (f"| baseline: `docker run -d` with the session's own options (mounts, capabilities, "
               f"no-new-privileges, PID limit, environment, command; scratch mount sources) | "
               f"{_ms(t.docker_run_same)} |"),
              (f"| where docker run's time goes: the same bare run with `--network none` (a network "
               f"namespace, no interface in it) | {_ms(t.docker_run_none)} |"),
              (f"| where docker run's time goes: the same bare run with `--network host` (no network "
               f"namespace of its own; not for a session, which must not see the host's loopback) | "
               f"{_ms(t.docker_run_host)} |"),
              (f"| the agent's create + start called directly through the tunnel (no console) | "
               f"{_ms(t.direct_create)} |"),
              (f"| baseline: `docker exec -it CTR tmux attach` typed in a terminal, to the first screen | "
               f"{_ms(t.exec_attach)} |"),
              f"| the console's own part (sum - docker run) | {console_part * 1000:.0f} |",
              f"| what convocate adds (sum - docker run - docker exec attach) | {ours * 1000:.0f} |",
              (f"| Enter on a running session to its first screen (attach alone, {len(t.attach)} times) | "
               f"{_ms(t.attach)} |"),
              (f"| the agent's attach called directly through the tunnel, to the prompt's bytes | "
               f"{_ms(t.direct_attach)} |"),
              (f"| **the console itself** (form + create over direct + attach over direct) | "
               f"**{own * 1000:.0f}** |"),
              "",
              (f"The console itself: the form step, its create step over the agent's create called directly "
               f"({create_extra * 1000:.0f} ms), its first attach over the agent's attach called directly "
               f"({attach_extra * 1000:.0f} ms; the console also waits for tmux to draw and the outer "
               "terminal to show it)."), "",
              (f"Before/after in the same run: `{base}` (its console, agent and status service, on "
               "127.0.0.3) and this tree (on 127.0.0.2), whole rounds alternating, "
               f"{AB_ROUNDS} each (half of them with Enter {LOOK:g} s after the new row shows, as an "
               "operator who looks at it first: the viewer the agent starts ahead is ready by then; at "
               "once it is still starting), times in ms, median (p90):"), "",
              "| step | before | after |", "|---|---|---|",
              *(f"| {step} | {_ms(t.ab[step]['before'])} | {_ms(t.ab[step]['after'])} |"
                for step in AB_STEPS),
              "", *prof]
    write_markdown("first_screen", lines)
    looked = sum(median(t.ab[step]["after"]) for step in (AB_STEPS[0], AB_STEPS[1], AB_STEPS[4]))
    rows = [
        Row("N in the console to the new session's first screen (sum of the steps)",
            "bare docker run -d (create-to-running)", total * 1000, run * 1000, "ms", "≤ 300 ms",
            lambda _x: total <= 0.3,
            (f"the container's create-to-running alone is {run * 1000:.0f} ms here; the rest (total - "
             f"docker run) is {console_part * 1000:.0f} ms; the console itself "
             f"adds {own * 1000:.0f} ms (form {median(t.steps[STEPS[0]]) * 1000:.0f}, create over the "
             f"agent's {create_extra * 1000:.0f}, attach over the agent's {attach_extra * 1000:.0f}); "
             "the rest is the agent's create and docker exec; with Enter "
             f"{LOOK:g} s after the row shows (the viewer started ahead is ready) the A/B's steps sum "
             f"to {looked * 1000:.0f} ms. Of docker run's {run * 1000:.0f} ms, its network namespace "
             f"and bridge take {(run - median(t.docker_run_host)) * 1000:.0f} (the same run with the "
             f"host's network: {median(t.docker_run_host) * 1000:.0f} ms; with --network none "
             f"{median(t.docker_run_none) * 1000:.0f}); see first_screen.md")),
        Row("Enter on a running session to its first screen (attach alone)",
            "docker exec -it CTR tmux attach in a terminal", attach * 1000, exec_attach * 1000, "ms",
            "(no target; part of the above)", lambda _x: True),
        Row("N to the first screen (sum of the steps), after / before in the same run",
            f"the base revision ({base}): no viewer started ahead",
            median(t.ab[AB_STEPS[3]]["after"]) * 1000, median(t.ab[AB_STEPS[3]]["before"]) * 1000, "ms",
            "(no target; the first row's A/B)", lambda _x: True),
        Row(f"first attach after a create, Enter {LOOK:g} s after the row shows, after / before",
            f"the base revision ({base}): a fresh viewer exec",
            median(t.ab[AB_STEPS[4]]["after"]) * 1000, median(t.ab[AB_STEPS[4]]["before"]) * 1000, "ms",
            "(no target; the viewer started ahead)", lambda _x: True),
    ]
    return Figures(rows, [])


async def figures() -> Figures:
    """Run the rounds (in threads: they block on tmux) and return the summary rows."""
    image = ensure_offline_image()
    with tempfile.TemporaryDirectory(prefix="cvf-") as d:
        return _report(*await _measure(image, Path(d)))


def run() -> None:
    """Run the first-screen suite alone."""
    asyncio.run(figures())
