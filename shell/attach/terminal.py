"""The real terminal during an attach: raw mode, size, bounded writes, clean-up.

See console-handoff.md: raw mode with TCSANOW (TCSAFLUSH would drop typeahead), a
reset of every mode a dead child may leave on, and a DA1 round-trip that flushes
terminal replies meant for the child before the console reads keys again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import struct
import termios
import tty
from typing import Any

__all__ = ["DA1_QUERY", "RESET_SEQ", "RawTerminal", "TerminalWriter", "drain_until_da1", "terminal_size"]

RESET_SEQ = (
    b"\x1b[?1049l"                                   # leave the alternate screen
    b"\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1005l\x1b[?1006l\x1b[?1015l"  # mouse off
    b"\x1b[?2004l\x1b[?1004l"                        # bracketed paste, focus events off
    b"\x1b[?1l\x1b>"                                 # cursor keys normal, keypad numeric
    b"\x1b[>4m"                                      # modifyOtherKeys off
    b"\x1b[r\x1b[?6l\x1b[?7h"                        # scroll region, origin mode, autowrap
    b"\x1b[?25h\x1b[0 q"                             # cursor visible, default shape
    b"\x1b(B\x1b[0m"                                 # ASCII charset, SGR reset
)
DA1_QUERY = b"\x1b[c"
_DA1_REPLY = re.compile(rb"\x1b\[\?[0-9;]*c")


def terminal_size(fd: int, default: tuple[int, int] = (24, 80)) -> tuple[int, int]:
    """(rows, cols) of the terminal on ``fd``; ``default`` when it is not a terminal."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return default
    return (rows or default[0], cols or default[1])


class RawTerminal:
    """Raw mode on ``fd`` for the life of the context, restored exactly afterwards."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._saved: list[Any] | None = None

    def __enter__(self) -> RawTerminal:
        if os.isatty(self.fd):
            self._saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd, termios.TCSANOW)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self.fd, termios.TCSANOW, self._saved)

    @property
    def is_tty(self) -> bool:
        """True when raw mode was actually entered."""
        return self._saved is not None


class TerminalWriter:
    """Non-blocking writes to ``fd`` with a bounded buffer (backpressure via ``drain``)."""

    def __init__(self, fd: int, limit: int = 1 << 20) -> None:
        self.fd = fd
        self.limit = limit
        self._buf = bytearray()
        self._loop = asyncio.get_running_loop()
        self._flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, self._flags | os.O_NONBLOCK)
        self._writing = False
        self._room = asyncio.Event()
        self._room.set()
        self.failed: OSError | None = None

    def write(self, data: bytes) -> None:
        """Queue ``data``; what the terminal takes now is written at once."""
        if self.failed is not None:
            return
        self._buf += data
        self._flush()

    def _flush(self) -> None:
        while self._buf:
            try:
                n = os.write(self.fd, self._buf[:65536])
            except BlockingIOError:
                break
            except OSError as e:
                self.failed = e
                self._buf.clear()
                break
            del self._buf[:n]
        if self._buf and not self._writing:
            self._loop.add_writer(self.fd, self._flush)
            self._writing = True
        elif not self._buf and self._writing:
            self._loop.remove_writer(self.fd)
            self._writing = False
        if len(self._buf) <= self.limit // 2:
            self._room.set()
        else:
            self._room.clear()

    async def drain(self) -> None:
        """Wait while more than ``limit`` bytes are queued."""
        if len(self._buf) > self.limit:
            await self._room.wait()

    async def close(self, timeout: float = 2.0) -> None:
        """Write what is left (bounded by ``timeout``), then restore the fd's flags."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._buf and self.failed is None:
                    self._room.clear()
                    self._flush()
                    if self._buf:
                        await asyncio.sleep(0.01)
        if self._writing:
            self._loop.remove_writer(self.fd)
            self._writing = False
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.fd, fcntl.F_SETFL, self._flags)


async def drain_until_da1(in_fd: int, timeout: float = 1.0) -> bool:
    """Discard input on ``in_fd`` up to the reply to a DA1 query (sent by the caller).

    Terminals answer in order, so this also discards replies meant for the child.

    Returns:
        True when the reply arrived, False on timeout or end of input.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = b""
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        ready = asyncio.Event()
        loop.add_reader(in_fd, ready.set)
        try:
            async with asyncio.timeout(remaining):
                await ready.wait()
        except TimeoutError:
            return False
        finally:
            loop.remove_reader(in_fd)
        try:
            chunk = os.read(in_fd, 4096)
        except BlockingIOError:
            continue
        except OSError:
            return False
        if not chunk:
            return False
        seen = (seen + chunk)[-256:]
        if _DA1_REPLY.search(seen):
            return True
