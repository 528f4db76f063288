"""In-memory stand-ins for the container runtime's terminal (unit tests of the attach core)."""

from __future__ import annotations

import asyncio

__all__ = ["FakeTerminal"]


class FakeTerminal:
    """A TerminalExec whose output the test feeds and whose input/resizes the test reads."""

    def __init__(self) -> None:
        self.out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.written: list[bytes] = []
        self.sizes: list[tuple[int, int]] = []
        self.closed = False

    def feed(self, data: bytes | None) -> None:
        """Make ``data`` the next output chunk (None: end of stream)."""
        self.out.put_nowait(data)

    async def read(self) -> bytes | None:
        """The next fed chunk."""
        if self.closed:
            return None
        return await self.out.get()

    async def write(self, data: bytes) -> None:
        """Record input."""
        self.written.append(data)

    async def resize(self, rows: int, cols: int) -> None:
        """Record a resize."""
        self.sizes.append((rows, cols))

    async def close(self) -> None:
        """End the stream."""
        self.closed = True
        self.out.put_nowait(None)
