"""Viewers started ahead (agent.viewer_prime) on a fake runtime: the line, taking, expiry, dropping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.attach_manager import AttachManager
from agent.config import AgentConfig
from agent.events import AgentEvent
from agent.manager import SessionManager
from agent.runtime import ContainerInfo
from agent.viewer_prime import PRIME_MARK, PRIME_SCRIPT, PrimeRequest, ViewerPrimes, prime_line
from agent.viewers import Mode, ViewerRegistry
from tests.fakes.fake_runtime import FakeRuntime, FakeTerminal
from tests.support.waiting import assert_eventually

SID = "0b4c1f7e-8a59-4d1e-9c3a-2f6f1b7d9e10"


def _req(**kw: object) -> PrimeRequest:
    fields: dict[str, object] = {"viewer_id": "a1b2c3", "rows": 30, "cols": 110, "mode": Mode.DRIVE,
                                 "term": "xterm-256color"}
    fields.update(kw)
    return PrimeRequest(**fields)  # type: ignore[arg-type]


def test_the_line_carries_id_size_mode_and_terminal_type() -> None:
    assert prime_line(_req()) == b"a1b2c3 30 110 drive xterm-256color\n"
    assert prime_line(_req(mode=Mode.TAKE_OVER)) == b"a1b2c3 30 110 drive xterm-256color\n"
    assert prime_line(_req(mode=Mode.OBSERVE, term="screen")) == b"a1b2c3 30 110 observe screen\n"


@pytest.mark.parametrize("change", [
    {"term": "xterm 256"}, {"term": ""}, {"term": "x" * 65}, {"term": "xterm;reboot"}, {"term": "-x"},
    {"viewer_id": "A1"}, {"viewer_id": "a b"}, {"rows": 0}, {"cols": -1}, {"rows": 10_001},
])
def test_what_cannot_be_one_word_of_known_characters_gets_no_line(change: dict[str, object]) -> None:
    """Such an attach takes a fresh exec (which gets its terminal type as an environment variable)."""
    assert prime_line(_req(**change)) is None


def _running(runtime: FakeRuntime) -> None:
    runtime.containers[SID] = ContainerInfo(SID, f"convocate-session-{SID}", True)


async def _ready(runtime: FakeRuntime, primes: ViewerPrimes) -> FakeTerminal:
    primes.prime(SID)
    await assert_eventually(lambda: runtime.terminals)
    argv, terminal = runtime.terminals[-1]
    assert argv == ["/bin/sh", "-c", PRIME_SCRIPT]
    terminal.feed(b"\r\n" + PRIME_MARK)
    await assert_eventually(lambda: primes.ready(SID))
    return terminal


async def test_an_attach_takes_the_ready_prime_with_its_line() -> None:
    runtime = FakeRuntime()
    _running(runtime)
    primes = ViewerPrimes(runtime, "claude", ttl=60)
    try:
        terminal = await _ready(runtime, primes)
        assert await primes.take(SID, _req()) is terminal
        assert terminal.written == [b"a1b2c3 30 110 drive xterm-256color\n"]
        assert primes.taken == 1
        assert await primes.take(SID, _req()) is None          # one attach per prime
        assert not terminal.closed
    finally:
        await primes.close()
    assert not terminal.closed   # a taken prime is the viewer's: close() leaves it alone


async def test_a_prime_still_starting_is_waited_for() -> None:
    runtime = FakeRuntime()
    _running(runtime)
    primes = ViewerPrimes(runtime, "claude", ttl=60)
    try:
        primes.prime(SID)
        take = asyncio.create_task(primes.take(SID, _req()))
        await assert_eventually(lambda: runtime.terminals)
        terminal = runtime.terminals[-1][1]
        assert not take.done()
        terminal.feed(PRIME_MARK)
        assert await asyncio.wait_for(take, 5) is terminal
    finally:
        await primes.close()


async def test_a_prime_that_never_gets_ready_is_closed_and_not_used() -> None:
    runtime = FakeRuntime()
    _running(runtime)
    primes = ViewerPrimes(runtime, "claude", ttl=60)
    try:
        primes.prime(SID)
        assert await primes.take(SID, _req(), wait=0.05) is None
        terminal = runtime.terminals[-1][1]
        await assert_eventually(lambda: terminal.closed)
    finally:
        await primes.close()


async def test_a_prime_whose_shell_ends_early_is_not_used() -> None:
    runtime = FakeRuntime()
    _running(runtime)
    primes = ViewerPrimes(runtime, "claude", ttl=60)
    try:
        primes.prime(SID)
        await assert_eventually(lambda: runtime.terminals)
        terminal = runtime.terminals[-1][1]
        terminal.feed(b"sh: stty: not found\r\n")
        terminal.feed(None)
        assert await primes.take(SID, _req()) is None
        assert terminal.closed
    finally:
        await primes.close()


async def test_an_unsafe_request_leaves_the_prime_for_the_next_attach() -> None:
    runtime = FakeRuntime()
    _running(runtime)
    primes = ViewerPrimes(runtime, "claude", ttl=60)
    try:
        terminal = await _ready(runtime, primes)
        assert await primes.take(SID, _req(term="bad term")) is None
        assert terminal.written == []
        assert await primes.take(SID, _req()) is terminal
    finally:
        await primes.close()


async def test_an_unused_prime_is_told_to_exit_after_its_ttl() -> None:
    runtime = FakeRuntime()
    _running(runtime)
    primes = ViewerPrimes(runtime, "claude", ttl=0.05)
    try:
        primes.prime(SID)
        await assert_eventually(lambda: runtime.terminals)
        terminal = runtime.terminals[-1][1]
        terminal.feed(PRIME_MARK)
        await assert_eventually(lambda: terminal.closed)
        assert terminal.written == [b"\n"]          # an empty line: the shell exits
        assert await primes.take(SID, _req()) is None
    finally:
        await primes.close()


async def test_close_ends_every_prime() -> None:
    runtime = FakeRuntime()
    _running(runtime)
    primes = ViewerPrimes(runtime, "claude", ttl=60)
    terminal = await _ready(runtime, primes)
    await primes.close()
    assert terminal.closed
    assert terminal.written == [b"\n"]


async def test_at_most_max_live_primes_at_a_time() -> None:
    """A script starting many sessions gets primes for the first few only."""
    runtime = FakeRuntime()
    primes = ViewerPrimes(runtime, "claude", ttl=60, max_live=2)
    ids = [f"0b4c1f7e-8a59-4d1e-9c3a-2f6f1b7d9e1{i}" for i in range(3)]
    try:
        for sid in ids:
            primes.prime(sid)
        await assert_eventually(lambda: len(runtime.terminals) == 2)
        for _, terminal in runtime.terminals:
            terminal.feed(PRIME_MARK)
        await assert_eventually(lambda: primes.ready(ids[0]) and primes.ready(ids[1]))
        assert not primes.ready(ids[2])
        assert await primes.take(ids[0], _req()) is runtime.terminals[0][1]   # taken: room again
        primes.prime(ids[2])
        await assert_eventually(lambda: len(runtime.terminals) == 3)
    finally:
        await primes.close()


async def test_ttl_zero_never_primes() -> None:
    runtime = FakeRuntime()
    _running(runtime)
    primes = ViewerPrimes(runtime, "claude", ttl=0)
    primes.prime(SID)
    assert await primes.take(SID, _req()) is None
    await primes.close()
    assert runtime.terminals == []


class _Sink:
    def publish(self, event: AgentEvent) -> None:
        pass


@pytest.fixture
async def manager(tmp_path: Path) -> AsyncIterator[tuple[SessionManager, FakeRuntime]]:
    """A started manager whose attach manager primes viewers."""
    runtime, registry = FakeRuntime(), ViewerRegistry()
    config = AgentConfig(sessions_root=tmp_path, config_dir=tmp_path / "etc", dns_server="")
    attach = AttachManager(runtime, registry, user="claude", prime_ttl=60)
    m = SessionManager(config, runtime, agent_id="a1", events=_Sink(), registry=registry, attach=attach)
    await m.start()
    try:
        yield m, runtime
    finally:
        await m.close()
        await attach.close()


async def test_an_operators_start_primes_and_a_stop_drops_the_prime(
    manager: tuple[SessionManager, FakeRuntime],
) -> None:
    m, runtime = manager
    created = await m.create("plain", 0, "", "", start=False)
    assert runtime.terminals == []                     # not started: nothing to attach to
    view = await m.create("one", 0, "", "", start=True)
    await assert_eventually(lambda: len(runtime.terminals) == 1)
    terminal = runtime.terminals[0][1]
    terminal.feed(PRIME_MARK)
    await m.kill(view.record.id)
    await assert_eventually(lambda: terminal.closed)
    await m.restart(view.record.id)                    # an operator's restart primes again
    await assert_eventually(lambda: len(runtime.terminals) == 2)
    await m.restart(created.record.id)
    await assert_eventually(lambda: len(runtime.terminals) == 3)


async def test_the_first_attach_after_a_create_takes_the_prime(
    manager: tuple[SessionManager, FakeRuntime],
) -> None:
    m, runtime = manager
    view = await m.create("one", 0, "", "", start=True)
    await assert_eventually(lambda: runtime.terminals)
    runtime.terminals[0][1].feed(PRIME_MARK)
    viewer = await m.attach.open(view.record.id, Mode.DRIVE, 40, 120, "screen")
    try:
        assert viewer.terminal is runtime.terminals[0][1]
        assert runtime.terminals[0][1].written == [f"{viewer.id} 40 120 drive screen\n".encode()]
        assert runtime.terminals[0][1].sizes == []      # the shell sizes its own terminal
        second = await m.attach.open(view.record.id, Mode.OBSERVE, 50, 150, "screen")
        assert second.terminal is runtime.terminals[1][1]       # a fresh exec, sized by the engine
        assert runtime.terminals[1][0][4] == second.id
        assert runtime.terminals[1][1].sizes == [(50, 150)]
        m.attach.release(second)
    finally:
        m.attach.release(viewer)
