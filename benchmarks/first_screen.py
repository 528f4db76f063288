"""N in the console to the new session's first screen, in a real terminal against a real agent.

The console runs in a private tmux server (:mod:`tests.support.console_fleet`: one real
agent on 127.0.0.2, the status service) and is driven with ``tmux send-keys``; the screen
is read with ``capture-pane`` in a tight bounded loop, so each time is "keys sent" to
"the screen shows it", with the loop's interval as its resolution.

One round: N (the create form opens: one agent), the name typed, Enter (the form is
submitted; the console creates and starts the session and selects its row, but does not
attach by itself), Enter on the new row until the session's first screen (its shell
prompt) shows; Ctrl-B d; then Enter on the same, now running, session again (attach
alone) and detach. The baseline, in the same round: a bare ``docker run -d`` of the same
image (the container's own create-to-running). Then, in the same run, a console of the base
revision (``BASE``) and this tree's alternate N -> form -> created against the same agent
(before/after). Writes results/first_screen.md.
"""

from __future__ import annotations

import asyncio
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
AB_ROUNDS = 3 if QUICK.on else 8     # N -> form -> created on the base console and this tree's, alternating
# The console before an ended operation (a create) was drawn at once: it waited for prompt_toolkit's
# 50 ms minimum redraw interval behind the router's watch events (CONVOCATE_BENCH_BASE overrides).
BASE = "5caa888"
AB_STEPS = ("form", "created")
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
    exec_attach: list[float] = field(default_factory=list)     # docker exec -it tmux attach (baseline)
    direct_create: list[float] = field(default_factory=list)   # the agent's create, called directly
    direct_attach: list[float] = field(default_factory=list)   # the agent's attach, called directly
    ab: dict[str, dict[str, list[float]]] = field(   # A/B: step -> before/after -> times
        default_factory=lambda: {s: {"before": [], "after": []} for s in AB_STEPS})
    sends: list[float] = field(default_factory=list)           # one tmux send-keys call
    polls: list[float] = field(default_factory=list)           # one capture-pane (resolution)


def _until(term: TmuxTerminal, pattern: str, t: _Times, timeout: float = 30.0) -> float:
    """Capture the pane in a tight loop until ``pattern`` shows; the monotonic time it did."""
    deadline = time.monotonic() + timeout
    compiled = re.compile(pattern, re.MULTILINE)
    screen = ""
    for _ in range(100_000):
        before = time.monotonic()
        screen = term.capture()
        now = time.monotonic()
        t.polls.append(now - before)
        if compiled.search(screen):
            return now
        if now > deadline:
            break
    raise AssertionError(f"{pattern!r} not on screen within {timeout} s:\n{screen}")


def _send(term: TmuxTerminal, t: _Times, *keys: str) -> float:
    """Send keys; return the time just before (the keypress)."""
    t0 = time.monotonic()
    term.send_keys(*keys)
    t.sends.append(time.monotonic() - t0)
    return t0


def _docker_run(image: str, label: str) -> float:
    t0 = time.monotonic()
    subprocess.run(["docker", "run", "-d", "--label", label, "-e", "TERM=screen", image],
                   capture_output=True, check=True, timeout=120)
    return time.monotonic() - t0


def _exec_attach(host: TmuxTerminal, container: str, t: _Times) -> None:
    """Baseline: ``docker exec -it CTR tmux attach`` typed at a shell in its own terminal."""
    host.type(f"clear; docker exec -it -u claude {container} tmux attach -t claude")
    t0 = _send(host, t, "Enter")
    t.exec_attach.append(_until(host, PROMPT, t) - t0)
    host.send_keys("C-b", "d")
    host.wait_for(r"^\[detached", timeout=20)


def _detach(term: TmuxTerminal, name: str) -> None:
    term.send_keys("C-b", "d")
    # The table is back: its notice, or its help line if a newer notice (a late heartbeat, say)
    # has already replaced it.
    term.wait_for(rf'Detached from "{name}"|\(N\)ew \(C\)lone', timeout=20)


