"""`convocate-host install` (and the other host-wide commands): thin typer wrappers.

Progress lines go to stderr (for people); stdout carries the result: one summary line,
or with ``--json`` one JSON object (``changed``, ``steps``, ...). Exit codes: see
:data:`hostctl.report.EXIT_CODES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from common import defaults
from hostctl.report import EXIT_HELP, EXIT_ROLLED_BACK, Report, say_err

if TYPE_CHECKING:
    from hostctl.bundle import Bundle

# The commands import what they run (SSH, provisioning) when they run: --help stays fast.
PORTS = (22, defaults.AGENT_PORT, defaults.STATUS_PORT)

__all__ = ["DryRunOpt", "HostOpt", "JsonOpt", "load_release_bundle", "register"]

HostOpt = Annotated[str, typer.Option(help="The host to provision ('local' for this machine).")]
SshPortOpt = Annotated[int, typer.Option(help="OpenSSH port of the host.")]
UserOpt = Annotated[str, typer.Option(help="SSH user (root, or one with passwordless sudo).")]
KeyOpt = Annotated[Path | None, typer.Option(help="Private key for the host.")]
KnownHostsOpt = Annotated[Path | None, typer.Option(help="Known-hosts file pinning the host.")]
BundleOpt = Annotated[Path | None, typer.Option(help="A wheelhouse to install (default: built from this "
                                                      "checkout with pip wheel, cached by content).")]
PrefixOpt = Annotated[Path, typer.Option(help="Where releases live on the host.")]
BinDirOpt = Annotated[Path, typer.Option(help="Where the commands are linked on the host.")]
PythonOpt = Annotated[str, typer.Option(help="The host's Python for the venv (same minor version as here).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def load_release_bundle(given: Path | None) -> Bundle:
    """``--bundle`` if given, else this checkout's bundle (built once per source content)."""
    from common.errors import InvalidArgumentError  # noqa: PLC0415
    from hostctl import bundle as bundles  # noqa: PLC0415

    if given is not None:
        return bundles.load_bundle(given)
    source = bundles.source_root()
    if source is None:
        raise InvalidArgumentError("convocate-host does not run from a checkout: pass --bundle with a "
                                   "wheelhouse (pip wheel --wheel-dir DIR <checkout>)")
    return bundles.build_bundle(source)


