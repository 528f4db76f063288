"""A console driven by pipe input against the fake router and a recording attacher."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.input.base import PipeInput
from prompt_toolkit.output import DummyOutput, Output
from prompt_toolkit.output.vt100 import Vt100_Output

from common.domain import AttachMode
from shell.attach.outcome import AttachOutcome
from shell.console.app import ConsoleParts, build_console
from shell.console.state import ConsoleState
from shell.fleet.model import AgentRow, SessionRow
from tests.fakes.fake_router import FakeRouter
from tests.support.waiting import assert_eventually


@dataclass
class RecordingAttacher:
    """Records attach calls and returns ``outcome`` after ``hold`` seconds."""

    outcome: AttachOutcome = field(default_factory=lambda: AttachOutcome("detached"))
    hold: float = 0.0
    calls: list[tuple[SessionRow, AttachMode, bytes]] = field(default_factory=list)

    async def __call__(self, row: SessionRow, mode: AttachMode, pending: bytes) -> AttachOutcome:
        self.calls.append((row, mode, pending))
        await asyncio.sleep(self.hold)
        return self.outcome


class ScreenOutput(Vt100_Output):
    """A VT100 output of a fixed size that keeps everything written (the drawn text, BELs)."""

    def __init__(self, columns: int, rows: int) -> None:
        self.buffer = io.StringIO()
        super().__init__(self.buffer, lambda: Size(rows=rows, columns=columns), term="xterm")

    def fileno(self) -> int:
        """No file behind it."""
        raise io.UnsupportedOperation("fileno")

    def text(self) -> str:
        """What was written, escape sequences removed (drawn text only)."""
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]", "", self.buffer.getvalue())


@dataclass
class Harness:
    """A running console and the handles a test needs."""

    parts: ConsoleParts
    inp: PipeInput
    router: FakeRouter
    attacher: RecordingAttacher
    task: asyncio.Task[None]

    def send(self, text: str) -> None:
        self.inp.send_text(text)

    async def until(self, check: Callable[[], object], timeout: float = 5.0) -> None:
        await assert_eventually(lambda: bool(check()), timeout=timeout)

    @property
    def state(self) -> ConsoleState:
        return self.parts.state

    def dialog_title(self) -> str:
        d = self.parts.state.dialog
        return d.title.strip() if d else ""


Start = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_console() -> AsyncIterator[Start]:
    """Start consoles on demand; stop them all at the end."""
    started: list[Harness] = []
    stack: list[object] = []

    async def start(agents: list[AgentRow] | None = None, rows: list[SessionRow] | None = None,
                    attacher: RecordingAttacher | None = None, output: Output | None = None,
                    bell: bool = False) -> Harness:
        cm = create_pipe_input()
        inp = cm.__enter__()
        stack.append(cm)
        router = FakeRouter(agents, rows)
        rec = attacher or RecordingAttacher()
        parts = build_console(router, attacher=rec, input=inp, output=output or DummyOutput(), bell=bell)
        task = asyncio.create_task(parts.app.run_async())
        await asyncio.sleep(0.05)
        h = Harness(parts, inp, router, rec, task)
        started.append(h)
        return h

    yield start
    for h in started:
        if not h.task.done():
            h.parts.app.exit()
        await asyncio.wait_for(h.task, 5)
    for cm in stack:
        cm.__exit__(None, None, None)  # type: ignore[attr-defined]


def agent(agent_id: str, reachable: bool = True, error: str = "") -> AgentRow:
    """A registered agent row."""
    return AgentRow(agent_id=agent_id, address="127.0.0.2", reachable=reachable, last_error=error)
