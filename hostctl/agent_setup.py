"""`convocate-host init-agent`: the whole agent host, from an installed base to a reachable agent.

Steps, each checked first and done only when needed (a second run changes nothing and
says so):

1. **role**: ``convocate-agent install`` under ``sudo -n`` unless the agent's config dir
   already holds its ``agent-id``;
2. **keys**: both directions with pinned host keys, the agent's ``agent.toml`` and the
   registry entry (:func:`hostctl.peering.init_agent`; kept when already peered);
3. **image**: the session image pushed (:func:`hostctl.image_transfer.push_image`,
   zstd by default) and the current-image pointer written, unless the pointer already
   names that tag and the target's engine has the same image id;
4. **logs**: the agent's rsyslog client certificate (signed by the log CA, which may be a
   copy on a workstation: ``--ca-cert/--ca-key``) and the forwarder drop-in; rsyslog
   restarted if either changed;
5. **start**: the unit restarted if anything above changed (or the agent does not
   answer), then a bounded wait until this machine's client (:mod:`common.client`,
   through the SSH tunnel) gets an answer to ``Ping``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from common import defaults
from common.errors import UnavailableError
from common.registry import AgentRecord
from common.version import VERSION
from hostctl import log_pki, logforward
from hostctl.fleet import survey
from hostctl.image_transfer import DEFAULT_CODEC, push_image
from hostctl.peering import AgentHostLayout, ShellHostLayout, init_agent
from hostctl.remote import Runner
from hostctl.remote_files import ensure_file, read_file, run_checked
from hostctl.report import Report

__all__ = ["AgentSetup", "image_step", "setup_agent"]

RENEW_BEFORE = dt.timedelta(days=30)   # a client certificate closer to its end is re-issued


@dataclass(frozen=True)
class AgentSetup:
    """What init-agent sets up, and the commands it runs on the agent host.

    The command fields are argv tuples run under ``sudo -n``; tests point them at an
    installer under a temporary root and a script that starts the agent process.
    """

    address: str                                  # where the shell reaches the agent's SSH server
    agent: AgentHostLayout = field(default_factory=AgentHostLayout)
    shell: ShellHostLayout = field(default_factory=ShellHostLayout)
    agent_id: str | None = None
    rotate_keys: bool = False
    image_tag: str = f"convocate:{VERSION}"       # "" skips the image step
    codec: str = DEFAULT_CODEC
    ca_cert: Path = defaults.LOG_SHELL_CA_DIR / logforward.CA_CERT
    ca_key: Path = defaults.LOG_SHELL_CA_DIR / logforward.CA_KEY
    logs: bool = True
    log_target: str = ""                          # the shell's address for rsyslog (default: status address)
    log_server_name: str = ""                     # a name in the shell's server certificate (default: target)
    log_port: int = defaults.LOG_PORT
    log_tls_dir: Path = defaults.LOG_AGENT_TLS_DIR
    log_dropin: Path = defaults.LOG_AGENT_DROPIN
    log_spool_dir: Path = defaults.LOG_SPOOL_DIR
    install_argv: tuple[str, ...] = ("/usr/local/bin/convocate-agent", "install")
    start_argv: tuple[str, ...] = ("systemctl", "restart", "convocate-agent.service")
    logs_reload_argv: tuple[str, ...] | None = ("systemctl", "restart", "rsyslog")
    wait_timeout: float = 60.0


async def _role(runner: Runner, s: AgentSetup, report: Report) -> None:
    id_file = s.agent.config_dir / "agent-id"
    present = (await runner.run(["test", "-s", str(id_file)], root=True)).status == 0
    if present:
        report.add("role", changed=False, detail=f"{id_file} exists")
        return
    if not report.dry_run:
        await run_checked(runner, list(s.install_argv), "convocate-agent install", timeout=900)
    report.add("role", changed=True, detail=" ".join(s.install_argv))


async def image_step(runner: Runner, s: AgentSetup, report: Report) -> None:
    """Push ``s.image_tag`` and point the agent at it, unless it is current there already."""
    if not s.image_tag:
        report.add("image", changed=False, detail="skipped (--image-tag '')")
        return
    pointer = s.agent.config_dir / "current-image"
    local = await asyncio.create_subprocess_exec(
        "docker", "image", "inspect", "--format", "{{.Id}}", s.image_tag,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    local_id = (await local.communicate())[0].decode().strip()
    current = await read_file(runner, pointer)
    if local_id and current is not None and current[2].decode().strip() == s.image_tag:
        inspect = ["docker", "image", "inspect", "--format", "{{.Id}}", s.image_tag]
        there = await runner.run(inspect, root=True)
        if there.status == 0 and there.text() == local_id:
            report.add("image", changed=False, detail=f"{s.image_tag} is current ({local_id[:19]})")
            return
    if not report.dry_run:
        result = await push_image(s.image_tag, runner, codec=s.codec, set_current=str(pointer))
        report.data["image"] = {"tag": result.tag, "image_id": result.image_id, "codec": result.codec,
                                "compressed_bytes": result.compressed_bytes,
                                "seconds": round(result.seconds, 2)}
    report.add("image", changed=True, detail=f"push {s.image_tag} ({s.codec}), point {pointer} at it")


def _cert_ok(cert_pem: bytes, ca_pem: bytes, agent_id: str) -> bool:
    """True if ``cert_pem`` is ``agent_id``'s certificate from this CA, not close to its end."""
    try:
        cert, ca = x509.load_pem_x509_certificate(cert_pem), x509.load_pem_x509_certificate(ca_pem)
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    return bool(names) and names[0].value == agent_id and left > RENEW_BEFORE


