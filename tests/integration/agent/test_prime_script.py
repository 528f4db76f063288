"""The primed viewer's shell script (agent.viewer_prime.PRIME_SCRIPT) under the shells a session
image may have, on a real pty as a TTY exec gives it: Debian's dash with GNU coreutils (the
production image) and busybox ash (the offline test image).

The shell must read its line itself: the first version read it with ``timeout 60 head -n 1``,
which works under busybox but not with GNU timeout, whose command runs in a process group of
its own and is stopped by SIGTTIN when it reads the terminal (the first attach after a create
showed nothing for 60 s). Here ``tmux`` is a stand-in on PATH that prints what it was given.
"""

from __future__ import annotations

import os
import pty
import secrets
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.attach_manager import ATTACH_EARLY_SCRIPT, ATTACH_SCRIPT
from agent.viewer_prime import PRIME_MARK, PRIME_SCRIPT
from tests.support.env import require_tool

# has-session: the session is there once $FAKE_TMUX_UP names a file that exists (unset: at once).
FAKE_TMUX = ('#!/bin/sh\n'
             'if [ "$1" = has-session ]; then [ -z "$FAKE_TMUX_UP" ] || [ -e "$FAKE_TMUX_UP" ]; exit; fi\n'
             'echo "FAKE-TMUX $* TERM=$TERM SIZE=$(stty size) END"\n')
BOUND = 10.0      # s for each step (the broken script never gets past reading its line)


def _shell(which: str) -> list[str]:
    """The command line of shell ``which``: dash, or busybox's sh."""
    return [require_tool("dash")] if which == "dash" else [require_tool("busybox"), "sh"]


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A directory with the stand-in tmux."""
    tmux = tmp_path / "tmux"
    tmux.write_text(FAKE_TMUX)
    tmux.chmod(0o755)
    return tmp_path


class PrimedShell:
    """PRIME_SCRIPT run by ``shell`` as the session leader of a new pty (as a TTY exec runs it)."""

    def __init__(self, shell: list[str], fake_bin: Path, script: str = PRIME_SCRIPT,
                 args: tuple[str, ...] = (), tmux_up: Path | None = None) -> None:
        # No fork of this process (gRPC may be loaded in it): setsid --ctty makes the pty the
        # new session's controlling terminal, with the shell in its foreground process group.
        self.fd, slave = pty.openpty()
        try:
            self.proc = subprocess.Popen(
                [require_tool("setsid"), "--ctty", *shell, "-c", script, *args],
                stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                env={**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}",
                     "FAKE_TMUX_UP": str(tmux_up or "")})
        finally:
            os.close(slave)
        self.seen = b""

    def _read_some(self, deadline: float) -> bool:
        """Read what comes before ``deadline``; False once the terminal is closed on the other side."""
        ready, _, _ = select.select([self.fd], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:             # EIO: no process holds the terminal any more
            return False
        self.seen += chunk
        return bool(chunk)

    def drain(self, seconds: float) -> bytes:
        """Everything the shell says within ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self._read_some(deadline):
            pass
        return self.seen

    def read_until(self, mark: bytes) -> bytes:
        """Output until ``mark`` shows (bounded); everything read so far."""
        deadline = time.monotonic() + BOUND
        while mark not in self.seen:
            if time.monotonic() >= deadline:
                raise AssertionError(f"{mark!r} not seen within {BOUND} s; got {self.seen[-300:]!r}")
            if not self._read_some(deadline):
                raise AssertionError(f"the shell ended before {mark!r}; got {self.seen[-300:]!r}")
        return self.seen

    def wait_closed(self) -> int:
        """The shell's exit status, once no process holds the terminal any more (bounded).

        A watchdog left behind (its sleep) would hold it open until the bound.
        """
        deadline = time.monotonic() + BOUND
        while self._read_some(deadline):
            if time.monotonic() >= deadline:
                raise AssertionError(f"the terminal is still held after {BOUND} s; got {self.seen[-300:]!r}")
        return self.proc.wait(timeout=BOUND)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=BOUND)
        os.close(self.fd)


@pytest.fixture(params=["dash", "busybox"])
def shell(request: pytest.FixtureRequest, fake_bin: Path) -> Iterator[PrimedShell]:
    """The primed shell under each shell."""
    which = _shell(request.param)
    primed = PrimedShell(which, fake_bin)
    try:
        yield primed
    finally:
        primed.close()


