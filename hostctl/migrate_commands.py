"""`convocate-host migrate-session` and `drain`: thin typer wrappers over hostctl.migrate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from common import defaults
from hostctl.report import EXIT_HELP, EXIT_PARTIAL, Report, say_err

if TYPE_CHECKING:
    from common.registry import AgentRecord
    from hostctl.migrate import Side

# The commands import what they run (SSH, gRPC) when they run: --help stays fast.

__all__ = ["register"]

SHELL = "shell"
RegistryOpt = Annotated[Path, typer.Option(help="The agent registry on this shell host.")]
SshPortOpt = Annotated[int, typer.Option(help="OpenSSH port of both hosts (provisioning).")]
UserOpt = Annotated[str, typer.Option(help="SSH user on both hosts (root, or one with passwordless sudo).")]
KeyOpt = Annotated[Path | None, typer.Option(help="Private key for both hosts.")]
KnownHostsOpt = Annotated[Path | None, typer.Option(help="Known-hosts file pinning both hosts.")]
RootOpt = Annotated[str, typer.Option(help="Sessions root on the agents.")]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds for each agent call and wait.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def _record(records: list[AgentRecord], name: str) -> AgentRecord:
    from common.errors import NotFoundError  # noqa: PLC0415

    for r in records:
        if name in (r.agent_id, r.address):
            return r
    known = ", ".join(r.agent_id for r in records) or "none"
    raise NotFoundError(f"no registered agent {name!r} (registered: {known}): run init-agent first")


def _side(record: AgentRecord | None, host: str | None, root: str, ssh: tuple[int, str, Path | None,
          Path | None]) -> Side:
    from hostctl.migrate import Side  # noqa: PLC0415
    from hostctl.remote import make_runner  # noqa: PLC0415

    address = host or (record.address if record else "local")
    return Side(make_runner(address, *ssh), root, record)


def register(app: typer.Typer) -> None:
    """Add ``migrate-session`` and ``drain`` to ``app``."""

    @app.command("migrate-session", epilog=EXIT_HELP)
    def migrate_cmd(
        session: Annotated[str, typer.Option(help="The session id (UUID).")],
        to: Annotated[str, typer.Option("--to", help="Target agent (id or address).")],
        source: Annotated[str, typer.Option("--from", help=(
            "Source agent (id or address), or 'shell' for a pre-v2 orphan on the shell host."))],
        registry: RegistryOpt = defaults.AGENT_KEYS_DIR,
        from_host: Annotated[str | None, typer.Option(help="SSH address of the source host "
                                                            "(default: the agent's; 'local' here).")] = None,
        to_host: Annotated[str | None, typer.Option(help="SSH address of the target host "
                                                          "(default: the agent's).")] = None,
        ssh_port: SshPortOpt = 22,
        user: UserOpt = "root",
        key: KeyOpt = None,
        known_hosts: KnownHostsOpt = None,
        sessions_root: RootOpt = str(defaults.SESSIONS_ROOT),
        to_sessions_root: Annotated[str | None, typer.Option(
            help="Sessions root on the target, if not the same path.")] = None,
        shell_base: Annotated[str, typer.Option(help="Where pre-v2 sessions are on the shell host.")] = (
            str(defaults.SESSIONS_ROOT)),
        timeout: TimeoutOpt = 30.0,
        dry_run: DryRunOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Move a session (home, transcript, record) to the same path on another agent.

        Stop, copy (tar over both SSH connections, sha256 on both ends), import, start there
        if it ran, then remove it from the source. A failure leaves it whole on one side.
        """
        import asyncio  # noqa: PLC0415

        from common.registry import load_registry  # noqa: PLC0415
        from hostctl.migrate import migrate_session  # noqa: PLC0415

        records = load_registry(registry)
        ssh = (ssh_port, user, key, known_hosts)
        report = Report("migrate-session", session, dry_run=dry_run, say=None if as_json else say_err)

        async def go() -> None:
            src = (_side(None, from_host, shell_base, ssh) if source == SHELL
                   else _side(_record(records, source), from_host, sessions_root, ssh))
            tgt = _side(_record(records, to), to_host, to_sessions_root or sessions_root, ssh)
            try:
                await migrate_session(src, tgt, session, report, timeout=timeout)
            finally:
                await src.runner.close()
                await tgt.runner.close()

        asyncio.run(go())
        report.emit(as_json)

    @app.command("drain", epilog=EXIT_HELP)
    def drain_cmd(
        host: Annotated[str, typer.Option(help="The agent to empty (id or address).")],
        to: Annotated[str, typer.Option("--to", help="Target agent (id or address).")],
        registry: RegistryOpt = defaults.AGENT_KEYS_DIR,
        from_host: Annotated[str | None, typer.Option(help="SSH address of the drained host.")] = None,
        to_host: Annotated[str | None, typer.Option(help="SSH address of the target host.")] = None,
        ssh_port: SshPortOpt = 22,
        user: UserOpt = "root",
        key: KeyOpt = None,
        known_hosts: KnownHostsOpt = None,
        sessions_root: RootOpt = str(defaults.SESSIONS_ROOT),
        timeout: TimeoutOpt = 30.0,
        dry_run: DryRunOpt = False,
        as_json: JsonOpt = False,
    ) -> None:
        """Move every session off an agent, one by one, reporting each (exit 3 if some stayed)."""
        import asyncio  # noqa: PLC0415

        from common.registry import load_registry  # noqa: PLC0415
        from hostctl.migrate import drain_agent  # noqa: PLC0415

        records = load_registry(registry)
        ssh = (ssh_port, user, key, known_hosts)
        report = Report("drain", host, dry_run=dry_run, say=None if as_json else say_err)

        async def go() -> list[str]:
            src = _side(_record(records, host), from_host, sessions_root, ssh)
            tgt = _side(_record(records, to), to_host, sessions_root, ssh)
            try:
                return await drain_agent(src, tgt, report, timeout=timeout)
            finally:
                await src.runner.close()
                await tgt.runner.close()

        failed = asyncio.run(go())
        report.emit(as_json)
        if failed:
            raise typer.Exit(EXIT_PARTIAL)
