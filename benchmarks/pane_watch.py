"""When a tmux pane's screen shows something, without polling it in a tight loop.

A loop of ``capture-pane`` calls starts a tmux client process every few ms: on a machine
with two cores that load slows what is being measured (a create's ``docker start`` took
about 20 ms longer under it). :class:`PaneWatch` instead has tmux copy the pane's output
into a FIFO (``pipe-pane -O``); a thread reads it and notes when each chunk arrived, and
:meth:`PaneWatch.until` captures the screen only after new output, so the harness is idle
while nothing is drawn. The time it returns is when the output that made the screen match
reached the pane: the latest chunk that arrived before the capture that matched (at most
one capture late).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

from tests.support.tmux import TmuxTerminal

__all__ = ["PaneWatch"]

_FALLBACK = 0.05     # s: capture again after this long without output (nothing is missed for long)


class PaneWatch:
    """Output arrival times of one pane (a context manager: ``with PaneWatch(term) as w``)."""

    def __init__(self, term: TmuxTerminal) -> None:
        self.term = term
        self._dir = Path(tempfile.mkdtemp(prefix="cvpw-"))
        self._fifo = self._dir / "pane"
        self._fd = -1
        self._hold = -1           # our own write end: no EOF while tmux's writer comes and goes
        self._cond = threading.Condition()
        self._chunks = 0
        self._last = 0.0          # monotonic time the last chunk arrived
        self._thread: threading.Thread | None = None
        self.captures = 0         # capture-pane calls made (the harness's own load)

    def __enter__(self) -> PaneWatch:
        os.mkfifo(self._fifo, 0o600)
        self._fd = os.open(self._fifo, os.O_RDONLY | os.O_NONBLOCK)   # before a writer: no block
        self._hold = os.open(self._fifo, os.O_WRONLY)
        os.set_blocking(self._fd, True)
        self._tmux("pipe-pane", "-O", "-t", self.term.target, f"exec cat > {shlex.quote(str(self._fifo))}")
        self._thread = threading.Thread(target=self._read, name="pane-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._tmux("pipe-pane", "-t", self.term.target)   # stops the cat
        os.close(self._hold)                               # the last writer: EOF for the reader
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._thread is None or not self._thread.is_alive():
            os.close(self._fd)
        self._fifo.unlink(missing_ok=True)
        self._dir.rmdir()

    def _tmux(self, *args: str) -> None:
        subprocess.run([self.term.tmux, "-L", self.term.socket, *args], capture_output=True, timeout=15,
                       check=True)

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 65536)
            except OSError:
                data = b""
            now = time.monotonic()
            with self._cond:
                if not data:
                    self._chunks = -1
                    self._cond.notify_all()
                    return
                self._chunks += 1
                self._last = now
                self._cond.notify_all()

    def mark(self) -> int:
        """The number of chunks so far (pass it to :meth:`until` to ignore output before now)."""
        with self._cond:
            return self._chunks

    def until(self, pattern: str, since: int, timeout: float = 30.0) -> float:
        """The time the output that made the screen match ``pattern`` arrived (after chunk ``since``).

        Raises:
            AssertionError: the screen did not match within ``timeout`` s.
        """
        compiled = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        seen = since
        screen = ""
        for _ in range(1_000_000):
            with self._cond:
                before = seen
                self._cond.wait_for(lambda: self._chunks != before, timeout=_FALLBACK)  # noqa: B023
                seen = self._chunks
            if seen < 0:
                break
            screen = self.term.capture()
            self.captures += 1
            if seen != since and compiled.search(screen):   # only output after the key counts
                with self._cond:
                    # More may have come while capturing (a busy machine delays the capture): the
                    # output that matched came by the capture's end, so the latest chunk by then is
                    # the time (at most one capture late, never early).
                    return self._last
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"{pattern!r} not on screen within {timeout} s:\n{screen}")