async def _logs(runner: Runner, s: AgentSetup, agent_id: str, report: Report) -> None:
    if not s.logs:
        report.add("logs", changed=False, detail="skipped (--no-logs)")
        return
    ca_pem, ca_key = logforward.read_ca(s.ca_cert, s.ca_key)
    tls = s.log_tls_dir
    cert = await read_file(runner, tls / logforward.CLIENT_CERT)
    ca_there = await read_file(runner, tls / logforward.CA_CERT)
    key_there = (await runner.run(["test", "-s", str(tls / logforward.CLIENT_KEY)], root=True)).status == 0
    fresh = (cert is not None and ca_there is not None and ca_there[2] == ca_pem and key_there
             and _cert_ok(cert[2], ca_pem, agent_id))
    if not fresh and not report.dry_run:
        issued = log_pki.issue_client(ca_pem, ca_key, agent_id)
        await ensure_file(runner, tls / logforward.CLIENT_KEY, issued.key_pem, "600")
        await ensure_file(runner, tls / logforward.CLIENT_CERT, issued.cert_pem, "644")
        await ensure_file(runner, tls / logforward.CA_CERT, ca_pem, "644")
    target = s.log_target or s.shell.status_address
    forwarder = logforward.Forwarder(agent_id, target, s.log_server_name or target, s.log_port, tls,
                                     s.log_spool_dir)
    dropin = await ensure_file(runner, s.log_dropin, logforward.render_forwarder(forwarder), "644",
                               dry_run=report.dry_run)
    if (dropin or not fresh) and not report.dry_run:
        await run_checked(runner, ["mkdir", "-p", str(s.log_spool_dir)], "creating the rsyslog spool")
        if s.logs_reload_argv is not None:
            await run_checked(runner, list(s.logs_reload_argv), "restarting rsyslog")
    detail = "certificate " + ("kept" if fresh else f"issued for {agent_id}") + \
        f", {s.log_dropin} " + ("written" if dropin else "kept") + f", forwarding to {target}:{s.log_port}"
    report.add("logs", changed=dropin or not fresh, detail=detail)


async def _ping(record: AgentRecord, timeout: float) -> str:
    """'' once the agent answers Ping within ``timeout`` seconds; else the last error."""
    deadline = time.monotonic() + timeout
    error = "not asked"
    for _ in range(10_000):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        (answer,) = await survey([record], timeout=min(5.0, max(left, 0.5)))
        if answer.reachable:
            return ""
        error = answer.error
        await asyncio.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
    return error or "no answer"


async def _start(runner: Runner, s: AgentSetup, record: AgentRecord | None, restart: bool,
                 report: Report) -> None:
    answers = record is not None and not restart and not await _ping(record, min(5.0, s.wait_timeout))
    if record is None or (report.dry_run and not answers):
        report.add("start", changed=True, detail=f"{' '.join(s.start_argv)}; wait for Ping")
        return
    if answers:
        report.add("start", changed=False,
                   detail=f"{record.agent_id} answers at {record.address}:{record.port}")
        return
    await run_checked(runner, list(s.start_argv), "starting convocate-agent")
    error = await _ping(record, s.wait_timeout)
    if error:
        raise UnavailableError(
            f"agent {record.agent_id} did not answer within {s.wait_timeout:g} s after its start ({error}): "
            f"see `journalctl -u convocate-agent` on {runner.name}, then re-run init-agent"
        )
    report.add("start", changed=True, detail=f"{record.agent_id} answers at {record.address}:{record.port}")


async def setup_agent(runner: Runner, setup: AgentSetup, report: Report) -> AgentRecord | None:
    """Run (or plan, when ``report.dry_run``) every init-agent step on the host behind ``runner``.

    Returns:
        The agent's registry record (None on a dry run of a host never peered).

    Raises:
        ConvocateError: the first step that failed (its message names the host and what to do).
    """
    s = setup
    await _role(runner, s, report)
    if report.dry_run and report.steps[-1].changed:
        report.add("keys", changed=True, detail="mint and install both keys, register the agent")
        record = None
        agent_id = s.agent_id or "(the agent's id)"
    else:
        plan, record = await init_agent(runner, s.address, agent_id=s.agent_id, agent=s.agent, shell=s.shell,
                                        dry_run=report.dry_run, rotate=s.rotate_keys)
        agent_id = plan.agent_id
        report.add("keys", changed=plan.changed, detail="; ".join(plan.steps))
    report.data["agent_id"] = agent_id
    await image_step(runner, s, report)
    if s.logs and report.dry_run and record is None:
        report.add("logs", changed=True,
                   detail=f"issue {agent_id}'s client certificate, write {s.log_dropin}")
    else:
        await _logs(runner, s, agent_id, report)
    await _start(runner, s, record, restart=report.changed, report=report)
    return record
