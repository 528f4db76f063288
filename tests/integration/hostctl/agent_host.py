"""An agent host for init-agent tests: a state root behind the test sshd, a real agent process.

The role installer is the real ``convocate-agent install --root <root> --no-systemctl``;
"start the unit" is a script that (re)starts ``python -m agent serve`` on a loopback
address in the background and records its pid, so the test stops exactly that process.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from hostctl.agent_setup import AgentSetup
from hostctl.peering import AgentHostLayout, ShellHostLayout
from tests.support.agent_proc import remove_labelled_containers
from tests.support.net import free_port
from tests.support.waiting import wait_for_sync

__all__ = ["TestAgentHost"]

_START = """
set -e
if [ -s "$PIDFILE" ]; then
  old=$(cat "$PIDFILE")
  kill "$old" 2>/dev/null || true
  i=0
  while kill -0 "$old" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
fi
setsid $AGENT serve --config "$CONFIG" >>"$LOG" 2>&1 </dev/null &  # $AGENT: a command line
echo $! > "$PIDFILE"
"""


@dataclass
class TestAgentHost:
    """Paths of one agent host under ``root`` and the setup that init-agent gets for it."""

    __test__ = False
    root: Path
    host: str
    status_port: int
    ca_dir: Path

    @property
    def prefix(self) -> Path:
        """The install root (``/`` on a real host)."""
        return self.root / "ah"

    @property
    def layout(self) -> AgentHostLayout:
        """Where the agent keeps its state, under the install root."""
        return AgentHostLayout(self.prefix / "etc" / "convocate-agent", self.prefix / "home" / "claude",
                               owner="", listen_port=self.port)

    @property
    def shell(self) -> ShellHostLayout:
        """This (shell) side's files."""
        s = self.root / "shell"
        return ShellHostLayout(s / "agents", s / "status_key", s / "status_authorized", "127.0.0.1",
                               self.status_port, owner="")

    @property
    def pidfile(self) -> Path:
        """The running agent's pid."""
        return self.root / "agent.pid"

    @property
    def log(self) -> Path:
        """The agent's log."""
        return self.root / "agent.log"

    def __post_init__(self) -> None:
        self.port = free_port(self.host)
        cli = self.prefix / "usr" / "local" / "bin" / "claude"
        cli.parent.mkdir(parents=True, exist_ok=True)
        cli.write_text("#!/bin/sh\nexec sh\n")
        cli.chmod(0o755)

    def start_argv(self, agent: str = "") -> tuple[str, ...]:
        """The "unit start": (re)start ``agent`` (a command line; default ``python -m agent``)."""
        env = {
            "PIDFILE": str(self.pidfile), "AGENT": agent or f"{sys.executable} -m agent",
            "LOG": str(self.log),
            "CONFIG": str(self.layout.config_dir / "agent.toml"),
            "CONVOCATE_AGENT_LISTEN_HOST": self.host, "CONVOCATE_AGENT_RUNTIME_DIR": str(self.root / "r"),
            "CONVOCATE_AGENT_EXPECTED_UID": "-1", "CONVOCATE_AGENT_CGROUP_PARENT": "",
            "CONVOCATE_AGENT_DNS_SERVER": "", "CONVOCATE_AGENT_HEARTBEAT_INTERVAL": "0.5",
            "CONVOCATE_AGENT_CLAUDE_CLI": str(self.prefix / "usr" / "local" / "bin" / "claude"),
            "CONVOCATE_LOG_LEVEL": "INFO",
        }
        return ("env", *(f"{k}={v}" for k, v in env.items()), "sh", "-c", _START)

    def setup(self, image_tag: str, agent: str = "", **overrides: object) -> AgentSetup:
        """init-agent's settings for this host (installer and start script as described above)."""
        values: dict[str, object] = {
            "address": self.host, "agent": self.layout, "shell": self.shell, "image_tag": image_tag,
            "ca_cert": self.ca_dir / "ca.crt", "ca_key": self.ca_dir / "ca.key",
            "log_tls_dir": self.prefix / "etc" / "convocate-agent" / "rsyslog-tls",
            "log_dropin": self.prefix / "etc" / "rsyslog.d" / "10-convocate-client.conf",
            "log_spool_dir": self.prefix / "var" / "spool" / "rsyslog", "logs_reload_argv": None,
            "install_argv": (sys.executable, "-m", "agent", "install", "--root", str(self.prefix),
                             "--no-systemctl"),
            "start_argv": self.start_argv(agent), "wait_timeout": 45.0,
        }
        values.update(overrides)
        return AgentSetup(**values)  # type: ignore[arg-type]

    def agent_id(self) -> str:
        """The id the installer minted."""
        return (self.layout.config_dir / "agent-id").read_text().strip()

    def stop(self) -> None:
        """Stop the agent process the start script left running, and its containers."""
        if self.pidfile.exists():
            pid = int(self.pidfile.read_text())
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            else:
                wait_for_sync(lambda: not _alive(pid), timeout=20, interval=0.1)
        if (self.layout.config_dir / "agent-id").exists():
            remove_labelled_containers(f"convocate.agent={self.agent_id()}")

    def describe(self) -> str:
        """The agent's log tail, for assertion messages."""
        return shlex.quote(self.log.read_text(errors="replace")[-3000:]) if self.log.exists() else "(no log)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of a gone shell is reaped by init; treat it as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
