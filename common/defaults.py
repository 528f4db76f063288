"""Every production default path, port and file name, in one place.

Configuration dataclasses, command-line options and the installers take their defaults
from here, so a path is changed once. Tests and the demo override them explicitly.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AGENT_AUTHORIZED_KEYS",
    "AGENT_AUTHORIZED_KEYS_NAME",
    "AGENT_CONFIG_DIR",
    "AGENT_KEYS_DIR",
    "AGENT_PORT",
    "AGENT_RUNTIME_DIR",
    "BIN_DIR",
    "CONFIG_FILE",
    "CURRENT_IMAGE_FILE",
    "DNSMASQ_HOSTS_FILE",
    "LOG_AGENT_DROPIN",
    "LOG_AGENT_TLS_DIR",
    "LOG_OWN_FILE",
    "LOG_PORT",
    "LOG_ROTATE_FILE",
    "LOG_SHELL_CA_DIR",
    "LOG_SHELL_DIR",
    "LOG_SHELL_DROPIN",
    "LOG_SPOOL_DIR",
    "RELEASES_PREFIX",
    "SESSIONS_ROOT",
    "SHELL_STATE_DIR",
    "SSHD_DROPIN",
    "STATUS_AUTHORIZED_KEYS",
    "STATUS_HOST_KEY",
    "STATUS_PORT",
    "STATUS_SOCKET",
]

# Ports of the two restricted SSH servers (one per gRPC socket).
AGENT_PORT = 222
STATUS_PORT = 223

# Both hosts.
CONFIG_FILE = Path("/etc/convocate/convocate.toml")
RELEASES_PREFIX = Path("/opt/convocate")   # releases/<digest>/venv, current -> releases/<...>
BIN_DIR = Path("/usr/local/bin")           # convocate, convocate-agent, convocate-host link here
SESSIONS_ROOT = Path("/home/claude")

# The agent host.
AGENT_CONFIG_DIR = Path("/etc/convocate-agent")
CURRENT_IMAGE_FILE = AGENT_CONFIG_DIR / "current-image"
# The shell's key, outside ~/.ssh so OpenSSH on :22 never reads it (root:claude 0640).
AGENT_AUTHORIZED_KEYS_NAME = "authorized_keys"
AGENT_AUTHORIZED_KEYS = AGENT_CONFIG_DIR / AGENT_AUTHORIZED_KEYS_NAME
AGENT_RUNTIME_DIR = Path("/run/convocate-agent")  # systemd's RuntimeDirectory

# The shell host.
AGENT_KEYS_DIR = Path("/etc/convocate/agent-keys")  # the agent registry (0700, claude)
STATUS_HOST_KEY = Path("/etc/convocate/status_host_ed25519_key")
STATUS_AUTHORIZED_KEYS = Path("/etc/convocate/status_authorized_keys")  # root:claude 0640
STATUS_SOCKET = Path("/run/convocate/status.sock")
SHELL_STATE_DIR = Path("/var/lib/convocate")
DNSMASQ_HOSTS_FILE = SHELL_STATE_DIR / "dnsmasq-hosts"

# Log forwarding (rsyslog over TLS, agents to the shell host).
LOG_PORT = 514
LOG_SHELL_CA_DIR = Path("/etc/convocate/rsyslog-ca")  # ca.crt ca.key server.crt server.key
LOG_SHELL_DROPIN = Path("/etc/rsyslog.d/10-convocate-server.conf")
LOG_SHELL_DIR = Path("/var/log/convocate-agent")  # one <agent id>.log per agent
LOG_OWN_FILE = Path("/var/log/convocate.log")
LOG_ROTATE_FILE = Path("/etc/logrotate.d/convocate-agent-logs")
LOG_AGENT_TLS_DIR = AGENT_CONFIG_DIR / "rsyslog-tls"  # ca.crt client.crt client.key
LOG_AGENT_DROPIN = Path("/etc/rsyslog.d/10-convocate-client.conf")
LOG_SPOOL_DIR = Path("/var/spool/rsyslog")

# Both hosts: the system sshd's Match block for the service user (no forwarding, forced command).
SSHD_DROPIN = Path("/etc/ssh/sshd_config.d/convocate.conf")
