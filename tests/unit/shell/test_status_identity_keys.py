"""The status allow-list read as key -> agent id: init-agent's comment, with or without OpenSSH options."""

from __future__ import annotations

from pathlib import Path

import asyncssh

from common.ssh_keys import public_key_text
from shell.status.identity import AgentKeys, agent_key_comment


def _key(comment: str) -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519", comment=comment)


def test_lines_name_their_agent_with_or_without_restrict_options(tmp_path: Path) -> None:
    """A tagged line names its agent, options included; an untagged or unlisted key names none."""
    a, b, plain, stranger = (_key(agent_key_comment("agent-a")), _key(agent_key_comment("agent-b")),
                             _key("someone"), _key(agent_key_comment("agent-c")))
    path = tmp_path / "status_authorized_keys"
    path.write_text("\n".join([
        "# comment",
        public_key_text(a),
        'restrict,command="/bin/false" ' + public_key_text(b),
        public_key_text(plain),
        "garbage line convocate:agent-to-shell:agent-x",
    ]) + "\n")
    keys = AgentKeys(path)

    def agent_for(key: asyncssh.SSHKey) -> str | None:  # the SSH server hands over the client's public key
        return keys.agent_for(asyncssh.import_public_key(public_key_text(key)))

    assert agent_for(a) == "agent-a"
    assert agent_for(b) == "agent-b"
    assert agent_for(plain) is None
    assert agent_for(stranger) is None
    assert "agent-a" in keys.agent_ids()
    assert "agent-b" in keys.agent_ids()
    assert AgentKeys(tmp_path / "missing").agent_for(a) is None
