"""Container specification: name, labels, mounts (Docker socket opt-in), port, DNS, image pointer."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.container_spec import container_spec, read_current_image
from agent.runtime import ContainerSpec, Mount
from agent.sessions import SessionRecord
from common.errors import InvalidArgumentError

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SID = "5a0ef8a4-0c61-4f0e-9d3c-2f1d6b1d1a11"


def _spec(config: AgentConfig, existing: set[str] | None = None) -> ContainerSpec:
    rec = SessionRecord(SID, "n", NOW, NOW, 1001, "udp")
    return container_spec(config, rec, agent_id="agent1", image="img:1", session_dir=Path("/h") / SID,
                          exists=lambda p: str(p) in (existing or set()), dns_address=lambda: "10.0.0.5")


def test_defaults_follow_the_v2_layout_without_the_docker_socket() -> None:
    """Home, shared config (read-only), labels, port, DNS auto and cgroup parent are set."""
    spec = _spec(AgentConfig())
    assert spec.name == f"convocate-session-{SID}"
    assert spec.labels == {"convocate.session": SID, "convocate.agent": "agent1"}
    assert spec.mounts == (
        Mount(f"/h/{SID}", "/home/claude"),
        Mount("/home/claude/.claude", "/home/claude/.claude-shared", read_only=True),
    )
    assert (spec.port, spec.protocol) == (1001, "udp")
    assert spec.dns == ("10.0.0.5",)
    assert spec.cgroup_parent == "convocate-sessions.slice"
    assert spec.command == ("/usr/local/bin/claude", "--dangerously-skip-permissions")


def test_optional_mounts_and_docker_socket_opt_in() -> None:
    """The Docker socket is mounted only when opted in; .ssh, .gitconfig and the CLI only if present."""
    config = AgentConfig(mount_docker_socket=True, dns_server="")
    spec = _spec(config, {"/home/claude/.ssh", "/usr/local/bin/claude"})
    targets = [m.target for m in spec.mounts]
    assert "/var/run/docker.sock" in targets
    assert "/home/claude/.ssh" in targets
    assert "/usr/local/bin/claude" in targets
    assert "/home/claude/.gitconfig" not in targets
    assert spec.dns == ()


def test_current_image_pointer_is_read_each_time(tmp_path: Path) -> None:
    """The pointer's trimmed content wins; a missing or empty pointer falls back to the default."""
    config = AgentConfig(config_dir=tmp_path, image="convocate:latest")
    assert read_current_image(config) == "convocate:latest"
    (tmp_path / "current-image").write_text(" convocate:v2.1 \n")
    assert read_current_image(config) == "convocate:v2.1"
    (tmp_path / "current-image").write_text("\n")
    assert read_current_image(config) == "convocate:latest"


def test_finding4_the_container_keeps_only_the_entrypoints_capabilities_and_a_pid_limit() -> None:
    """Security review finding 4: the spec names the few capabilities kept (never MKNOD,
    SETFCAP, SYS_ADMIN or NET_RAW), a PID limit, and a non-root session user."""
    spec = _spec(AgentConfig(pids_limit=77, session_uid=4242, session_gid=4343))
    assert set(spec.cap_add) == {"CHOWN", "SETUID", "SETGID", "AUDIT_WRITE"}
    assert spec.pids_limit == 77
    assert (spec.env["CLAUDE_UID"], spec.env["CLAUDE_GID"]) == ("4242", "4343")
    assert AgentConfig().session_owner != (0, 0)
    with pytest.raises(InvalidArgumentError, match="never runs as root"):
        _ = AgentConfig(session_uid=0).session_owner
