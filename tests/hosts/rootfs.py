"""The throwaway hosts' image: a Debian root filesystem from ``debootstrap``, cached by content.

The image is built once per recipe: the cache key hashes the suite, the package list,
the mirror and the customisation below, and the result is a local Docker image tagged
``convocate-e2e-host:<key>``. A second run finds the tag and builds nothing. The mirror
comes from this machine's apt sources, so the hosts use the archive this machine uses.

The customisation turns the tree into a generic fresh machine: no SSH host keys in the
image (each host makes its own at first boot), an empty machine id, and no units that
cannot work in a container. It adds no user and no key: the fixture does that per run.

This recipe is self-contained: the production session image (``agent/image_build.py``)
is built differently (``FROM scratch`` from this machine's binaries), so nothing is shared.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BASE_LABEL",
    "IMAGE_REPOSITORY",
    "PACKAGES",
    "SUITE",
    "RootfsRecipe",
    "debian_mirror",
    "ensure_host_image",
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
RECIPE_REVISION = "3"


@dataclass(frozen=True)
class RootfsRecipe:
    """What goes into the image; its :attr:`key` names the cached result."""

    mirror: str
    suite: str = SUITE
    packages: tuple[str, ...] = PACKAGES

    @property
    def key(self) -> str:
        text = "\n".join([RECIPE_REVISION, self.suite, self.mirror, *sorted(self.packages),
                          SSH_HOSTKEYS_DROPIN, *MASKED_UNITS])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def tag(self) -> str:
        return f"{IMAGE_REPOSITORY}:{self.key}"


def _source_entries(apt_dir: Path) -> list[tuple[str, list[str]]]:
    """(URI, suites) of every enabled ``deb`` entry, one-line and deb822 formats."""
    entries: list[tuple[str, list[str]]] = []
    files = [apt_dir / "sources.list"] if (apt_dir / "sources.list").is_file() else []
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in {".list", ".sources"})
    for path in files:
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    name, _, value = line.partition(":")
                    fields[name.strip().lower()] = value.strip()
                if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                    entries += [(uri, fields.get("suites", "").split())
                                for uri in fields.get("uris", "").split()]
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    entries.append((words[1], [words[2]]))
    return entries


def debian_mirror(suite: str = SUITE, apt_dir: Path = APT_SOURCES) -> str:
    """The URI this machine's apt uses for ``suite`` (the main archive, not security).

    Raises:
        RuntimeError: no enabled source lists ``suite``.
    """
    for uri, suites in _source_entries(apt_dir):
        if suite in suites and uri.startswith(("http://", "https://")):
            return uri.rstrip("/")
    raise RuntimeError(f"no apt source for {suite!r} under {apt_dir}; cannot pick a Debian mirror")


def _image_exists(tag: str) -> bool:
    r = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, timeout=30, check=False)
    return r.returncode == 0


def _customise(root: Path) -> None:
    """Make the tree a generic fresh machine that boots under Docker."""
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
    _customise(root)
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
    recipe = recipe or RootfsRecipe(mirror=debian_mirror())
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
