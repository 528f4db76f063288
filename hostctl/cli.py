"""The `convocate-host` command: thin typer wrappers over plain functions.

``main()`` is the error boundary: a known error prints one line (``error: ...``) and
exits 1; a traceback appears only with ``CONVOCATE_DEBUG=1``.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.main import get_command_name

from common.cli_boundary import run_with_error_boundary
from common.startup_gc import freeze_at_exit
from common.version import VERSION
from hostctl import fleet_commands, migrate_commands, provision_commands
from hostctl.image_commands import image_app
from hostctl.log_commands import logs_app

# Each command imports what it runs when it runs (SSH, gRPC, logging): --help stays fast.

__all__ = ["app", "app_for", "main"]

app = typer.Typer(
    name="convocate-host",
    help="Provision convocate hosts, peer agents, and debug them through the SSH tunnel.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts print as written, brackets included
)
app.add_typer(image_app, name="image")
app.add_typer(logs_app, name="logs")


@app.callback()
def _logging() -> None:
    """Log to stderr (warnings and up unless CONVOCATE_LOG_LEVEL says otherwise); stdout is output.

    structlog loads with the first module that logs: a command that logs nothing skips it."""
    from common.logging import configure_logging_on_first_use  # noqa: PLC0415
    configure_logging_on_first_use("cli", level=os.environ.get("CONVOCATE_LOG_LEVEL", "WARNING"))

fleet_commands.register(app)
provision_commands.register(app)
migrate_commands.register(app)


@app.command()
def version() -> None:
    """Print the version."""
    print(f"convocate-host version {VERSION}")


@app.command()
def tunnel(
    host: Annotated[str, typer.Option(help="SSH address of the agent or status service.")],
    key: Annotated[Path, typer.Option(help="Private key the peer authorizes.")],
    known_hosts: Annotated[Path, typer.Option(help="Known-hosts file pinning the peer's host key.")],
    port: Annotated[int, typer.Option(help="SSH port: 222 for an agent, 223 for the status service.")] = 222,
    name: Annotated[str, typer.Option(help="A name for the peer in messages.")] = "peer",
    socket: Annotated[Path | None, typer.Option(help="Local socket to create.")] = None,
    user: Annotated[str, typer.Option(help="SSH user name.")] = "claude",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the first connection.")] = 15.0,
    once: Annotated[bool, typer.Option(help="Exit as soon as the tunnel is up.")] = False,
) -> None:
    """Forward a local UNIX socket to the peer's gRPC socket (for grpcurl), until Ctrl-C."""
    import asyncio  # noqa: PLC0415

    from common.tunnel import TunnelSettings  # noqa: PLC0415
    from hostctl.tunnel_command import default_socket, run_tunnel  # noqa: PLC0415

    with contextlib.ExitStack() as stack:
        settings = TunnelSettings(
            name=name, host=host, port=port, client_key=key, known_hosts=known_hosts,
            local_socket=socket or stack.enter_context(default_socket()), username=user,
        )
        asyncio.run(run_tunnel(settings, ready_timeout=timeout, once=once))


def _name(entry: object) -> str | None:
    """The name a registered command or sub-app is called by (None: typer derives it, not said here)."""
    name = getattr(entry, "name", None)
    if isinstance(name, str):
        return name
    callback = getattr(entry, "callback", None)
    return get_command_name(callback.__name__) if callback is not None and name is None else None


def app_for(argv: list[str]) -> typer.Typer:
    """The app with only the command ``argv`` names, or the whole app.

    typer builds the parser of every command before it parses one (all their options'
    annotations evaluated: tens of ms, issue 13); a command line names one command, so the
    others are left out. ``--help``, no command, or a name it does not know: the whole app,
    so the listing and typer's own "No such command" stay as they are.
    """
    if not argv or argv[0].startswith("-"):
        return app
    wanted = argv[0]
    commands = [c for c in app.registered_commands if _name(c) in (wanted, None)]
    groups = [g for g in app.registered_groups if _name(g) in (wanted, None)]
    if not any(_name(e) == wanted for e in (*commands, *groups)):
        return app
    one = copy.copy(app)
    one.registered_commands, one.registered_groups = commands, groups
    return one


def main() -> None:
    """Entry point: known errors become one line on stderr and exit 1."""
    try:
        run_with_error_boundary(app_for(sys.argv[1:]))
    finally:
        freeze_at_exit()   # the process ends here: its exit skips collecting what it loaded
