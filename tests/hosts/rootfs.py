"""The throwaway hosts' image: a Debian root filesystem from ``debootstrap``, cached by content.

The image is built once per recipe: the cache key hashes the suite, the package list,
the mirror, the apt sources and the customisation below, and the result is a local Docker image tagged
``convocate-e2e-host:<key>``. A second run finds the tag and builds nothing. The mirror
comes from this machine's apt sources, so the hosts use the archive this machine uses.

The customisation turns the tree into a generic fresh machine: no SSH host keys in the
image (each host makes its own at first boot), an empty machine id, and no units that
cannot work in a container. It adds no user and no key: the fixture does that per run.

The archive and the apt sources are read as the production image's base reads them
(:mod:`agent.apt_sources`); the rest stays here because a host needs a booting machine
(systemd, sshd, first-boot host keys), not a session image.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agent.apt_sources import archive_mirror, read_sources, release_sources, sources_list

__all__ = [
    "BASE_LABEL",
    "IMAGE_REPOSITORY",
    "PACKAGES",
    "SUITE",
    "RootfsRecipe",
    "ensure_host_image",
    "recipe_from_apt",
    "stale_base_images",
]

SUITE = "bookworm"
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "sudo", "iproute2",
    "python3", "python3-venv", "ca-certificates",
)
IMAGE_REPOSITORY = "convocate-e2e-host"
BASE_LABEL = "convocate-e2e-hosts.base"
APT_SOURCES = Path("/etc/apt")
DEBOOTSTRAP_TIMEOUT = 900.0
IMPORT_TIMEOUT = 300.0

# Each host makes its own SSH host keys on first boot (the image holds none).
SSH_HOSTKEYS_DROPIN = """[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""
# Units that need hardware or a console a container does not have.
MASKED_UNITS = (
    "getty@tty1.service", "console-getty.service", "systemd-udevd.service",
    "systemd-udev-trigger.service", "systemd-remount-fs.service", "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount", "sys-kernel-config.mount", "dev-hugepages.mount",
    "systemd-firstboot.service", "systemd-modules-load.service",
)
# Bumped with any change to the customisation, so the cache key follows it.
RECIPE_REVISION = "4"


@dataclass(frozen=True)
class RootfsRecipe:
    """What goes into the image; its :attr:`key` names the cached result."""

    mirror: str
    suite: str = SUITE
    sources: str = ""   # the hosts' /etc/apt/sources.list ("" keeps debootstrap's)
    packages: tuple[str, ...] = PACKAGES

    @property
    def key(self) -> str:
        text = "\n".join([RECIPE_REVISION, self.suite, self.mirror, self.sources, *sorted(self.packages),
                          SSH_HOSTKEYS_DROPIN, *MASKED_UNITS])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def tag(self) -> str:
        return f"{IMAGE_REPOSITORY}:{self.key}"


def recipe_from_apt(apt_dir: Path = APT_SOURCES, suite: str = SUITE) -> RootfsRecipe:
    """The recipe with this machine's archive for ``suite`` and its apt sources of that release.

    The sources are read by :mod:`agent.apt_sources`, the same reading the production
    image's base uses (``agent/production_image.py``), so both bootstrap from one archive.

    Raises:
        FailedPreconditionError: no apt source on this machine carries ``suite``.
    """
    sources = read_sources(apt_dir)
    mirror = archive_mirror(sources, suite)
    text = sources_list(release_sources(sources, suite)) or f"deb {mirror} {suite} main\n"
    return RootfsRecipe(mirror=mirror, suite=suite, sources=text)


def _image_exists(tag: str) -> bool:
    r = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, timeout=30, check=False)
    return r.returncode == 0


def _customise(root: Path, recipe: RootfsRecipe) -> None:
    """Make the tree a generic fresh machine that boots under Docker."""
    if recipe.sources:
        (root / "etc/apt/sources.list").write_text(recipe.sources)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    dropin = root / "etc/systemd/system/ssh.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "host-keys.conf").write_text(SSH_HOSTKEYS_DROPIN)
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()


def _build(recipe: RootfsRecipe, workdir: Path) -> None:
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    root = workdir / "root"
    done = subprocess.run(
        [debootstrap, "--variant=minbase", f"--include={','.join(recipe.packages)}",
         recipe.suite, str(root), recipe.mirror],
        capture_output=True, text=True, timeout=DEBOOTSTRAP_TIMEOUT, check=False,
    )
    if done.returncode != 0:
        log = root / "debootstrap/debootstrap.log"
        detail = log.read_text(errors="replace")[-3000:] if log.is_file() else done.stderr[-3000:]
        raise RuntimeError(f"debootstrap failed ({done.returncode}): {detail}")
    _customise(root, recipe)
    tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."],
                           stdout=subprocess.PIPE)
    try:
        imported = subprocess.run(
            ["docker", "import", "--change", f"LABEL {BASE_LABEL}={recipe.key}",
             "--change", 'CMD ["/sbin/init"]', "-", recipe.tag],
            stdin=tar.stdout, capture_output=True, text=True, timeout=IMPORT_TIMEOUT, check=False,
        )
    finally:
        if tar.stdout is not None:
            tar.stdout.close()
        tar.wait(IMPORT_TIMEOUT)
    if imported.returncode != 0 or tar.returncode != 0:
        raise RuntimeError(f"docker import failed: {imported.stderr.strip()[-2000:]}")


def ensure_host_image(recipe: RootfsRecipe | None = None) -> tuple[str, bool]:
    """Return (tag, built): build and import the image unless the cache has it."""
    recipe = recipe or recipe_from_apt()
    if _image_exists(recipe.tag):
        return recipe.tag, False
    with tempfile.TemporaryDirectory(prefix="convocate-rootfs-", dir="/var/tmp") as d:
        _build(recipe, Path(d))
    return recipe.tag, True


def stale_base_images(current: str) -> list[str]:
    """Tags of earlier recipes' images (same label, another key), for the session sweep."""
    r = subprocess.run(
        ["docker", "image", "ls", "--filter", f"label={BASE_LABEL}", "--format",
         "{{.Repository}}:{{.Tag}}"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    return [tag for tag in r.stdout.split() if tag != current and not tag.endswith(":<none>")]
