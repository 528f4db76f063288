"""`convocate-host init-agent`: peer an agent host with this shell host.

Mints three ed25519 keys here (the agent's SSH host key, the shell->agent client key
and the agent->shell status key), installs the agent's halves on the agent host (over
OpenSSH :22 with ``sudo -n``, or locally), writes the agent's ``agent.toml`` pointing
its status emitter at this shell, authorizes the agent on the status service, and
registers the agent (address, port, client key, pinned host key) in the registry.
Both directions pin host keys; nothing is trusted on first use.

Re-running finds the agent already peered (the registry's keys are the ones installed on
both sides, the same address, port and ``agent.toml``) and changes nothing; ``rotate``
(``--rotate-keys``) replaces the keys of the same agent id, leaving exactly one
authorized line per direction: the lines carry a ``convocate:<direction>:<id>`` comment.

The allow-lists live outside ``~/.ssh`` (OpenSSH never reads them) and every line
starts with :data:`KEY_OPTIONS`, so even a sshd pointed at one would give the key
nothing; the convocate SSH servers ignore those options (they run no command anyway).
They are ``root:<owner> 0640``: the service reads them and cannot change them. Private
keys and the registry belong to the user that reads them. Remote files are written
through ``mktemp`` and renamed into place, never through a predictable temp name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from common import defaults
from common.agent_id import new_agent_id
from common.errors import ConvocateError
from common.paths import atomic_write, user_ids
from common.registry import DEFAULT_REGISTRY_DIR, AgentRecord, read_agent, register_agent, validate_agent_id
from common.ssh_keys import known_hosts_line, load_or_create_host_key, public_key_text, read_private_key
from common.sshd_dropin import KEY_OPTIONS
from hostctl.remote import Runner
from hostctl.remote_files import read_file, write_file

__all__ = [
    "AgentHostLayout", "PeeringPlan", "ShellHostLayout", "allow_list_line", "already_peered", "init_agent",
]


@dataclass(frozen=True)
class AgentHostLayout:
    """Paths on the agent host (production defaults)."""

    config_dir: Path = defaults.AGENT_CONFIG_DIR
    sessions_root: Path = defaults.SESSIONS_ROOT
    owner: str = "claude"            # files are chowned to this user ("" = leave as is)

    @property
    def authorized_keys(self) -> Path:
        """The agent's allow-list (outside ``~/.ssh``: OpenSSH never reads it)."""
        return self.config_dir / defaults.AGENT_AUTHORIZED_KEYS_NAME

    @property
    def legacy_authorized_keys(self) -> Path:
        """Where versions before 2.1 put the shell's key: OpenSSH's own file."""
        return self.sessions_root / ".ssh" / "authorized_keys"
    listen_port: int = defaults.AGENT_PORT


@dataclass(frozen=True)
class ShellHostLayout:
    """Paths and addresses on this (shell) host."""

    registry_dir: Path = DEFAULT_REGISTRY_DIR
    status_host_key: Path = defaults.STATUS_HOST_KEY
    status_authorized_keys: Path = defaults.STATUS_AUTHORIZED_KEYS
    status_address: str = ""         # how the agent reaches this shell's status service
    status_port: int = defaults.STATUS_PORT
    owner: str = "claude"            # who runs the console and status service ("" = leave as is)


@dataclass
class PeeringPlan:
    """What init-agent did (or would do, with --dry-run)."""

    agent_id: str
    address: str
    steps: list[str] = field(default_factory=list)
    changed: bool = True


def allow_list_line(key: asyncssh.SSHKey, tag: str) -> str:
    """The authorized line init-agent writes for ``key``: options, key, tag."""
    kind, blob = public_key_text(key).split()[:2]
    return f"{KEY_OPTIONS} {kind} {blob} {tag}"


def _failed(runner: Runner, what: str, path: Path, stderr: bytes) -> ConvocateError:
    return ConvocateError(f"{what} {path} on {runner.name} failed: {stderr.decode(errors='replace').strip()}")


_write = write_file


