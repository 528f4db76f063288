"""Viewers started ahead (agent.viewer_prime) with a real agent, real Docker and real tmux.

The first attach after a create becomes the shell the agent started ahead (the same
process, now ``tmux attach-session``) with the attach's own size, terminal type and mode;
until then that shell is no tmux client; an unused one exits after its time to live.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from convocate.v1 import attach_pb2

from agent.sessions import container_name
from agent.viewer_prime import SCRIPT_TIMEOUT
from tests.integration.agent.conftest import HOST, Client, open_client
from tests.support.agent_proc import AgentProcess
from tests.support.attach_stream import AttachStream
from tests.support.waiting import assert_eventually

pytestmark = [pytest.mark.docker]


WATCHDOG = f"sleep {SCRIPT_TIMEOUT}"


def _processes(session_id: str) -> dict[int, str]:
    """The container's processes: pid -> command line."""
    out = subprocess.run(["docker", "top", container_name(session_id), "-eo", "pid,args"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    procs: dict[int, str] = {}
    for line in out.splitlines()[1:]:
        pid, _, args = line.strip().partition(" ")
        procs[int(pid)] = args.strip()
    return procs


def _tmux(session_id: str, *args: str) -> str:
    return subprocess.run(["docker", "exec", "-u", "claude", container_name(session_id), "tmux", *args],
                          capture_output=True, text=True, timeout=30, check=False).stdout


async def _see(view: AttachStream, text: str) -> None:
    """Wait until ``text`` shows in ``view``; fail with what it showed."""
    try:
        await view.wait_for(text, timeout=20)
    except AssertionError as e:
        raise AssertionError(f"{text!r} not seen; the viewer got {view.text[-400:]!r}") from e


async def _primed_shell(session_id: str) -> int:
    """The pid of the session's primed shell, once it waits for its line."""
    def waiting() -> int | None:
        procs = _processes(session_id)
        if WATCHDOG not in procs.values():      # started just before the shell reads its line
            return None
        shells = [pid for pid, args in procs.items() if "convocate-primed" in args]
        return min(shells) if shells else None

    pid: int = await assert_eventually(lambda: asyncio.to_thread(waiting), timeout=20)
    return pid


async def test_the_first_attach_becomes_the_primed_shell_with_its_own_size_and_terminal(
    client: Client,
) -> None:
    s = await client.create("primed", start=True)
    shell = await _primed_shell(s.id)
    assert _tmux(s.id, "list-clients").strip() == ""      # waiting, it is no tmux client
    view = AttachStream(client.attach, s.id, rows=33, cols=101, term="screen")
    try:
        await view.wait_started()
        await _see(view, "$")
        view.type("tmux display -p 'T=#{client_termname} S=#{client_width}x#{client_height}'; stty size\r")
        await _see(view, "T=screen S=101x33")
        await _see(view, "33 101")
        assert "tmux attach-session" in _processes(s.id)[shell]   # the same process, now the viewer
        view.detach()                                          # its per-viewer detach works too
        end = await view.wait_end()
        assert end.reason == attach_pb2.END_REASON_DETACHED
    finally:
        await view.close()
    again = AttachStream(client.attach, s.id, rows=24, cols=80)   # the next attach: a fresh exec
    try:
        await again.wait_started()
        await _see(again, "$")                  # tmux is attached: keys reach the shell
        await again.wait_stty_size(24, 80)
    finally:
        await again.close()


async def test_an_observer_taking_the_prime_neither_types_nor_resizes(client: Client) -> None:
    s = await client.create("primedobs", start=True)
    await _primed_shell(s.id)
    observer = AttachStream(client.attach, s.id, rows=50, cols=150, mode=attach_pb2.ATTACH_MODE_OBSERVE)
    driver: AttachStream | None = None
    try:
        await observer.wait_started()
        await _see(observer, "$")
        observer.type("echo OBS-$((1+1))\r")
        driver = AttachStream(client.attach, s.id, rows=24, cols=80)
        await driver.wait_started()
        await _see(driver, "$")
        driver.type("echo DRV-$((2+3)); tmux display -p 'W=#{window_width}x#{window_height}'\r")
        await _see(observer, "DRV-5")
        await _see(driver, "W=80x24")
        assert "OBS-2" not in driver.text
        assert "OBS-2" not in observer.text
    finally:
        await observer.close()
        if driver is not None:
            await driver.close()


@pytest.fixture
async def short_lived(offline_image: str) -> AsyncIterator[Client]:
    """A client of an agent whose unused primes live one second."""
    with tempfile.TemporaryDirectory(prefix="cvp-") as d:
        proc = AgentProcess(Path(d), host=HOST, image=offline_image, name="ttl",
                            config={"viewer_prime_ttl": 1.0})
        await proc.astart()
        try:
            c = await open_client(proc)
            try:
                yield c
            finally:
                await c.tunnel.close()
        finally:
            await asyncio.to_thread(proc.close)


async def test_an_unused_prime_exits_after_its_time_to_live(short_lived: Client) -> None:
    s = await short_lived.create("expires", start=True)
    shell = await _primed_shell(s.id)

    def gone() -> bool:
        procs = _processes(s.id)
        return shell not in procs and WATCHDOG not in procs.values()   # its watchdog went with it

    await assert_eventually(lambda: asyncio.to_thread(gone), timeout=20)
    view = AttachStream(short_lived.attach, s.id, rows=30, cols=90)   # attaching still works
    try:
        await view.wait_started()
        await _see(view, "$")
        await view.wait_stty_size(30, 90)
    finally:
        await view.close()
