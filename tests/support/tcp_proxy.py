"""A loopback TCP proxy a test can cut: breaks a connection from outside both ends.

Usage::

    async with TcpProxy("127.0.0.1", server_port) as proxy:
        ... connect to ("127.0.0.1", proxy.port) ...
        proxy.cut()        # abort every connection through it now; new ones still pass
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["TcpProxy"]

_CHUNK = 64 * 1024


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF or an error, then half-close (writes are drained: bounded buffers)."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


class TcpProxy:
    """Forwards connections on ``listen_host``:port (chosen by the kernel unless given) to the target.

    Args:
        target_host: where connections go.
        target_port: the target's port.
        listen_host: the proxy's own loopback address.
        listen_port: the proxy's port (0: any free one).
    """

    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1",
                 listen_port: int = 0) -> None:
        self.target = (target_host, target_port)  # may be set after start(), before a connection
        self.host = listen_host
        self.port = listen_port
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen on :attr:`port` (when 0: on a free port, read :attr:`port` afterwards)."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            down_w.transport.abort()
            return
        pair = {down_w, up_w}
        self._writers |= pair
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(_pump(down_r, up_w))
                group.create_task(_pump(up_r, down_w))
        finally:
            self._writers -= pair
            for w in pair:
                w.close()
            for w in pair:
                with contextlib.suppress(ConnectionError, OSError):
                    await w.wait_closed()

    def cut(self) -> None:
        """Abort every connection through the proxy at once (both ends see a reset)."""
        for w in list(self._writers):
            w.transport.abort()

    async def aclose(self) -> None:
        """Stop listening, cut what is open, and wait until the server is closed."""
        if self._server is not None:
            self._server.close()
            self.cut()
            await self._server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
