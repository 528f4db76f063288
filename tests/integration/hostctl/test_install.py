"""`install --host` over a real sshd: packages, user and firewall as --dry-run plans; the release for real.

Steps that would outlive the test on this machine (packages, users, firewall rules)
are checked through their plans here (they read the host: dpkg, id, iptables -C) and
run for real on the throwaway hosts (tests/hosts). The release (a wheelhouse of this
checkout installed into a venv under a temporary prefix) runs for real, twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostctl import bundle as bundles
from hostctl.host_install import ensure_release
from hostctl.remote import SSHRunner, SSHTarget
from hostctl.report import Report
from tests.integration.hostctl.conftest import BUNDLE_CACHE
from tests.support.sshd import Sshd

pytestmark = [pytest.mark.sshd, pytest.mark.timeout(900)]  # the first run builds the bundle

@pytest.fixture
def target_root() -> Iterator[Path]:
    """The host's /opt/convocate and /usr/local/bin, under a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="cvinst-") as d:
        yield Path(d)


def _runner(sshd: Sshd) -> SSHRunner:
    return SSHRunner(SSHTarget(sshd.host, sshd.port, sshd.user, sshd.client_key, sshd.known_hosts))


def _cli(sshd: Sshd, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "hostctl", *extra, "--host", sshd.host, "--ssh-port", str(sshd.port),
            "--user", sshd.user, "--key", str(sshd.client_key), "--known-hosts", str(sshd.known_hosts)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)


def test_bundle_is_cached_by_content(release_bundle: bundles.Bundle) -> None:
    """A second build of the same sources is the cached wheelhouse, same digest."""
    source = bundles.source_root()
    assert source is not None
    again = bundles.build_bundle(source, BUNDLE_CACHE)
    assert again == release_bundle
    names = bundles.wheel_names(release_bundle.directory)
    assert any(n.startswith("convocate-") for n in names)
    assert any(n.startswith("grpcio-") for n in names)   # dependencies travel with it


def test_install_plan_changes_nothing_and_parses(sshd: Sshd, release_bundle: bundles.Bundle,
                                                 target_root: Path) -> None:
    """--dry-run --json: every step planned from what the host has; no file, user or rule made."""
    done = _cli(sshd, "install", "--bundle", str(release_bundle.directory),
                "--prefix", str(target_root / "opt"), "--bin-dir", str(target_root / "bin"),
                "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    steps = {s["step"]: s for s in out["steps"]}
    # firewall-boot (the boot unit) follows the rules unless the host has neither iptables nor nft.
    skipped = steps["firewall"]["detail"].startswith("skipped")
    assert list(steps) == ["packages", "user", "firewall", *([] if skipped else ["firewall-boot"]), "release"]
    if not skipped:
        boot = steps["firewall-boot"]["detail"]
        assert "convocate-firewall.service" in boot or "systemd is not running" in boot, boot
    assert out["dry_run"] is True
    assert steps["release"]["changed"] is True
    assert "useradd --uid 1337" in steps["user"]["detail"] or "exists" in steps["user"]["detail"]
    assert list(target_root.iterdir()) == []
    assert subprocess.run(["id", "claude"], capture_output=True, check=False).returncode != 0 or \
        "exists" in steps["user"]["detail"]


async def test_release_installs_offline_then_a_rerun_changes_nothing(
    sshd: Sshd, release_bundle: bundles.Bundle, target_root: Path,
) -> None:
    """The bundle lands as a venv under the prefix, the commands work; the second run says unchanged."""
    prefix, bin_dir = target_root / "opt", target_root / "bin"
    runner = _runner(sshd)
    try:
        first = Report("install", sshd.host)
        await ensure_release(runner, release_bundle, first, prefix=prefix, bin_dir=bin_dir)
        second = Report("install", sshd.host)
        await ensure_release(runner, release_bundle, second, prefix=prefix, bin_dir=bin_dir)
    finally:
        await runner.close()
    assert first.changed
    assert not second.changed, second.as_dict()
    for command in bundles.COMMANDS:   # every command is linked, the first one too
        version = subprocess.run([str(bin_dir / command), "version"], capture_output=True, text=True,
                                 timeout=60, check=False)
        assert version.returncode == 0, f"{command}: {version.stderr}"
        assert release_bundle.version in version.stdout
    assert (prefix / "current" / "BUNDLE").read_text().strip() == release_bundle.digest
    assert not (prefix / "current" / "wheels").exists()   # the wheels are not kept
