"""Several stand-in agent processes on 127.0.0.2, 127.0.0.3, ... registered with the shell.

Each agent gets its own state root, host key, shell → agent key (registered through
:func:`common.registry.register_agent`, the one library function) and agent → shell
key (authorized on the status service). Processes are started with exec
(``python -m tests.support.mini_agent``) and stopped by pid.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from common.registry import register_agent
from common.ssh_keys import add_authorized_key, generate_keypair
from shell.status.server import StatusConfig
from tests.support.net import free_port
from tests.support.status_stack import agent_status_keys

__all__ = ["AgentProc", "prepare_agent"]


@dataclass
class AgentProc:
    """One stand-in agent process and its files."""

    agent_id: str
    host: str
    port: int
    state: Path
    status: StatusConfig | None
    heartbeat: float = 0.5
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def shell_key_authorized(self) -> Path:
        """The agent's authorized_keys (holding the shell's key)."""
        return self.state / "authorized_keys"

    def start(self, timeout: float = 15.0) -> None:
        """Start the process and wait for its ``ready`` line."""
        argv = [sys.executable, "-m", "tests.support.mini_agent", "--agent-id", self.agent_id,
                "--host", self.host, "--port", str(self.port), "--state", str(self.state),
                "--heartbeat", str(self.heartbeat)]
        if self.status is not None:
            argv += ["--status-host", self.status.host, "--status-port", str(self.status.port)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env={**os.environ, "CI": ""})
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                line = self.proc.stdout.readline()
                if line.strip() == b"ready":
                    return
                if not line:
                    break
        self.kill()
        raise AssertionError(f"agent {self.agent_id} did not start within {timeout} s")

    async def astart(self, timeout: float = 15.0) -> None:
        """:meth:`start` in a thread, so in-process servers keep serving meanwhile."""
        await asyncio.to_thread(self.start, timeout)

    def kill(self) -> None:
        """SIGKILL the process (a crash) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM the process (a clean stop), SIGKILL after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


def prepare_agent(root: Path, registry: Path, index: int, status: StatusConfig | None,
                  heartbeat: float = 0.5) -> AgentProc:
    """Keys, state root and registry entry for agent ``agent-<index>`` on 127.0.0.<index+2>.

    Args:
        root: where the agents' state roots go.
        registry: the shell's agent registry.
        index: 0, 1, 2, ... (also picks the loopback address).
        status: the status service the agent reports to (None: no emitter).
        heartbeat: the emitter's heartbeat interval.

    Returns:
        The agent, not started.
    """
    agent_id = f"agent-{chr(ord('a') + index)}"
    host = f"127.0.0.{index + 2}"
    port = free_port(host)
    state = root / agent_id
    state.mkdir(parents=True, exist_ok=True)
    host_key = generate_keypair(state / "host_ed25519_key", f"{agent_id}-host")
    shell_key_path = root / f"{agent_id}-shell-key"
    shell_key = generate_keypair(shell_key_path, f"shell-to-{agent_id}")
    add_authorized_key(state / "authorized_keys", shell_key)
    register_agent(registry, agent_id, host, port, shell_key_path, host_key)
    if status is not None:
        agent_status_keys(status, state)
    return AgentProc(agent_id, host, port, state, status, heartbeat)