async def _replace_line(runner: Runner, path: Path, pattern: str, line: str, reader: str) -> None:
    """Keep every line of ``path`` but those ending in `` <pattern>`` (a grep regex), then add ``line``.

    The result is ``root:<primary group of reader>`` 0640. A link at ``path`` is
    replaced, never read or followed.
    """
    script = (
        'set -e; umask 077; mkdir -p "$(dirname "$0")"; t=$(mktemp "$0.XXXXXX"); trap \'rm -f "$t"\' EXIT; '
        'if [ -f "$0" ] && [ ! -L "$0" ]; then grep -v -- " $1\\$" "$0" > "$t" || true; fi; '
        'printf "%s\\n" "$2" >> "$t"; '
        'chmod 640 "$t"; if [ -n "$3" ]; then chown "root:$(id -gn "$3")" "$t"; fi; mv -fT "$t" "$0"'
    )
    result = await runner.run(["sh", "-c", script, str(path), pattern, line, reader], root=True)
    if result.status != 0:
        raise _failed(runner, "updating", path, result.stderr)


async def _drop_lines(runner: Runner, path: Path, pattern: str) -> None:
    """Remove the lines ending in `` <pattern>`` from ``path``, keeping its owner and mode.

    Nothing happens when it is missing, a link, or has no such line.
    """
    script = (
        'set -e; [ -f "$0" ] && [ ! -L "$0" ] || exit 0; grep -q -- " $1\\$" "$0" || exit 0; '
        't=$(mktemp "$0.XXXXXX"); trap \'rm -f "$t"\' EXIT; grep -v -- " $1\\$" "$0" > "$t" || true; '
        'chown --reference="$0" "$t"; chmod --reference="$0" "$t"; mv -fT "$t" "$0"'
    )
    result = await runner.run(["sh", "-c", script, str(path), pattern], root=True)
    if result.status != 0:
        raise _failed(runner, "updating", path, result.stderr)


def _replace_local_line(path: Path, tag: str, line: str, gid: int) -> None:
    kept = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.endswith(f" {tag}")] \
        if path.exists() else []
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "\n".join([*kept, line]) + "\n", mode=0o640, gid=gid)


def _agent_toml(agent: AgentHostLayout, shell: ShellHostLayout) -> str:
    c = agent.config_dir
    values = {
        "config_dir": str(c),
        "sessions_root": str(agent.sessions_root),
        "listen_port": agent.listen_port,
        "status_host": shell.status_address,
        "status_port": shell.status_port,
        "status_client_key": str(c / "agent_to_shell_ed25519_key"),
        "status_known_hosts": str(c / "status_known_hosts"),
    }
    lines = ["# Written by `convocate-host init-agent`; re-run it rather than editing.", "[agent]"]
    # json.dumps gives valid TOML basic strings and integers.
    lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


async def _remote_text(runner: Runner, path: Path) -> str | None:
    found = await read_file(runner, path)
    return None if found is None else found[2].decode(errors="replace")


async def already_peered(runner: Runner, address: str, agent_id: str, agent: AgentHostLayout,
                         shell: ShellHostLayout) -> AgentRecord | None:
    """The registry record if ``agent_id`` is peered as asked with the keys both sides hold, else None."""
    try:
        record = read_agent(shell.registry_dir / agent_id)
        client = read_private_key(record.client_key)
        status_key = read_private_key(shell.status_host_key)
    except (ConvocateError, OSError):
        return None
    if (record.address, record.port) != (address, agent.listen_port):
        return None
    cfg = agent.config_dir
    host_key = await _remote_text(runner, cfg / "ssh_host_ed25519_key")
    to_shell = await _remote_text(runner, cfg / "agent_to_shell_ed25519_key")
    allowed = await _remote_text(runner, agent.authorized_keys) or ""
    toml = await _remote_text(runner, cfg / "agent.toml")
    known = await _remote_text(runner, cfg / "status_known_hosts")
    status_allowed = shell.status_authorized_keys.read_text() if shell.status_authorized_keys.exists() else ""
    if host_key is None or to_shell is None:
        return None
    try:
        host_pub = public_key_text(asyncssh.import_private_key(host_key)).split()[1]
        to_shell_pub = public_key_text(asyncssh.import_private_key(to_shell)).split()[1]
    except (asyncssh.KeyImportError, IndexError):
        return None
    tag = f"convocate:shell-to-agent:{agent_id}"
    return record if (
        allow_list_line(client, tag) in allowed.splitlines()
        and host_pub in record.known_hosts.read_text()
        and toml == _agent_toml(agent, shell)
        and known == known_hosts_line(shell.status_address, shell.status_port, status_key) + "\n"
        and any(ln.endswith(f" convocate:agent-to-shell:{agent_id}") and to_shell_pub in ln
                for ln in status_allowed.splitlines())
    ) else None


