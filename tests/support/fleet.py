"""Several agent processes on 127.0.0.2, 127.0.0.3, ... registered with the shell.

Each is the real agent server on the fake runtime (:mod:`tests.support.fake_agent`),
with its own state root, host key, shell → agent key (registered through
:func:`common.registry.register_agent`, the one library function) and agent → shell
key (authorized on the status service).
"""

from __future__ import annotations

from pathlib import Path

from common.registry import register_agent
from common.ssh_keys import read_private_key
from shell.status.server import StatusConfig
from tests.support.agent_proc import AgentProcess
from tests.support.status_stack import agent_status_keys

__all__ = ["prepare_agent", "status_key_path"]


def status_key_path(agent: AgentProcess) -> Path:
    """The agent's agent → shell private key (its ``.pub`` is on the status service's list)."""
    return agent.root / "agent_to_shell_ed25519_key"


def prepare_agent(root: Path, registry: Path, index: int, status: StatusConfig | None,
                  heartbeat: float = 0.5, *, registered_port: int | None = None) -> AgentProcess:
    """Keys, state root and registry entry for agent ``agent-<index>`` on 127.0.0.<index+2>.

    Args:
        root: where the agents' state roots go.
        registry: the shell's agent registry.
        index: 0, 1, 2, ... (also picks the loopback address).
        status: the status service the agent reports to (None: no emitter).
        heartbeat: the emitter's heartbeat interval.
        registered_port: the port the shell is told (a proxy in front of the agent);
            default: the agent's own port.

    Returns:
        The agent, not started.
    """
    agent_id = f"agent-{chr(ord('a') + index)}"
    host = f"127.0.0.{index + 2}"
    state = root / agent_id
    config: dict[str, object] = {"heartbeat_interval": heartbeat}
    if status is not None:
        key, known = agent_status_keys(status, state)
        config.update(status_host=status.host, status_port=status.port, status_client_key=key,
                      status_known_hosts=known)
    agent = AgentProcess(state, host=host, name=agent_id, agent_id=agent_id, config=config, runtime="fake")
    register_agent(registry, agent_id, host, registered_port or agent.port, agent.keys.client_key,
                   read_private_key(agent.keys.host_key))
    return agent
