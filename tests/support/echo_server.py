"""`python -m tests.support.echo_server`: the echo services behind the SSH guard, as a process.

For fault tests that must freeze (SIGSTOP) or kill the server side. Prints ``ready``
on stdout once it serves; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from common.grpc_server import UnixGrpcServer
from common.logging import configure_logging
from common.ssh_server import SSHServerSettings, SSHSocketServer
from tests.support.echo_services import echo_services


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with UnixGrpcServer(Path(args.socket), echo_services()):
        settings = SSHServerSettings(
            args.host, args.port, Path(args.host_key), Path(args.authorized_keys), Path(args.socket)
        )
        async with SSHSocketServer(settings):
            print("ready", flush=True)
            await stop.wait()


def main() -> None:
    """Parse arguments and serve until SIGTERM."""
    p = argparse.ArgumentParser()
    for name in ("host", "host-key", "authorized-keys", "socket"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--port", type=int, required=True)
    configure_logging("cli", level="WARNING", json=False)
    asyncio.run(_serve(p.parse_args()))


if __name__ == "__main__":
    main()
