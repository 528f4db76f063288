"""The OpenSSH side of each host: a ``Match User claude`` drop-in for the system sshd.

OpenSSH on port 22 must give the service user nothing the convocate SSH servers refuse:
no forwarding of any kind (the Docker socket above all), no tunnel, and one forced
command: the console on the shell host, ``/bin/false`` on agent hosts. Both installers
write the drop-in with :func:`install_dropin`, which validates it with ``sshd -t``
(against the system configuration, or under ``--root`` against a throwaway config
that includes only the drop-in) and checks with ``sshd -T`` that the block is in force.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from common.errors import FailedPreconditionError
from common.paths import atomic_write

__all__ = ["AGENT_ROLE", "KEY_OPTIONS", "SHELL_ROLE", "DropIn", "install_dropin", "reload_sshd",
           "render_dropin"]

# OpenSSH options on every allow-list line convocate writes: no pty, no forwarding, no
# agent, no X11, no user rc, and a command that does nothing. The convocate SSH servers
# parse and ignore them (they run no command at all).
KEY_OPTIONS = 'restrict,command="/bin/false"'
# Debian's sshd checks, even for `sshd -t`, that its privilege separation directory exists;
# ssh.service makes it at each start (RuntimeDirectory=sshd), so a host whose sshd has not
# run since boot (an install right after the package, a container) has none.
PRIVSEP_DIR = Path("/run/sshd")
SHELL_ROLE = "shell host"
AGENT_ROLE = "agent host"


@dataclass(frozen=True)
class DropIn:
    """What the block says: whose logins, which forced command, whether a terminal is allowed."""

    user: str
    force_command: str
    permit_tty: bool
    role: str  # SHELL_ROLE or AGENT_ROLE: a shell host's block wins on a combined host


def render_dropin(d: DropIn) -> str:
    """The drop-in text."""
    return (
        f"# Managed by convocate ({d.role}); rewritten by each install.\n"
        f"# {d.user} gets no forwarding of any kind and runs only {d.force_command}.\n"
        f"Match User {d.user}\n"
        "    DisableForwarding yes\n"
        "    AllowTcpForwarding no\n"
        "    AllowStreamLocalForwarding no\n"
        "    X11Forwarding no\n"
        "    AllowAgentForwarding no\n"
        "    PermitTunnel no\n"
        "    PermitUserRC no\n"
        f"    PermitTTY {'yes' if d.permit_tty else 'no'}\n"
        f"    ForceCommand {d.force_command}\n"
    )


def _sshd() -> str | None:
    return shutil.which("sshd") or next(
        (p for p in ("/usr/sbin/sshd", "/sbin/sshd") if Path(p).is_file()), None)


def _check(argv: list[str], what: str) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    if r.returncode != 0:
        raise FailedPreconditionError(f"{what} failed: {(r.stderr or r.stdout).strip()[:400]}")
    return r.stdout


def _effective(sshd: str, config: Path | None, d: DropIn) -> None:
    """Raise unless ``sshd -T`` shows the block in force for ``d.user``."""
    argv = [sshd, "-T", "-C", f"user={d.user},host=localhost,addr=127.0.0.1"]
    if config is not None:
        argv[1:1] = ["-f", str(config)]
    settings = _check(argv, "sshd -T").lower().splitlines()
    wanted = ("disableforwarding yes", f"forcecommand {d.force_command.lower()}")
    missing = [w for w in wanted if w not in settings]
    if missing:
        raise FailedPreconditionError(
            f"sshd does not apply the convocate drop-in ({', '.join(missing)} missing): the main "
            "sshd_config must `Include /etc/ssh/sshd_config.d/*.conf` before any Match block")


def validate(path: Path, d: DropIn, *, system: bool) -> str:
    """Validate the installed drop-in; return how.

    Args:
        path: the drop-in as written.
        d: what it must say.
        system: True when ``path`` is the real ``/etc/ssh/sshd_config.d`` file: the whole
            system configuration is checked. Otherwise a throwaway config that includes
            only ``path`` is checked.
    """
    sshd = _sshd()
    if sshd is None:
        return "written (sshd is not installed: not validated)"
    with contextlib.suppress(OSError):   # not root: sshd -t says what is missing
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    if system:
        _check([sshd, "-t"], "sshd -t")
        _effective(sshd, None, d)
        return "written, validated with sshd -t"
    with tempfile.TemporaryDirectory(prefix="convocate-sshd-check-") as tmp:
        key = asyncssh.generate_private_key("ssh-ed25519")
        key_path = Path(tmp) / "host_key"
        atomic_write(key_path, key.export_private_key("openssh"), mode=0o600)
        config = Path(tmp) / "sshd_config"
        atomic_write(config, f"Include {path}\nHostKey {key_path}\n", mode=0o600)
        _check([sshd, "-t", "-f", str(config)], f"sshd -t -f (with {path})")
        _effective(sshd, config, d)
    return "written, validated with sshd -t -f (a config that includes it)"


def install_dropin(path: Path, d: DropIn, *, system: bool) -> str:
    """Write the drop-in at ``path`` (0644, atomically), validate it; return what happened.

    A shell host's block is kept when an agent install runs on the same host (the console
    needs its forced command). When validation fails, the previous file is put back.

    Raises:
        FailedPreconditionError: sshd rejects the configuration or does not apply the block.
    """
    old = path.read_text(encoding="utf-8") if path.is_file() and not path.is_symlink() else None
    if d.role == AGENT_ROLE and old is not None and f"({SHELL_ROLE})" in old:
        return "kept (this host's shell drop-in already locks the user down)"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, render_dropin(d), mode=0o644)
    try:
        return validate(path, d, system=system)
    except FailedPreconditionError:
        if old is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write(path, old, mode=0o644)
        raise


def reload_sshd() -> str:
    """Reload the running system sshd so the drop-in applies to new logins."""
    if shutil.which("systemctl") is None or not Path("/run/systemd/system").is_dir():
        return "sshd not reloaded (systemd is not running): reload it yourself"
    for unit in ("ssh.service", "sshd.service"):
        if subprocess.run(["systemctl", "is-active", "--quiet", unit], check=False).returncode == 0:
            _check(["systemctl", "reload", unit], f"systemctl reload {unit}")
            return f"{unit} reloaded"
    return "sshd is not running"
