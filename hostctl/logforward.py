"""Log forwarding from agents to the shell host: rsyslog over TLS with mutual x509.

The shell host runs the listener (``10-convocate-server.conf``: imtcp with the gtls
driver, client certificates required and checked against the CA, one file per agent
under ``/var/log/convocate-agent/``) and rotates those files (``convocate-agent-logs``).
Each agent runs the forwarder (``10-convocate-client.conf``: omfwd over TLS with its
client certificate, the shell's certificate checked by name, a disk-assisted queue).
The templates live in ``deploy/rsyslog/``; this module fills them and writes the
certificates (:mod:`hostctl.log_pki`) into a directory, keys 0600. Where the files go
on the hosts is in :mod:`common.defaults` (``LOG_*``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from common import defaults
from common.deploy_files import deploy_dir
from common.errors import AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError
from common.paths import atomic_write, private_dir
from hostctl import log_pki

__all__ = [
    "HOST_PACKAGES",
    "Forwarder",
    "Listener",
    "init_ca",
    "issue_agent_cert",
    "issue_server_cert",
    "read_ca",
    "render_forwarder",
    "render_listener",
    "render_logrotate",
]

HOST_PACKAGES = ("rsyslog", "rsyslog-gnutls")  # what both roles need installed
CA_CERT, CA_KEY = "ca.crt", "ca.key"
SERVER_CERT, SERVER_KEY = "server.crt", "server.key"
CLIENT_CERT, CLIENT_KEY = "client.crt", "client.key"


@dataclass(frozen=True)
class Listener:
    """Where the shell host's listener listens, what it presents and where it writes."""

    address: str = "0.0.0.0"  # noqa: S104 - agents connect from other hosts
    port: int = defaults.LOG_PORT
    tls_dir: Path = defaults.LOG_SHELL_CA_DIR
    log_dir: Path = defaults.LOG_SHELL_DIR
    own_log: Path = defaults.LOG_OWN_FILE


@dataclass(frozen=True)
class Forwarder:
    """One agent's forwarder: who it is, where the shell listens, its certificates."""

    agent_id: str
    target: str  # the shell host's address
    server_name: str  # a name in the shell's server certificate (checked by the agent)
    port: int = defaults.LOG_PORT
    tls_dir: Path = defaults.LOG_AGENT_TLS_DIR
    spool_dir: Path = defaults.LOG_SPOOL_DIR


_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")
# Values go into double-quoted rsyslog strings: no quotes, backslashes or line breaks.
_UNSAFE = re.compile(r'["\\\n\r%]')


def _render(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        if _UNSAFE.search(value):
            raise InvalidArgumentError(f"{key.lower()} {value!r} cannot go into an rsyslog string")
    text = (deploy_dir() / "rsyslog" / template).read_text()
    missing = {m for m in _PLACEHOLDER.findall(text) if m not in values}
    if missing:  # pragma: no cover - a template and this module out of step
        raise FailedPreconditionError(f"{template} needs {', '.join(sorted(missing))}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def render_listener(listener: Listener) -> str:
    """The shell host's rsyslog drop-in (``defaults.LOG_SHELL_DROPIN``)."""
    return _render("10-convocate-server.conf.in", {
        "ADDRESS": listener.address, "PORT": str(listener.port),
        "CA_FILE": str(listener.tls_dir / CA_CERT), "CERT_FILE": str(listener.tls_dir / SERVER_CERT),
        "KEY_FILE": str(listener.tls_dir / SERVER_KEY),
        "LOG_DIR": str(listener.log_dir), "OWN_LOG": str(listener.own_log),
    })


def render_forwarder(forwarder: Forwarder) -> str:
    """An agent host's rsyslog drop-in (``defaults.LOG_AGENT_DROPIN``)."""
    log_pki.check_name(forwarder.agent_id, "agent id")
    log_pki.check_name(forwarder.server_name, "server name")
    return _render("10-convocate-client.conf.in", {
        "AGENT_ID": forwarder.agent_id, "TARGET": forwarder.target, "PORT": str(forwarder.port),
        "SERVER_NAME": forwarder.server_name,
        "CA_FILE": str(forwarder.tls_dir / CA_CERT), "CERT_FILE": str(forwarder.tls_dir / CLIENT_CERT),
        "KEY_FILE": str(forwarder.tls_dir / CLIENT_KEY), "SPOOL_DIR": str(forwarder.spool_dir),
    })


def render_logrotate(listener: Listener) -> str:
    """The shell host's logrotate file for the per-agent logs (``defaults.LOG_ROTATE_FILE``)."""
    return _render("convocate-agent-logs.logrotate.in",
                   {"LOG_DIR": str(listener.log_dir), "OWN_LOG": str(listener.own_log)})


def read_ca(ca_cert: Path, ca_key: Path) -> tuple[bytes, bytes]:
    """The CA certificate and key (PEM), checked to match; a missing file says how to make one."""
    try:
        cert, key = ca_cert.read_bytes(), ca_key.read_bytes()
    except FileNotFoundError as e:
        raise NotFoundError(
            f"no CA at {e.filename}: run 'convocate-host logs init-ca' (init-shell does) or pass "
            "--ca-cert/--ca-key"
        ) from None
    log_pki.load_ca(cert, key)  # checks they match before anything is issued
    return cert, key


def _write_pair(out: Path, issued: log_pki.Issued, cert_name: str, key_name: str, ca_pem: bytes) -> None:
    private_dir(out, 0o755)
    atomic_write(out / key_name, issued.key_pem, mode=0o600)
    atomic_write(out / cert_name, issued.cert_pem, mode=0o644)
    atomic_write(out / CA_CERT, ca_pem, mode=0o644)


def init_ca(out: Path) -> bool:
    """Make a CA in ``out`` (``ca.crt`` 0644, ``ca.key`` 0600) unless one is there.

    Returns:
        True if a CA was made, False if ``out`` already held one (it is kept).

    Raises:
        AlreadyExistsError: only one of the two files exists (nothing is overwritten).
    """
    cert, key = out / CA_CERT, out / CA_KEY
    if cert.exists() and key.exists():
        read_ca(cert, key)
        return False
    if cert.exists() or key.exists():
        raise AlreadyExistsError(
            f"{out} holds only one of {CA_CERT}/{CA_KEY}: restore the other or remove it"
        )
    ca = log_pki.make_ca()
    private_dir(out, 0o755)
    atomic_write(key, ca.key_pem, mode=0o600)
    atomic_write(cert, ca.cert_pem, mode=0o644)
    return True


def issue_server_cert(ca_cert: Path, ca_key: Path, names: list[str], out: Path) -> Path:
    """Issue the listener's certificate for ``names`` into ``out``; return the certificate's path."""
    ca_pem, key_pem = read_ca(ca_cert, ca_key)
    _write_pair(out, log_pki.issue_server(ca_pem, key_pem, names), SERVER_CERT, SERVER_KEY, ca_pem)
    return out / SERVER_CERT


def issue_agent_cert(ca_cert: Path, ca_key: Path, agent_id: str, out: Path) -> Path:
    """Issue ``agent_id``'s client certificate into ``out`` (with ``ca.crt``); return its path."""
    ca_pem, key_pem = read_ca(ca_cert, ca_key)
    _write_pair(out, log_pki.issue_client(ca_pem, key_pem, agent_id), CLIENT_CERT, CLIENT_KEY, ca_pem)
    return out / CLIENT_CERT
