"""``convocate``: the operator's console (no arguments), plus install, units, status, demo, version.

``main()`` is the error boundary: a known error prints one line ``error: ...`` and exits
1; a traceback appears only with ``CONVOCATE_DEBUG=1``. The console itself logs to a
file, never to the screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from common.cli_boundary import run_with_error_boundary
from common.config import load
from common.logging import configure_logging
from common.open_files import raise_open_files_limit
from common.version import VERSION
from shell.console.config import check_uid, load_shell_config

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=False, rich_markup_mode=None,  # brackets print
                  help="The convocate console: sessions on every agent, in one table.")
status_app = typer.Typer(add_completion=False, rich_markup_mode=None,
                        help="The shell-side status service.")
app.add_typer(status_app, name="status")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML configuration file.")]


@app.callback(invoke_without_command=True)
def console(
    ctx: typer.Context,
    config: ConfigOpt = None,
    registry_dir: Annotated[Path | None, typer.Option(help="Agent registry directory.")] = None,
    status_socket: Annotated[Path | None, typer.Option(help="Status service socket.")] = None,
    log_file: Annotated[Path | None, typer.Option(help="Console log file.")] = None,
    expected_uid: Annotated[int | None, typer.Option(help="Only this uid may run the console (-1: any).")]
    = None,
) -> None:
    """Open the console (the login shell of the claude user)."""
    if ctx.invoked_subcommand is not None:
        return
    cfg = load_shell_config(config, registry_dir=registry_dir, status_socket=status_socket,
                            log_file=log_file, expected_uid=expected_uid)
    check_uid(cfg)
    configure_logging("tui", log_file=cfg.console_log)
    raise_open_files_limit()   # a few descriptors per agent: a login session's 1024 is ~250 agents
    from shell.console.runner import run_console_for  # noqa: PLC0415 - keeps `--help` fast

    asyncio.run(run_console_for(cfg))
    print("Goodbye!")


@status_app.command("serve")
def status_serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="SSH listen address.")] = None,
    port: Annotated[int | None, typer.Option(help="SSH port (223).")] = None,
    socket: Annotated[Path | None, typer.Option(help="Status gRPC socket.")] = None,
) -> None:
    """Run the status service (SSH :223 + Status gRPC); systemd starts it."""
    from shell.status.server import StatusConfig, serve_status  # noqa: PLC0415 - service-only deps

    configure_logging("service")
    cfg = load(StatusConfig, "status", config_file=config,
               overrides={"host": host, "port": port, "socket": socket})
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(serve_status(cfg))


@app.command()
def units(
    root: Annotated[Path, typer.Option(help="The host's files are under this prefix (tests).")] = Path("/"),
    user: Annotated[str | None, typer.Option(help="The console user (default: as installed).")] = None,
    exec_path: Annotated[str | None, typer.Option(help="Installed path of convocate (default: as "
                                                  "installed).")] = None,
) -> None:
    """Print the systemd files install writes, rendered for this host as it was installed, as JSON.

    The options install took come from its record (/etc/convocate/install-options.json),
    or for a host installed before it from the installed status unit; given here, they
    win. Exit 3 when neither tells. Names are relative to /etc/systemd/system;
    convocate-host update writes the ones that differ when it rolls this release out.
    """
    from common.errors import FailedPreconditionError  # noqa: PLC0415
    from common.install_options import OPTIONS_UNKNOWN, units_document  # noqa: PLC0415
    from shell.install import ENABLE, START, UnitOptions, installed_unit_options, render_units  # noqa: PLC0415

    if user is None or exec_path is None:
        try:
            installed = installed_unit_options(root)
        except FailedPreconditionError as e:
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(OPTIONS_UNKNOWN) from None
    else:
        installed = UnitOptions(exec_path, user)
    rendered = render_units(exec_path or installed.exec_path, user or installed.user)
    print(units_document(rendered, ENABLE, START))


@app.command()
def install(
    root: Annotated[Path, typer.Option(help="Prefix for every file (tests, images).")] = Path("/"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan, change nothing.")] = False,
    base: Annotated[str, typer.Option(help="Base image of the session image ('offline': the "
                                      "offline test image).")] = "ubuntu:24.04",
    user: Annotated[str, typer.Option(help="The console user.")] = "claude",
    uid: Annotated[int, typer.Option(help="Its uid.")] = 1337,
    exec_path: Annotated[str, typer.Option(help="Installed path of convocate.")] = "/usr/local/bin/convocate",
    no_image: Annotated[bool, typer.Option("--no-image", help="Skip the image build.")] = False,
    no_start: Annotated[bool, typer.Option("--no-start", help="Do not start the status service.")] = False,
) -> None:
    """Prepare this shell host: user, login shell, status service, dnsmasq, session image."""
    from shell.install import InstallOptions, run_install  # noqa: PLC0415 - SSH set-up code, install only

    opts = InstallOptions(root=root, dry_run=dry_run, user=user, uid=uid, base=base, exec_path=exec_path,
                          build_image=not no_image, start_service=not no_start)
    run_install(opts, print)


@app.command()
def demo(
    workdir: Annotated[Path | None, typer.Option(help="Where the demo keeps its state.")] = None,
    no_console: Annotated[bool, typer.Option("--no-console", help="Start everything, check it, "
                                             "stop (smoke test).")] = False,
    keep_sessions: Annotated[bool, typer.Option("--keep-sessions", help="Leave session containers "
                                                "running on exit.")] = False,
) -> None:
    """One machine, one command: a local agent, the status service and the console."""
    from shell.demo import DemoOptions, run_demo  # noqa: PLC0415 - pulls in the agent's modules

    configure_logging("cli", level=os.environ.get("CONVOCATE_LOG_LEVEL", "ERROR"))
    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):   # cleaned up already
        asyncio.run(run_demo(DemoOptions(workdir=workdir, console=not no_console,
                                         keep_sessions=keep_sessions), print))


@app.command()
def version() -> None:
    """Print the version."""
    print(f"convocate version {VERSION}")


def forced_console_argv(argv: list[str]) -> list[str]:
    """``argv`` with sshd's ``-c <console>`` removed.

    sshd runs ``ForceCommand`` through the login shell as ``<shell> -c <command>``; the
    login shell is this program and the forced command is this program again (see
    ``common.sshd_dropin``), so that pair means "open the console". Any other ``-c``
    stays, and is a usage error (remote commands are not available).
    """
    if len(argv) == 3 and argv[1] == "-c" and Path(argv[2]).name == Path(argv[0]).name.lstrip("-"):
        return argv[:1]
    return argv


def main() -> None:
    """Entry point: known errors become one line on stderr and exit 1."""
    sys.argv = forced_console_argv(sys.argv)
    run_with_error_boundary(app)


if __name__ == "__main__":  # `python -m shell.main` (tests and the demo run the status service so)
    main()
