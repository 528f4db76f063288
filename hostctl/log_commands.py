"""`convocate-host logs ...`: the certificates of log forwarding (init-shell/init-agent call these)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from common.defaults import LOG_AGENT_TLS_DIR as AGENT_TLS_DIR
from common.defaults import LOG_SHELL_CA_DIR as SHELL_CA_DIR

__all__ = ["logs_app"]

logs_app = typer.Typer(help="Certificates for rsyslog over TLS (agents to the shell host).",
                       no_args_is_help=True)

_CA_CERT = typer.Option(help="CA certificate (made by `logs init-ca`).")
_CA_KEY = typer.Option(help="CA private key.")
_JSON = typer.Option("--json", help="Machine-readable output on stdout.")


def _say(as_json: bool, data: dict[str, object], line: str) -> None:
    print(json.dumps(data) if as_json else line)


@logs_app.command("init-ca")
def init_ca(
    out: Annotated[Path, typer.Option(help="Directory for ca.crt (0644) and ca.key (0600).")] = SHELL_CA_DIR,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Make the log-forwarding CA, unless the directory already holds one (then it is kept)."""
    from hostctl import logforward  # noqa: PLC0415 - lazy: --help stays fast
    made = logforward.init_ca(out)
    _say(as_json, {"ca_cert": str(out / "ca.crt"), "changed": made},
         f"made a CA in {out}" if made else f"{out} already holds a CA; nothing changed")


@logs_app.command("issue-server-cert")
def issue_server_cert(
    name: Annotated[list[str], typer.Option(help="Host name (or IP) agents use; repeat for more.")],
    ca_cert: Annotated[Path, _CA_CERT] = SHELL_CA_DIR / "ca.crt",
    ca_key: Annotated[Path, _CA_KEY] = SHELL_CA_DIR / "ca.key",
    out: Annotated[Path, typer.Option(help="Directory for server.crt, server.key, ca.crt.")] = SHELL_CA_DIR,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Issue the shell host's listener certificate (1 year, ServerAuth, names as SANs)."""
    from hostctl import logforward  # noqa: PLC0415 - lazy: --help stays fast
    cert = logforward.issue_server_cert(ca_cert, ca_key, name, out)
    _say(as_json, {"cert": str(cert), "names": name, "changed": True},
         f"issued {cert} for {', '.join(name)}")


@logs_app.command("issue-cert")
def issue_cert(
    agent: Annotated[str, typer.Option(help="The agent id (CN and SAN of the certificate).")],
    out: Annotated[Path, typer.Option(
        help=f"Directory for client.crt, client.key and ca.crt (on the agent: {AGENT_TLS_DIR})."
    )],
    ca_cert: Annotated[Path, _CA_CERT] = SHELL_CA_DIR / "ca.crt",
    ca_key: Annotated[Path, _CA_KEY] = SHELL_CA_DIR / "ca.key",
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Issue an agent's client certificate (1 year, ClientAuth)."""
    from hostctl import logforward  # noqa: PLC0415 - lazy: --help stays fast
    cert = logforward.issue_agent_cert(ca_cert, ca_key, agent, out)
    _say(as_json, {"cert": str(cert), "agent": agent, "changed": True}, f"issued {cert} for agent {agent}")
