"""A private tmux server driving a program in a real terminal (send-keys / capture-pane)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["TmuxTerminal"]


class TmuxTerminal:
    """One private tmux server (``-L``) with one window running ``argv``."""

    def __init__(self, tmux: str, *, width: int = 110, height: int = 30) -> None:
        self.tmux = tmux
        self.socket = f"cvt-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.width = width
        self.height = height
        self.target = "console"

    def _run(self, *args: str, check: bool = True) -> str:
        r = subprocess.run([self.tmux, "-L", self.socket, *args], capture_output=True, text=True,
                           timeout=15, check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout

    def start(self, argv: Sequence[str], env: Mapping[str, str], cwd: str | None = None) -> None:
        """Start the server and run ``argv`` in a ``width`` x ``height`` window."""
        env_args: list[str] = []
        for key, value in env.items():
            env_args += ["-e", f"{key}={value}"]
        cmd = " ".join(shlex.quote(a) for a in argv) + "; echo CONSOLE-EXIT rc=$?; sleep 600"
        self._run("-f", "/dev/null", "new-session", "-d", "-s", self.target, "-x", str(self.width),
                  "-y", str(self.height), *env_args, *(["-c", cwd] if cwd else []), cmd)
        self._run("set-option", "-t", self.target, "status", "off")
        self._run("set-option", "-g", "window-size", "manual")

    def send_keys(self, *keys: str) -> None:
        """Send tmux key names (``Enter``, ``C-b``, ``Down``...)."""
        self._run("send-keys", "-t", self.target, *keys)

    def type(self, text: str) -> None:
        """Send literal text."""
        self._run("send-keys", "-t", self.target, "-l", "--", text)

    def capture(self) -> str:
        """The visible screen."""
        return self._run("capture-pane", "-p", "-t", self.target)

    def stty(self) -> str:
        """``stty -g`` of the pane's terminal (its termios, seen from outside)."""
        tty = self._run("display-message", "-p", "-t", self.target, "#{pane_tty}").strip()
        return subprocess.run(["stty", "-g", "-F", tty], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    def resize(self, width: int, height: int) -> None:
        """Resize the window (the program gets SIGWINCH)."""
        self._run("resize-window", "-t", self.target, "-x", str(width), "-y", str(height))

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Wait until the screen matches ``pattern`` (regex); fail with the screen shown."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.capture()
            match = re.search(pattern, screen, re.MULTILINE)
            if match:
                return match
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} not on screen within {timeout} s:\n{screen}")

    def wait_gone(self, pattern: str, timeout: float = 20.0) -> None:
        """Wait until the screen no longer matches ``pattern`` (a dialog closed)."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.capture()
            if not re.search(pattern, screen, re.MULTILINE):
                return
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} still on screen after {timeout} s:\n{screen}")

    def kill(self) -> None:
        """Kill the private server and everything in it, and remove its socket file."""
        self._run("kill-server", check=False)
        tmpdir = os.environ.get("TMUX_TMPDIR") or "/tmp"
        Path(tmpdir, f"tmux-{os.getuid()}", self.socket).unlink(missing_ok=True)