async def init_agent(
    runner: Runner,
    address: str,
    *,
    agent_id: str | None = None,
    agent: AgentHostLayout | None = None,
    shell: ShellHostLayout | None = None,
    dry_run: bool = False,
    rotate: bool = False,
) -> tuple[PeeringPlan, AgentRecord | None]:
    """Peer the agent host behind ``runner`` (reachable at ``address``) with this shell.

    Args:
        runner: how to run steps on the agent host (SSH or local).
        address: the address this shell uses to reach the agent's SSH server.
        agent_id: the agent's id; read from the agent host, or minted, when None.
        agent: paths on the agent host.
        shell: paths and the status address on this host.
        dry_run: only return the plan.
        rotate: mint new keys even when the agent is already peered with these settings.

    Returns:
        The plan (steps; ``changed`` False when it was already peered) and the registry
        record (None on a dry run).

    Raises:
        InvalidArgumentError: a bad id or address.
        ConvocateError: a step failed (the message names the host and the file).
    """
    agent = agent or AgentHostLayout()
    shell = shell or ShellHostLayout()
    if not shell.status_address:
        raise ConvocateError("init-agent needs --status-address: the address agents use to reach this shell")
    cfg = agent.config_dir
    if agent_id is None:
        found = await runner.run(["cat", str(cfg / "agent-id")], root=True)
        agent_id = found.text() if found.status == 0 and found.text() else (
            None if dry_run else new_agent_id())
    agent_id = validate_agent_id(agent_id or "to-be-minted")
    if not rotate and (record := await already_peered(runner, address, agent_id, agent, shell)):
        kept = (f"{agent_id} is already peered at {address}:{agent.listen_port} "
                "(keys kept; --rotate-keys replaces them)")
        return PeeringPlan(agent_id, address, [kept],
                           changed=False), record
    plan = PeeringPlan(agent_id, address, [
        f"mint the agent host key, the shell->agent key and the agent->shell key for {agent_id}",
        (f"{runner.name}: write {cfg}/ssh_host_ed25519_key, {cfg}/agent_to_shell_ed25519_key, "
         f"{cfg}/status_known_hosts, {cfg}/agent-id, {cfg}/agent.toml"),
        (f"{runner.name}: authorize the shell in {agent.authorized_keys} "
         f"(and drop it from {agent.legacy_authorized_keys})"),
        f"here: authorize the agent in {shell.status_authorized_keys}",
        f"here: register {agent_id} at {address}:{agent.listen_port} in {shell.registry_dir}",
    ])
    if dry_run:
        return plan, None
    host_key, shell_to_agent, agent_to_shell = (
        asyncssh.generate_private_key("ssh-ed25519", comment=f"convocate:{what}:{agent_id}")
        for what in ("agent-host", "shell-to-agent", "agent-to-shell")
    )
    shell_ids = user_ids(shell.owner) if shell.owner else None
    status_key = load_or_create_host_key(shell.status_host_key, "convocate-status-host")
    if shell_ids is not None:   # the status service (not root) reads it
        os.chown(shell.status_host_key, *shell_ids, follow_symlinks=False)
    owner = agent.owner
    await _write(runner, cfg / "ssh_host_ed25519_key",
                 host_key.export_private_key("openssh").decode(), "600", owner)
    await _write(runner, cfg / "agent_to_shell_ed25519_key",
                 agent_to_shell.export_private_key("openssh").decode(), "600", owner)
    await _write(runner, cfg / "status_known_hosts",
                 known_hosts_line(shell.status_address, shell.status_port, status_key) + "\n", "600", owner)
    await _write(runner, cfg / "agent-id", agent_id + "\n", "644", "")
    await _write(runner, cfg / "agent.toml", _agent_toml(agent, shell), "644", "")
    tag = f"convocate:shell-to-agent:{agent_id}"
    await _replace_line(runner, agent.authorized_keys, tag.replace(".", "\\."),
                        allow_list_line(shell_to_agent, tag), owner)
    await _drop_lines(runner, agent.legacy_authorized_keys, "convocate:shell-to-agent:.*")
    status_tag = f"convocate:agent-to-shell:{agent_id}"
    _replace_local_line(shell.status_authorized_keys, status_tag, allow_list_line(agent_to_shell, status_tag),
                        -1 if shell_ids is None else shell_ids[1])
    record = register_agent(shell.registry_dir, agent_id, address, agent.listen_port,
                            shell_to_agent, public_key_text(host_key), owner=shell_ids)
    return plan, record
