"""A real rsyslogd with its own config, pid file and work directory, in the foreground.

It runs as a child of the test (``rsyslogd -n -f CONF -i PIDFILE``), never touches the
machine's own rsyslog, and is stopped (SIGTERM, then SIGKILL) by its owner.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support.env import require_tool
from tests.support.processes import stop_process
from tests.support.waiting import wait_for_sync

__all__ = ["Rsyslogd", "start_rsyslogd"]


@dataclass
class Rsyslogd:
    """A running rsyslogd and where it keeps things."""

    root: Path
    proc: subprocess.Popen[bytes]
    stderr: Path

    def stop(self) -> None:
        """Stop it (bounded)."""
        stop_process(self.proc)

    def output(self) -> str:
        """What it wrote to stderr (start-up and config errors)."""
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""


def start_rsyslogd(root: Path, config: str, *, ready: Callable[[], bool]) -> Rsyslogd:
    """Write ``config`` under ``root`` and start rsyslogd on it; wait until ``ready()`` is true.

    ``config`` may use ``{root}`` for the directory; ``global(workDirectory=...)`` is added.
    """
    rsyslogd = require_tool("rsyslogd")
    (root / "work").mkdir(parents=True, exist_ok=True)
    conf = root / "rsyslog.conf"
    conf.write_text(f'global(workDirectory="{root / "work"}")\n' + config.replace("{root}", str(root)))
    check = subprocess.run([rsyslogd, "-N1", "-f", str(conf)], capture_output=True, text=True,
                           timeout=30, check=False)
    if check.returncode != 0:
        raise RuntimeError(f"rsyslogd rejects {conf}: {check.stderr or check.stdout}")
    stderr = root / "stderr.log"
    with stderr.open("wb") as err:
        proc = subprocess.Popen([rsyslogd, "-n", "-f", str(conf), "-i", str(root / "rsyslogd.pid")],
                                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
    daemon = Rsyslogd(root, proc, stderr)
    try:
        wait_for_sync(lambda: proc.poll() is not None or ready(), timeout=15)
        if proc.poll() is not None:
            raise RuntimeError(f"rsyslogd exited with {proc.returncode}: {daemon.output()[-2000:]}")
    except BaseException:
        daemon.stop()
        raise
    return daemon
