"""The console's attach relay on a pty, for the keystroke benchmark (run as a child process).

``python -m benchmarks.relay_child SETTINGS_JSON SESSION_ID`` opens a tunnel to the agent,
starts an attach stream the way the console's ``StreamAttacher`` does (the call
``AgentClient.attach`` makes: the attach channel, or gRPC in a revision before it or with
an agent that refuses it) and runs the real :class:`shell.attach.relay.AttachRelay` on
stdin/stdout (the pty the benchmark holds), so the measured path includes the relay's raw
terminal, input queue and output writer. It exits when the stream ends (the benchmark
detaches with Ctrl-B d). Run with an older revision's code first on the path, it uses
that revision's modules throughout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from common.client.attach_call import AttachCall
from common.domain import AttachMode, AttachStarted
from common.tunnel import Tunnel, TunnelSettings
from shell.attach.relay import AttachRelay


def _console_call(tunnel: Tunnel, name: str) -> Any:
    """The stream the console's ``AgentClient.attach`` makes in the revision that runs this."""
    try:
        from common.client.attach_channel_call import AttachChannelCall  # noqa: PLC0415 - absent before it
    except ImportError:         # a revision before the attach channel: its console attached over gRPC
        return AttachCall(tunnel.channel, name)
    return AttachChannelCall(tunnel, name, fallback=lambda: AttachCall(tunnel.channel, name))


async def _main(settings: TunnelSettings, session_id: str) -> int:
    async with Tunnel(settings) as tunnel:
        await tunnel.wait_up(15)
        call = _console_call(tunnel, settings.name)
        try:
            await call.start(session_id, rows=24, cols=80, term="xterm")
            early = b""
            async with asyncio.timeout(20):
                while not isinstance(frame := await call.read(), AttachStarted):
                    if frame is None:
                        return 1
                    if isinstance(frame, bytes):
                        early += frame
            relay = AttachRelay(call, agent_id=settings.name, mode=AttachMode.DRIVE, early_output=early)
            outcome = await relay.run()
        finally:
            call.cancel()
    return 0 if outcome.reason == "detached" else 1


def main() -> int:
    """Parse the arguments and relay until the stream ends."""
    known = {f.name for f in dataclasses.fields(TunnelSettings)}   # an older revision has fewer
    raw = {k: v for k, v in json.loads(sys.argv[1]).items() if k in known}
    for key in ("client_key", "known_hosts", "local_socket"):
        raw[key] = Path(raw[key])
    if "encryption_algs" in raw:
        raw["encryption_algs"] = tuple(raw["encryption_algs"])
    return asyncio.run(_main(TunnelSettings(**raw), sys.argv[2]))


if __name__ == "__main__":
    sys.exit(main())