def register(app: typer.Typer) -> None:
    """Add ``install``, ``init-shell`` and ``update`` to ``app``."""

    @app.command("install", epilog=EXIT_HELP)
    def install_cmd(
        host: HostOpt,
        ssh_port: SshPortOpt = 22,
        user: UserOpt = "root",
        key: KeyOpt = None,
        known_hosts: KnownHostsOpt = None,
        bundle: BundleOpt = None,
        software: Annotated[bool, typer.Option("--software/--no-software",
                                               help="Install convocate itself (the bundle).")] = True,
        packages: Annotated[bool, typer.Option(
            "--packages/--no-packages", help="apt-get install the missing packages the roles need.",
        )] = True,
        firewall: Annotated[bool, typer.Option("--firewall/--no-firewall",
                                               help=f"Accept tcp {', '.join(map(str, PORTS))}.")] = True,
        prefix: PrefixOpt = defaults.RELEASES_PREFIX,
        bin_dir: BinDirOpt = defaults.BIN_DIR,
        python: PythonOpt = "python3",
        dry_run: DryRunOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Prepare a fresh Debian/Ubuntu host: packages, the claude user (uid 1337), firewall, convocate.

        Over SSH with sudo -n. convocate goes over as a wheelhouse into a venv under --prefix
        (the host needs no package index). A host that already has all of it is left as it is.
        """
        import asyncio  # noqa: PLC0415

        from hostctl.host_install import PACKAGES, HostInstall, install_host  # noqa: PLC0415
        from hostctl.remote import with_runner  # noqa: PLC0415

        spec = HostInstall(bundle=load_release_bundle(bundle) if software else None,
                           packages=PACKAGES if packages else (), firewall=firewall, prefix=prefix,
                           bin_dir=bin_dir, python=python)
        report = Report("install", host, dry_run=dry_run, say=None if as_json else say_err)

        asyncio.run(with_runner(host, ssh_port, user, key, known_hosts,
                                lambda runner: install_host(runner, spec, report)))
        report.emit(as_json)

    @app.command("init-shell", epilog=EXIT_HELP)
    def init_shell_cmd(
        host: HostOpt,
        ssh_port: SshPortOpt = 22,
        user: UserOpt = "root",
        key: KeyOpt = None,
        known_hosts: KnownHostsOpt = None,
        log_name: Annotated[list[str] | None, typer.Option(
            help="Name (or IP) agents use for this host's log listener; repeat for more (default: --host).",
        )] = None,
        base: Annotated[str, typer.Option(
            help="Base image of the session image ('offline': the test image).")] = "ubuntu:24.04",
        logs: Annotated[bool, typer.Option("--logs/--no-logs", help="Set up the log listener.")] = True,
        dry_run: DryRunOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """The shell role there (convocate install: console login shell, status unit, dnsmasq, image),
        the status allow-list, and the rsyslog TLS listener (CA, server certificate, drop-in, logrotate)."""
        import asyncio  # noqa: PLC0415

        from hostctl.remote import with_runner  # noqa: PLC0415
        from hostctl.shell_setup import ShellSetup, setup_shell  # noqa: PLC0415

        setup = ShellSetup(log_names=tuple(log_name or [host]), logs=logs,
                           install_argv=("/usr/local/bin/convocate", "install", "--base", base))
        report = Report("init-shell", host, dry_run=dry_run, say=None if as_json else say_err)

        asyncio.run(with_runner(host, ssh_port, user, key, known_hosts,
                                lambda runner: setup_shell(runner, setup, report)))
        report.emit(as_json)

    @app.command("update", epilog=EXIT_HELP)
    def update_cmd(
        host: HostOpt,
        ssh_port: SshPortOpt = 22,
        user: UserOpt = "root",
        key: KeyOpt = None,
        known_hosts: KnownHostsOpt = None,
        bundle: BundleOpt = None,
        prefix: PrefixOpt = defaults.RELEASES_PREFIX,
        bin_dir: BinDirOpt = defaults.BIN_DIR,
        python: PythonOpt = "python3",
        registry: Annotated[Path, typer.Option(help="The agent registry (finds the host's agent).")] = (
            defaults.AGENT_KEYS_DIR),
        agent_id: Annotated[str | None, typer.Option(
            help="The host's agent (default: the registered agent at --host, if any).")] = None,
        image_tag: Annotated[str, typer.Option(help="Session image for an agent host ('' skips).")] = "",
        agent_config_dir: Annotated[Path, typer.Option(help="Config dir on the agent.")] = (
            defaults.AGENT_CONFIG_DIR),
        wait: Annotated[float, typer.Option(help="Seconds to wait for the agent on the new release.")] = 60.0,
        dry_run: DryRunOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Roll this release (and --image-tag) to a host; restart its services; roll back if they fail.

        The new release is installed beside the running one and switched to by renaming a link;
        running sessions keep running (on their image until restarted) and are listed again.
        If the agent does not answer on the new release, the previous one is restored (exit 4).
        """
        import asyncio  # noqa: PLC0415

        from common.registry import load_registry  # noqa: PLC0415
        from hostctl.agent_setup import AgentSetup  # noqa: PLC0415
        from hostctl.peering import AgentHostLayout  # noqa: PLC0415
        from hostctl.remote import with_runner  # noqa: PLC0415
        from hostctl.update import RolledBackError, UpdateSpec, update_host  # noqa: PLC0415

        records = load_registry(registry) if registry.is_dir() else []
        record = next((r for r in records
                       if r.agent_id == agent_id or (agent_id is None and r.address == host)), None)
        image = AgentSetup(address=host, agent=AgentHostLayout(config_dir=agent_config_dir),
                           image_tag=image_tag) if image_tag and record is not None else None
        spec = UpdateSpec(load_release_bundle(bundle), prefix=prefix, bin_dir=bin_dir, python=python,
                          agent=record, image=image, wait_timeout=wait)
        report = Report("update", host, dry_run=dry_run, say=None if as_json else say_err)

        try:
            asyncio.run(with_runner(host, ssh_port, user, key, known_hosts,
                                lambda runner: update_host(runner, spec, report)))
        except RolledBackError as e:
            say_err(f"error: {e}")
            raise typer.Exit(EXIT_ROLLED_BACK) from None
        report.emit(as_json)