def _round(term: TmuxTerminal, i: int, t: _Times) -> None:
    name = f"fs-{i}"
    t_n = _send(term, t, "n")
    shown = _until(term, r"Create on agent", t)
    t.steps[STEPS[0]].append(shown - t_n)
    term.type(name)
    t_submit = _send(term, t, "Enter")
    created = _until(term, rf'Created session "{name}"', t)
    t.steps[STEPS[1]].append(created - t_submit)
    t_enter = _send(term, t, "Enter")
    first = _until(term, PROMPT, t)
    t.steps[STEPS[2]].append(first - t_enter)
    t.total.append(first - t_n)
    _detach(term, name)
    for _ in range(REATTACH):
        t_enter = _send(term, t, "Enter")
        t.attach.append(_until(term, PROMPT, t) - t_enter)
        _detach(term, name)


def _ab(terms: dict[str, TmuxTerminal], t: _Times) -> None:
    """N until the create form shows, then a name and Enter until the session is created and selected.

    The base console and this tree's alternate, round after round, against the same agent.
    """
    for i in range(AB_ROUNDS):
        order = list(terms.items()) if i % 2 == 0 else list(reversed(terms.items()))
        for side, term in order:
            _quiet(_console_pid(term))    # the other console's create has been drawn here too
            t0 = _send(term, t, "n")
            t.ab["form"][side].append(_until(term, r"Create on agent", t) - t0)
            name = f"ab-{side}-{i}"
            term.type(name)
            t0 = _send(term, t, "Enter")
            t.ab["created"][side].append(_until(term, rf'Created session "{name}"', t) - t0)


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


async def _rounds(fleet: Fleet, term: TmuxTerminal, host: TmuxTerminal, image: str, label: str,
                  ) -> tuple[_Times, list[str]]:
    t = _Times()
    prof: list[str] = []
    term.wait_for(r"agents 1 up", timeout=60)
    agent = fleet.agents[0]
    async with Tunnel(agent.tunnel_settings()) as tunnel:
        await tunnel.wait_up(30)
        calls = AgentCalls(agent.agent_id, lambda: tunnel.channel, call_timeout=60)
        console = _console_pid(term)
        for i in range(ROUNDS):
            await asyncio.to_thread(_quiet, console)
            await asyncio.to_thread(_round, term, i, t)
            container = _container(agent.agent_id)
            await asyncio.to_thread(_exec_attach, host, container, t)
            for _ in range(REATTACH):
                session_id = container.removeprefix("convocate-session-")
                t.direct_attach.append(await _direct_attach(tunnel, session_id))
            # The baselines last: the console digests the direct create's watch events before the
            # next round's N (a round measures the operator's keys, not that create's redraws).
            t.docker_run.append(await asyncio.to_thread(_docker_run, image, label))
            t0 = time.monotonic()
            await calls.create(f"direct-{i}", 0, "tcp", "", start=True)
            t.direct_create.append(time.monotonic() - t0)
    if not QUICK.on and profile.available():
        assert agent.proc is not None
        await asyncio.to_thread(_quiet, console)
        targets: dict[str, int | None] = {"console": console, "agent": agent.proc.pid}
        extra = asyncio.to_thread(_round, term, ROUNDS, _Times())
        prof = await profile.sample(targets, extra, fleet.root / "prof",
                                    f"one more round (N, create, attach, {REATTACH} re-attaches)")
    return t, prof


