"""`convocate-host init-shell --host`: the shell role on a host, and the log listener beside it.

Steps, each checked first (a second run changes nothing and says so):

1. **role**: ``convocate install`` there under ``sudo -n`` (the console as ``claude``'s
   login shell through the sshd drop-in's ForceCommand, ``convocate-status.service``,
   the dnsmasq hosts file and drop-in, the session image) unless its unit is installed;
2. **allow-list**: ``/etc/convocate/status_authorized_keys`` (``root:claude 0640``,
   outside ``~/.ssh``; init-agent adds one ``restrict,command="/bin/false"`` line per agent);
3. **log CA**: kept if the host has one, else made here and written there (key 0600);
4. **log server**: the listener's certificate (re-issued when missing, from another CA,
   for other names or within 30 days of its end), the listener drop-in, logrotate and
   the log directory; rsyslog restarted if any of them changed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from common import defaults
from hostctl import log_pki, logforward
from hostctl.remote import Runner
from hostctl.remote_files import ensure_file, read_file, run_checked
from hostctl.report import Report

__all__ = ["ShellSetup", "setup_shell"]

RENEW_BEFORE = dt.timedelta(days=30)
ALLOW_LIST_HEADER = (
    "# Agents allowed on the status service (SSH :223); written by convocate-host init-agent.\n"
    '# OpenSSH never reads this file; each line starts with restrict,command="/bin/false".\n'
)


@dataclass(frozen=True)
class ShellSetup:
    """What init-shell sets up on the shell host, and the commands it runs there."""

    log_names: tuple[str, ...]                    # names (or IPs) agents use for this host's listener
    owner: str = "claude"
    status_unit: Path = Path("/etc/systemd/system/convocate-status.service")
    status_authorized_keys: Path = defaults.STATUS_AUTHORIZED_KEYS
    install_argv: tuple[str, ...] = ("/usr/local/bin/convocate", "install")
    logs: bool = True
    listener: logforward.Listener = field(default_factory=logforward.Listener)
    listener_dropin: Path = defaults.LOG_SHELL_DROPIN
    logrotate: Path = defaults.LOG_ROTATE_FILE
    logs_reload_argv: tuple[str, ...] | None = ("systemctl", "restart", "rsyslog")


async def _role(runner: Runner, s: ShellSetup, report: Report) -> None:
    if (await runner.run(["test", "-f", str(s.status_unit)], root=True)).status == 0:
        report.add("role", changed=False, detail=f"{s.status_unit} exists")
        return
    if not report.dry_run:
        await run_checked(runner, list(s.install_argv), "convocate install", timeout=3600)
    report.add("role", changed=True, detail=" ".join(s.install_argv))


async def _allow_list(runner: Runner, s: ShellSetup, report: Report) -> None:
    path = s.status_authorized_keys
    if (await runner.run(["test", "-f", str(path)], root=True)).status == 0:
        report.add("allow-list", changed=False, detail=f"{path} exists")
        return
    if not report.dry_run:
        await ensure_file(runner, path, ALLOW_LIST_HEADER, "640")
        if s.owner:
            await run_checked(runner, ["sh", "-c", 'chown "root:$(id -gn "$1")" "$0"', str(path), s.owner],
                              f"handing {path} to {s.owner}'s group")
    report.add("allow-list", changed=True, detail=f"{path} (root:{s.owner or 'root'} 0640)")


def _server_cert_ok(cert_pem: bytes, ca_pem: bytes, names: tuple[str, ...]) -> bool:
    try:
        cert, ca = x509.load_pem_x509_certificate(cert_pem), x509.load_pem_x509_certificate(ca_pem)
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    have = {str(n) for n in sans.get_values_for_type(x509.DNSName)}
    have |= {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    want = set()
    for n in names:
        try:
            want.add(str(ipaddress.ip_address(n)))
        except ValueError:
            want.add(n)
    return want <= have and cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_BEFORE


async def _logs(runner: Runner, s: ShellSetup, report: Report) -> None:
    if not s.logs:
        report.add("logs", changed=False, detail="skipped (--no-logs)")
        return
    tls = s.listener.tls_dir
    ca_cert = await read_file(runner, tls / logforward.CA_CERT)
    ca_key = await read_file(runner, tls / logforward.CA_KEY)
    changed: list[str] = []
    if ca_cert is not None and ca_key is not None:
        ca_pem, key_pem = ca_cert[2], ca_key[2]
        log_pki.load_ca(ca_pem, key_pem)
    else:
        made = log_pki.make_ca()
        ca_pem, key_pem = made.cert_pem, made.key_pem
        changed.append(f"log CA made in {tls}")
        if not report.dry_run:
            await ensure_file(runner, tls / logforward.CA_KEY, key_pem, "600")
            await ensure_file(runner, tls / logforward.CA_CERT, ca_pem, "644")
    server = await read_file(runner, tls / logforward.SERVER_CERT)
    if server is None or not _server_cert_ok(server[2], ca_pem, s.log_names):
        changed.append(f"server certificate for {', '.join(s.log_names)}")
        if not report.dry_run:
            issued = log_pki.issue_server(ca_pem, key_pem, list(s.log_names))
            await ensure_file(runner, tls / logforward.SERVER_KEY, issued.key_pem, "600")
            await ensure_file(runner, tls / logforward.SERVER_CERT, issued.cert_pem, "644")
    dry = report.dry_run
    listener = logforward.render_listener(s.listener)
    if await ensure_file(runner, s.listener_dropin, listener, "644", dry_run=dry):
        changed.append(f"{s.listener_dropin}")
    if await ensure_file(runner, s.logrotate, logforward.render_logrotate(s.listener), "644", dry_run=dry):
        changed.append(f"{s.logrotate}")
    if changed and not dry:
        make_dir = ["sh", "-c", 'mkdir -p "$0" && chmod 755 "$0"', str(s.listener.log_dir)]
        await run_checked(runner, make_dir,
                          "creating the agents' log directory")
        if s.logs_reload_argv is not None:
            await run_checked(runner, list(s.logs_reload_argv), "restarting rsyslog")
    report.add("logs", changed=bool(changed),
               detail="; ".join(changed) or f"listener on :{s.listener.port} in place")


async def setup_shell(runner: Runner, setup: ShellSetup, report: Report) -> None:
    """Run (or plan) every init-shell step on the host behind ``runner``.

    Raises:
        ConvocateError: the first step that failed (its message names the host and what to do).
    """
    await _role(runner, setup, report)
    await _allow_list(runner, setup, report)
    await _logs(runner, setup, report)
