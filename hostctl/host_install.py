"""`convocate-host install --host`: a fresh Debian/Ubuntu host made ready for either role.

Each step checks the host first and changes only what is missing (a second run says
"nothing changed"); with ``report.dry_run`` the checks still run (they only read) and
the steps say what they would do. Every step is a function of its own, so the
throwaway-hosts tests (``tests/hosts``) run them one by one on systemd hosts:

* :func:`ensure_packages` — ``apt-get install`` of what is missing from :data:`PACKAGES`
  (Docker Engine, tmux, zstd, rsyslog + gnutls, python3-venv, ...), then Docker enabled;
* :func:`ensure_user` — the service user (uid 1337, no login shell until a role gives it one);
* :func:`~hostctl.firewall.ensure_firewall` — accept rules for 22, 222 and 223 (iptables,
  or an nftables table of our own; skipped with a note when the host has neither), applied
  again at every boot by ``convocate-firewall.service`` (the same script);
* :func:`ensure_release` — the bundle installed as a release under ``/opt/convocate``
  and switched to (see :mod:`hostctl.bundle`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from common import defaults
from common.errors import FailedPreconditionError
from hostctl import bundle as bundles
from hostctl.firewall import ensure_firewall
from hostctl.image_transfer import RECEIVER_PACKAGES
from hostctl.logforward import HOST_PACKAGES as LOG_PACKAGES
from hostctl.remote import Runner
from hostctl.remote_files import run_checked
from hostctl.report import Report

__all__ = [
    "PACKAGES",
    "PORTS",
    "HostInstall",
    "ensure_firewall",
    "ensure_packages",
    "ensure_release",
    "ensure_user",
    "install_host",
]

PACKAGES = tuple(sorted({
    "docker.io", "tmux", "python3", "python3-venv", "ca-certificates", "openssh-server", "sudo", "dnsmasq",
    "iptables", *RECEIVER_PACKAGES, *LOG_PACKAGES,
    "busybox-static",  # the offline session image (init-shell without a registry) is built from it
}))
PORTS = (22, defaults.AGENT_PORT, defaults.STATUS_PORT)


@dataclass(frozen=True)
class HostInstall:
    """What ``install`` puts on a host."""

    bundle: bundles.Bundle | None                 # None: leave the software alone
    packages: tuple[str, ...] = PACKAGES
    user: str = "claude"
    uid: int = 1337
    ports: tuple[int, ...] = PORTS
    firewall: bool = True
    prefix: Path = bundles.DEFAULT_PREFIX
    bin_dir: Path = bundles.DEFAULT_BIN_DIR
    python: str = "python3"
    extra: dict[str, str] = field(default_factory=dict)


async def ensure_packages(runner: Runner, packages: tuple[str, ...], report: Report) -> None:
    """Install the Debian packages that are missing; enable Docker if it was among them."""
    query = ("for p in \"$@\"; do s=$(dpkg-query -W -f '${Status}' \"$p\" 2>/dev/null || true); "
             "case \"$s\" in *' installed') ;; *) echo \"$p\";; esac; done")
    has_dpkg = (await runner.run(["sh", "-c", "command -v dpkg-query"])).status == 0
    if not has_dpkg:
        report.add("packages", changed=False, detail="skipped: no dpkg-query (not Debian/Ubuntu); "
                   f"install {' '.join(packages)} by hand")
        return
    missing = (await run_checked(runner, ["sh", "-c", query, "query", *packages], "dpkg-query",
                                 root=False)).split()
    if not missing:
        report.add("packages", changed=False, detail=f"{len(packages)} packages present")
        return
    if not report.dry_run:
        env = ["env", "DEBIAN_FRONTEND=noninteractive"]
        await run_checked(runner, [*env, "apt-get", "update", "-q"], "apt-get update", timeout=900)
        await run_checked(runner, [*env, "apt-get", "install", "-y", "-q", "--no-install-recommends",
                                   "-o", "Dpkg::Options::=--force-confold", *missing],
                          f"apt-get install {' '.join(missing)}", timeout=1800)
        if "docker.io" in missing:
            enable = "[ -d /run/systemd/system ] && systemctl enable --now docker || true"
            await runner.run(["sh", "-c", enable], root=True)
    report.add("packages", changed=True, detail="apt-get install " + " ".join(missing))


async def ensure_user(runner: Runner, user: str, uid: int, report: Report) -> None:
    """The service user with ``uid`` (created without a login shell; the role installers set it).

    Raises:
        ConvocateError: the user exists with another uid (files would change owner: fix by hand).
    """
    found = await runner.run(["id", "-u", user])
    if found.status == 0:
        if found.text() != str(uid):
            raise FailedPreconditionError(
                f"user {user} exists on {runner.name} with uid {found.text()}, not {uid}: "
                f"change it by hand (usermod -u {uid} {user}) and re-run")
        report.add("user", changed=False, detail=f"{user} (uid {uid}) exists")
        return
    argv = ["useradd", "--uid", str(uid), "--create-home", "--shell", "/usr/sbin/nologin", user]
    if not report.dry_run:
        await run_checked(runner, argv, f"creating user {user}")
    report.add("user", changed=True, detail=shlex.join(argv))


async def ensure_release(runner: Runner, bundle: bundles.Bundle, report: Report, *,
                         prefix: Path = bundles.DEFAULT_PREFIX, bin_dir: Path = bundles.DEFAULT_BIN_DIR,
                         python: str = "python3") -> None:
    """Install ``bundle`` beside any other release and make it current (nothing if it already is)."""
    current = await bundles.release_on_host(runner, prefix)
    if current == bundle.digest:
        linked = False if report.dry_run else await bundles.switch_release(
            runner, bundle.release, prefix=prefix, bin_dir=bin_dir)
        report.add("release", changed=linked,
                   detail=f"convocate {bundle.version} ({bundle.release}) is current")
        return
    installed = await bundles.install_release(runner, bundle, report, prefix=prefix, python=python)
    if not report.dry_run:
        await bundles.switch_release(runner, bundle.release, prefix=prefix, bin_dir=bin_dir)
    how = "install and switch to" if installed else "switch to"
    report.add("release", changed=True, detail=f"{how} convocate {bundle.version} ({bundle.release}) "
               f"in {prefix}, commands in {bin_dir}")
    report.data["release"] = {"version": bundle.version, "digest": bundle.digest}


async def install_host(runner: Runner, spec: HostInstall, report: Report) -> None:
    """Every step of ``install`` in order: packages, user, firewall, release."""
    await ensure_packages(runner, spec.packages, report)
    await ensure_user(runner, spec.user, spec.uid, report)
    if spec.firewall:
        await ensure_firewall(runner, spec.ports, report)
    if spec.bundle is not None:
        await ensure_release(runner, spec.bundle, report, prefix=spec.prefix, bin_dir=spec.bin_dir,
                             python=spec.python)