async def _measure(image: str, root: Path) -> tuple[_Times, list[str]]:
    label = f"convocate.bench=first-screen-{uuid.uuid4().hex[:8]}"
    tmux = require_tool("tmux")
    base = root / "base"
    base.mkdir()
    export_tree(os.environ.get("CONVOCATE_BENCH_BASE") or BASE, base)
    with console_fleet(root, ("127.0.0.2",), image) as fleet:
        term = start_console(fleet, TmuxTerminal(tmux, width=110, height=30), "console.log")
        with python_path(base):   # the tmux server (started here) passes it to the console
            before = start_console(fleet, TmuxTerminal(tmux, width=110, height=30), "console-base.log")
        host = TmuxTerminal(tmux, width=110, height=30)
        try:
            host.start(["sh"], {})
            before.wait_for(r"agents 1 up", timeout=60)
            t, prof = await _rounds(fleet, term, host, image, label)
            await asyncio.to_thread(_ab, {"before": before, "after": term}, t)
            return t, prof
        finally:
            for each in (term, before, host):
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
    poll = median(t.polls) * 1000
    create_extra = median(t.steps[STEPS[1]]) - median(t.direct_create)
    attach_extra = median(t.steps[STEPS[2]]) - median(t.direct_attach)
    own = median(t.steps[STEPS[0]]) + create_extra + attach_extra
    base = os.environ.get("CONVOCATE_BENCH_BASE") or BASE
    lines = ["# N in the console to the new session's first screen", "", host_line(), "",
             (f"{ROUNDS} rounds, one real agent on 127.0.0.2, the console in a 110x30 tmux pane; "
              f"times in ms, median (p90). Screen polled with capture-pane in a tight loop: one poll "
              f"takes {poll:.1f} ms (median), which is the resolution; one send-keys "
              f"{median(t.sends) * 1000:.1f} ms. The console does not attach after a create: it selects "
              'the new row and says "press Enter on it to attach", so the round presses Enter.'), "",
             "| step | ms |", "|---|---|"]
    lines += [f"| {step} | {_ms(v)} |" for step, v in t.steps.items()]
    lines += [(f"| **sum of the steps** (keys to screen; typing the name and harness gaps left out) | "
               f"**{total * 1000:.0f}** |"),
              f"| N to the first screen, wall (with typing the name and the harness) | {_ms(t.total)} |",
              (f"| baseline: bare `docker run -d` of the same image (create-to-running) | "
               f"{_ms(t.docker_run)} |"),
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
              (f"Before/after in the same run (two consoles side by side on the same agent, alternating, "
               f"{AB_ROUNDS} rounds; before = `{base}`: an ended create waited for the 50 ms minimum "
               "redraw interval behind the watch events' redraws; after: router changes are batched on "
               "their own, what the operator caused is drawn at once): N to the create form, before "
               f"{_ms(t.ab['form']['before'])} ms, after {_ms(t.ab['form']['after'])} ms; the form "
               f"submitted to the session created and selected, before {_ms(t.ab['created']['before'])} ms, "
               f"after {_ms(t.ab['created']['after'])} ms."), "", *prof]
    write_markdown("first_screen", lines)
    rows = [
        Row("N in the console to the new session's first screen (sum of the steps)",
            "bare docker run -d (create-to-running)", total * 1000, run * 1000, "ms", "≤ 300 ms",
            lambda _x: total <= 0.3,
            (f"the container's create-to-running alone is {run * 1000:.0f} ms here; the rest (total - "
             f"docker run) is {console_part * 1000:.0f} ms; the console itself "
             f"adds {own * 1000:.0f} ms (form {median(t.steps[STEPS[0]]) * 1000:.0f}, create over the "
             f"agent's {create_extra * 1000:.0f}, attach over the agent's {attach_extra * 1000:.0f}); "
             "the rest is the agent's create and docker exec; see first_screen.md")),
        Row("Enter on a running session to its first screen (attach alone)",
            "docker exec -it CTR tmux attach in a terminal", attach * 1000, exec_attach * 1000, "ms",
            "(no target; part of the above)", lambda _x: True),
        Row("form submitted to the session created and selected, after / before in the same run",
            f"the console before an ended create was drawn at once ({base})",
            median(t.ab["created"]["after"]) * 1000, median(t.ab["created"]["before"]) * 1000, "ms",
            "(no target; part of the first row)", lambda _x: True),
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