def test_the_line_turns_the_shell_into_tmux_attach_with_its_size_and_terminal(shell: PrimedShell) -> None:
    """Ready mark, then the line: tmux attach of the session, sized, with TERM, echo back on."""
    viewer = secrets.token_hex(6)
    record = Path(f"/tmp/.convocate-viewer-{viewer}")
    try:
        shell.read_until(PRIME_MARK)
        os.write(shell.fd, f"{viewer} 33 101 drive screen\n".encode())
        out = shell.read_until(b" END").decode(errors="replace")
        assert "FAKE-TMUX attach-session -t claude TERM=screen SIZE=33 101 END" in out, out
        assert f"{viewer} 33 101" not in out        # the line was not echoed
        assert record.read_text().strip().startswith("/dev/pts/")   # its tty, for the per-viewer detach
    finally:
        record.unlink(missing_ok=True)


def test_an_observer_line_attaches_read_only(shell: PrimedShell) -> None:
    viewer = secrets.token_hex(6)
    try:
        shell.read_until(PRIME_MARK)
        os.write(shell.fd, f"{viewer} 24 80 observe xterm\n".encode())
        out = shell.read_until(b" END").decode(errors="replace")
        assert "FAKE-TMUX attach-session -t claude -f read-only,ignore-size TERM=xterm SIZE=24 80" in out, out
        assert shell.wait_closed() == 0          # tmux's stand-in ended; nothing else holds the terminal
    finally:
        Path(f"/tmp/.convocate-viewer-{viewer}").unlink(missing_ok=True)


def test_an_empty_line_ends_the_shell_and_its_watchdog(shell: PrimedShell) -> None:
    """What the agent sends an unused prime: the shell exits 0, and no watchdog sleep is left."""
    shell.read_until(PRIME_MARK)
    os.write(shell.fd, b"\n")
    assert shell.wait_closed() == 0
    assert b"FAKE-TMUX" not in shell.seen


@pytest.mark.parametrize("which", ["dash", "busybox"])
def test_a_prime_is_ready_only_once_the_sessions_tmux_is_there(which: str, fake_bin: Path,
                                                              tmp_path: Path) -> None:
    """Started with the container, before its entrypoint started tmux: no mark until tmux has the
    session, so the attach that takes it never meets "no sessions"."""
    up = tmp_path / "tmux-up"
    primed = PrimedShell(_shell(which), fake_bin, tmux_up=up)
    try:
        assert PRIME_MARK not in primed.drain(0.6)     # tmux not there: not ready
        up.touch()
        primed.read_until(PRIME_MARK)
        os.write(primed.fd, b"\n")
        assert primed.wait_closed() == 0
    finally:
        primed.close()


@pytest.mark.parametrize("which", ["dash", "busybox"])
def test_an_early_fresh_viewer_waits_for_the_sessions_tmux(which: str, fake_bin: Path,
                                                          tmp_path: Path) -> None:
    """The fresh viewer's script within the window after a start: tmux attach only once the session
    is there; the plain script (any later attach) attaches at once, with no check."""
    up = tmp_path / "tmux-up"
    viewer = secrets.token_hex(6)
    shell = _shell(which)
    early = PrimedShell(shell, fake_bin, script=ATTACH_EARLY_SCRIPT, args=("sh", viewer, ""), tmux_up=up)
    try:
        assert b"FAKE-TMUX" not in early.drain(0.6)
        up.touch()
        out = early.read_until(b" END").decode(errors="replace")
        assert "FAKE-TMUX attach-session -t claude" in out, out
    finally:
        early.close()
        Path(f"/tmp/.convocate-viewer-{viewer}").unlink(missing_ok=True)
    up.unlink()
    plain = PrimedShell(shell, fake_bin, script=ATTACH_SCRIPT, args=("sh", viewer, ""), tmux_up=up)
    try:
        assert "FAKE-TMUX attach-session -t claude" in plain.read_until(b" END").decode(errors="replace")
    finally:
        plain.close()
        Path(f"/tmp/.convocate-viewer-{viewer}").unlink(missing_ok=True)
