"""`convocate-host tunnel`: a local socket forwarded to a peer's gRPC socket, for grpcurl.

Keeps the tunnel up (reconnecting like every client does) until interrupted, and
prints the ready-to-paste grpcurl command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

from common.logging import get_logger
from common.paths import private_runtime_dir
from common.tunnel import Tunnel, TunnelSettings

__all__ = ["default_socket", "run_tunnel"]

log = get_logger(__name__)


async def run_tunnel(settings: TunnelSettings, *, ready_timeout: float, once: bool = False) -> str:
    """Open the tunnel, report the socket, and hold it until SIGINT/SIGTERM.

    Args:
        settings: where the peer is and which keys to use.
        ready_timeout: how long to wait for the first connection.
        once: return right after the tunnel is up (for scripts that only check it).

    Returns:
        The local socket path.

    Raises:
        UnavailableError: the peer could not be reached within ``ready_timeout``.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Tunnel(settings) as tunnel:
            await tunnel.wait_up(ready_timeout)
            sock = str(settings.local_socket)
            print(f"tunnel to {settings.name} ({settings.host}:{settings.port}) is up at {sock}", flush=True)
            print(f"  grpcurl -plaintext -unix {sock} list", flush=True)
            if not once:
                await stop.wait()
            return sock
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


@contextlib.contextmanager
def default_socket() -> Iterator[Path]:
    """A fresh private directory for the forwarded socket, removed afterwards.

    Under ``$XDG_RUNTIME_DIR`` when set, else a random name in the temp dir: never a
    predictable path another user could create first.
    """
    directory = private_runtime_dir("convocate-tunnel-")
    try:
        yield directory / "grpc.sock"
    finally:
        shutil.rmtree(directory, ignore_errors=True)
