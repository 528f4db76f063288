"""`convocate-host init-agent`, `agents` and `sessions`: thin typer wrappers."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from common import defaults
from common.text import safe_display
from common.version import VERSION
from hostctl.codecs import DEFAULT_CODEC, CodecName
from hostctl.report import EXIT_HELP, EXIT_PARTIAL, Report, say_err

# The commands import what they run (SSH, gRPC, provisioning) when they run: building the
# command line, and --help, stay fast (issue 13: start-up of every CI call).

__all__ = ["register"]

PARTIAL = EXIT_PARTIAL  # exit status: some agents did not answer, or their Docker Engine is down

RegistryOpt = Annotated[Path, typer.Option(help="The agent registry on this shell host.")]
TimeoutOpt = Annotated[float, typer.Option(help=(
    "Seconds to wait for each agent. One that refuses the connection is given up after 2 s "
    "(at most half of this), one whose host key is not the pinned one or that refuses our key at "
    "once."))]
DirectOpt = Annotated[bool, typer.Option("--direct", help=(
    "Ask every agent over an SSH connection of this command's own. By default an agent is asked "
    "through the local status service's standing tunnel to it when that is usable (the service "
    "probes the same registry, its socket is private and newer than the agent's entry, and Ping "
    'answers there), else over a connection of its own; --json says which ("via": '
    '"status-service" or "direct"). The calls go to the agents either way.'))]
DEFAULT_REGISTRY = defaults.AGENT_KEYS_DIR   # = common.registry.DEFAULT_REGISTRY_DIR, without its imports


def _print_agents(reports: list[dict[str, object]]) -> None:
    for r in reports:
        # Every string here came from an agent or the registry: shown escaped.
        state = "up" if r["reachable"] else f"DOWN: {safe_display(r['error'])}"
        link = {True: "status link up", False: "status link DOWN", None: "status link ?"}[
            r["status_link_up"]]  # type: ignore[index]
        print(f"{safe_display(r['agent_id']):<14} {safe_display(r['address'])}:{r['port']:<6} {state}"
              + (f"  v{safe_display(r['version'])}  {link}" if r["reachable"] else ""))
        health = r.get("health")
        if r["reachable"] and isinstance(health, dict):
            print(f"{'':<14} {_health_line(health)}")


def _health_line(h: dict[str, Any]) -> str:
    """The engine and host of one agent, one line; what is wrong in capitals."""
    mib = 1024 * 1024
    engine = (f"engine {safe_display(h['engine_version'])}" if h["engine_up"]
              else f"engine DOWN: {safe_display(h['engine_error'])}")
    disk = f"disk {h['disk_free_bytes'] // mib} MiB free" + (" (LOW)" if h["disk_low"] else "")
    return f"{engine}, {disk}, mem {h['mem_available_bytes'] // mib} MiB free, load {h['load1']:.2f}"


def _when(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def register(app: typer.Typer) -> None:
    """Add the fleet commands to ``app``."""

    @app.command("init-agent", epilog=EXIT_HELP)
    def init_agent_cmd(
        host: Annotated[str, typer.Option(help="The agent host ('local' for this machine).")],
        status_address: Annotated[str, typer.Option(help="Address agents use to reach this shell.")],
        address: Annotated[str | None, typer.Option(help="Address the shell uses for the agent "
                                                         "(default: --host).")] = None,
        agent_id: Annotated[str | None, typer.Option(help="Agent id (default: the host's, or new).")] = None,
        ssh_port: Annotated[int, typer.Option(help="OpenSSH port for provisioning.")] = 22,
        user: Annotated[str, typer.Option(help="Provisioning user (root or passwordless sudo).")] = "root",
        key: Annotated[Path | None, typer.Option(help="Provisioning private key.")] = None,
        known_hosts: Annotated[Path | None, typer.Option(help="Known-hosts pinning the agent host.")] = None,
        agent_port: Annotated[int, typer.Option(help="The agent's SSH API port.")] = (
            defaults.AGENT_PORT),
        status_port: Annotated[int, typer.Option(help="This shell's status SSH port.")] = (
            defaults.STATUS_PORT),
        agent_config_dir: Annotated[Path, typer.Option(help="Config dir on the agent.")] = (
            defaults.AGENT_CONFIG_DIR),
        sessions_root: Annotated[Path, typer.Option(help="Sessions root on the agent.")] = (
            defaults.SESSIONS_ROOT),
        owner: Annotated[str, typer.Option(help="Owner of the agent's files ('' = unchanged).")] = "claude",
        registry: RegistryOpt = DEFAULT_REGISTRY,
        status_host_key: Annotated[Path, typer.Option(help="This shell's status host key.")] = (
            defaults.STATUS_HOST_KEY),
        status_authorized_keys: Annotated[Path, typer.Option(help="Status service allow-list.")] = (
            defaults.STATUS_AUTHORIZED_KEYS),
        image_tag: Annotated[str, typer.Option(help="Session image to push ('' skips the push).")] = (
            f"convocate:{VERSION}"),
        codec: Annotated[CodecName, typer.Option(help="Image codec (gzip: hosts without zstd).")] = (
            DEFAULT_CODEC),
        ca_cert: Annotated[Path, typer.Option(help="Log CA certificate (a copy, off the shell host).")] = (
            defaults.LOG_SHELL_CA_DIR / "ca.crt"),
        ca_key: Annotated[Path, typer.Option(help="Log CA private key.")] = (
            defaults.LOG_SHELL_CA_DIR / "ca.key"),
        logs: Annotated[bool, typer.Option("--logs/--no-logs", help="Set up log forwarding.")] = True,
        log_target: Annotated[str, typer.Option(help="Shell address for rsyslog (default: status).")] = "",
        log_server_name: Annotated[str, typer.Option(help="Name in the shell's log server certificate "
                                                          "(default: the log target).")] = "",
        rotate_keys: Annotated[bool, typer.Option("--rotate-keys", help="New keys even if peered.")] = False,
        wait: Annotated[float, typer.Option(help="Seconds to wait for the agent to answer.")] = 60.0,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """The whole agent: role, keys both ways (pinned), image, log certificate, start, wait for Ping."""
        import asyncio  # noqa: PLC0415

        from hostctl.agent_setup import AgentSetup, setup_agent  # noqa: PLC0415
        from hostctl.peering import AgentHostLayout, ShellHostLayout  # noqa: PLC0415
        from hostctl.remote import with_runner  # noqa: PLC0415

        setup = AgentSetup(
            address=address or ("127.0.0.1" if host == "local" else host),
            agent=AgentHostLayout(agent_config_dir, sessions_root, owner, agent_port),
            shell=ShellHostLayout(registry, status_host_key, status_authorized_keys, status_address,
                                  status_port),
            agent_id=agent_id, rotate_keys=rotate_keys, image_tag=image_tag, codec=codec,
            ca_cert=ca_cert, ca_key=ca_key, logs=logs, log_target=log_target,
            log_server_name=log_server_name, wait_timeout=wait,
        )
        report = Report("init-agent", host, dry_run=dry_run, say=None if as_json else say_err)

        asyncio.run(with_runner(host, ssh_port, user, key, known_hosts,
                                lambda runner: setup_agent(runner, setup, report)))
        report.emit(as_json)

    @app.command("agents")
    def agents_cmd(
        registry: RegistryOpt = DEFAULT_REGISTRY,
        timeout: TimeoutOpt = 10.0,
        direct: DirectOpt = False,
        as_json: Annotated[bool, typer.Option("--json", help=(
            'Machine-readable output: one object per agent, with "via": how it was reached.'))] = False,
    ) -> None:
        """Every registered agent, whether it answers, its engine and host (exit 3 if some do not or an
        engine is down)."""
        from common.registry import load_registry  # noqa: PLC0415
        from hostctl.fleet import survey_now  # noqa: PLC0415

        surveyed = survey_now(load_registry(registry), timeout=timeout,
                              registry=None if direct else registry)
        reports = [dataclasses.asdict(r) for r in surveyed]
        for r in reports:
            r.pop("sessions")
        if as_json:
            print(json.dumps(reports))
        else:
            _print_agents(reports)
        if not all(r.healthy for r in surveyed):
            raise typer.Exit(PARTIAL)

    sessions_app = typer.Typer(
        help="Every session on every agent: R running, - stopped, ? unknown, and what its CLI does "
             "(exit 3 if some agents do not answer or an engine is down). `sessions log ID`: the "
             "event log of one session.",
        no_args_is_help=False, add_completion=False, rich_markup_mode=None)
    app.add_typer(sessions_app, name="sessions")

    @sessions_app.callback(invoke_without_command=True, epilog=EXIT_HELP)
    def sessions_cmd(
        ctx: typer.Context,
        registry: RegistryOpt = DEFAULT_REGISTRY,
        timeout: TimeoutOpt = 10.0,
        direct: DirectOpt = False,
        as_json: Annotated[bool, typer.Option("--json", help=(
            'Machine-readable output: the sessions, the unreachable agents, and "via": how each '
            "agent was reached."))] = False,
    ) -> None:
        """Every session on every agent: R running, - stopped, ? unknown, with what its CLI does
        (exit 3 if some agents do not answer or an engine is down)."""
        if ctx.invoked_subcommand is not None:
            return
        from common.domain import last_known, session_status  # noqa: PLC0415
        from common.registry import load_registry  # noqa: PLC0415
        from hostctl.fleet import survey_now  # noqa: PLC0415

        reports = survey_now(load_registry(registry), timeout=timeout, with_sessions=True,
                             registry=None if direct else registry)
        rows = [s for r in reports for s in r.sessions]
        down = [{"agent_id": r.agent_id, "error": r.error} for r in reports if not r.reachable]
        if as_json:
            via = {r.agent_id: r.via for r in reports}
            print(json.dumps({"sessions": rows, "unreachable": down, "via": via}))
        else:
            for s in rows:
                unknown = s["state"] == "unknown"
                state = session_status(running=bool(s["running"]), attached=bool(s["attached"]),
                                       unknown=unknown)
                known = f"  (state unknown, {last_known(_when(str(s['state_known_at'])))})" if unknown else ""
                print(f"{state} {safe_display(s['id'])} {safe_display(s['agent_id']):<14} "
                      f"{_activity_word(s):<12} {safe_display(s['name'])}{known}")
            for d in down:
                print(f"! agent {safe_display(d['agent_id'])} unreachable: {safe_display(d['error'])}")
        if down or not all(r.healthy for r in reports):
            raise typer.Exit(PARTIAL)

    @sessions_app.command("log")
    def sessions_log_cmd(
        session_id: Annotated[str, typer.Argument(help="The session's id.")],
        follow: Annotated[bool, typer.Option("--follow", "-f",
                                             help="Then print new entries until Ctrl-C.")] = False,
        limit: Annotated[int, typer.Option(help="The last N entries (0: the agent's default, 200).")] = 0,
        agent: Annotated[str | None, typer.Option(
            help="The agent holding it (default: ask them all).")] = None,
        registry: RegistryOpt = DEFAULT_REGISTRY,
        timeout: TimeoutOpt = 10.0,
        direct: Annotated[bool, typer.Option("--direct", help=(
            "Ask the agents over SSH connections of this command's own, not through the local status "
            "service's standing tunnels (as `sessions --direct`)."))] = False,
        as_json: Annotated[bool, typer.Option(
            "--json", help='Machine-readable output: one JSON document (with "via": how the agent was '
                           "reached); with --follow one JSON object per line.")] = False,
    ) -> None:
        """A session's event log: created, started, attached/detached by whom, activity, replies, stopped."""
        import asyncio  # noqa: PLC0415

        from common.domain import SessionLogEntry  # noqa: PLC0415
        from common.registry import load_registry  # noqa: PLC0415
        from hostctl.session_log import entry_dict, find_agent, read_log  # noqa: PLC0415
        from hostctl.shared_tunnel import find_shared_tunnels  # noqa: PLC0415

        entries: list[dict[str, object]] = []

        def emit(entry: SessionLogEntry) -> None:
            if as_json and not follow:
                entries.append(entry_dict(entry))
            elif as_json:
                print(json.dumps(entry_dict(entry)), flush=True)
            else:
                who = f" [{safe_display(entry.actor)}]" if entry.actor else ""
                when = entry.time.astimezone().strftime("%Y-%m-%d %H:%M:%S")
                print(f"{when} {safe_display(entry.kind):<9} {safe_display(entry.detail)}{who}", flush=True)

        async def go() -> tuple[str, str]:
            shared = None if direct else find_shared_tunnels(registry)
            record = await find_agent(load_registry(registry), session_id, agent, timeout, shared)
            via = await read_log(record, session_id, limit=limit, follow=follow, timeout=timeout, emit=emit,
                                 shared=shared)
            return record.agent_id, via

        try:
            agent_id, via = asyncio.run(go())
        except KeyboardInterrupt:
            return
        if as_json and not follow:
            doc = {"session_id": session_id, "agent_id": agent_id, "entries": entries, "via": via}
            print(json.dumps(doc))


def _activity_word(s: dict[str, Any]) -> str:
    """The activity column of ``sessions``: "input (permission)", "working", ..."""
    a = s.get("activity")
    if not isinstance(a, dict):
        return ""
    word = {"needs_input": "input"}.get(str(a.get("state")), str(a.get("state", "")))
    return safe_display(word + (f" ({a['reason']})" if a.get("reason") else ""))
