"""The demo's non-interactive check: create, attach, type, detach, kill, delete.

It goes through the same router and Attach stream the console uses, so a passing
smoke test means the console would work on this machine.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from common.client.attach_call import AttachHandle
from common.domain import AttachEnded, AttachStarted
from common.errors import UnavailableError
from shell.console.config import ShellConfig
from shell.console.runner import router_config
from shell.fleet.model import SessionRow
from shell.fleet.router import Router

__all__ = ["STEP_TIMEOUT", "smoke_test"]

STEP_TIMEOUT = 60.0


async def _until(what: str, check: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STEP_TIMEOUT
    while not check():
        if loop.time() > deadline:
            raise UnavailableError(f"demo smoke test: {what} did not happen within {STEP_TIMEOUT:.0f} s")
        await asyncio.sleep(0.1)


def _row(router: Router, session_id: str) -> SessionRow | None:
    return next((r for r in router.rows() if r.id == session_id), None)


async def _type_and_read(call: AttachHandle, session_id: str) -> str:
    """Attach, run ``echo``, wait for its output, detach; return what was seen."""
    await call.start(session_id, rows=24, cols=80, term="xterm")
    seen = b""
    sent = False
    try:
        async with asyncio.timeout(STEP_TIMEOUT):
            while b"smoke-42" not in seen:
                frame = await call.read()
                if frame is None or isinstance(frame, AttachEnded):
                    break
                if isinstance(frame, bytes):
                    seen += frame
                if not sent and isinstance(frame, bytes | AttachStarted):
                    await call.send_input(b"echo smoke-$((6*7))\r")
                    sent = True
            await call.detach()
    except TimeoutError:
        pass
    finally:
        call.cancel()
    return seen.decode(errors="replace")


async def smoke_test(config: ShellConfig, agent_id: str, say: Callable[[str], None]) -> None:
    """Create a session on ``agent_id``, type into it, then kill and delete it.

    Raises:
        UnavailableError: a step did not complete in time.
        ConvocateError: an operation failed.
    """
    runtime_dir = Path(tempfile.mkdtemp(prefix="cvc-", dir=config.runtime_base))
    try:
        async with Router(router_config(config, runtime_dir)) as router:
            await _until(f"agent {agent_id} reachable",
                         lambda: any(a.agent_id == agent_id and a.reachable for a in router.agents()))
            row = await router.create(agent_id, "demo-smoke", 0, "tcp", "", start=True)
            say(f'[demo] created session "{row.name}" ({row.id[:8]})')
            await _until("the session running", lambda: bool((r := _row(router, row.id)) and r.running))
            seen = await _type_and_read(router.attach_call(row.id), row.id)
            if "smoke-42" not in seen:
                raise UnavailableError(f"demo smoke test: no echo from the session (saw {seen[-200:]!r})")
            say("[demo] attached, typed a command and saw its output")
            await router.kill(row.id)
            await _until("the session stopped", lambda: bool((r := _row(router, row.id)) and not r.running))
            await router.delete(row.id)
            await _until("the session deleted", lambda: _row(router, row.id) is None)
            say("[demo] smoke test passed: create, attach, type, kill, delete")
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)
