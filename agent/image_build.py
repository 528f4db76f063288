"""The offline session image: ``FROM scratch`` from this host's own binaries, no registry.

It holds the host's static busybox (every applet linked), tmux with the shared libraries
``ldd`` lists, a few terminfo entries, the ``C.utf8`` locale, the entrypoint that runs
the session command inside tmux, and a small script standing in for the Claude CLI.
About 7 MB, built in about a second. The tests and the one-command demo use it; the
production image is ``deploy/docker/Dockerfile``.

In this image ``claude`` is uid/gid 1337; the entrypoint re-points it at ``CLAUDE_UID``/
``CLAUDE_GID`` when those differ, so the agent's exec user (``claude``) is the session user.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from agent.runtime import ContainerRuntime
from agent.stand_in_cli import HOOK_RUNNER, STAND_IN_CLI, STAND_IN_COMMANDS
from common.errors import FailedPreconditionError
from common.logging import get_logger

__all__ = [
    "ENTRYPOINT",
    "STAND_IN_CLI",
    "ImageSources",
    "build_context",
    "build_offline_image",
    "offline_image_tag",
]

log = get_logger(__name__)

TERMINFO_NAMES = (
    "xterm", "xterm-256color", "screen", "screen-256color", "tmux", "tmux-256color",
    "vt100", "vt220", "linux", "dumb",
)
TERMINFO_DIRS = ("/etc/terminfo", "/lib/terminfo", "/usr/share/terminfo")

# The entrypoint: become the session user, then run the session command in tmux session
# "claude" and live as long as it. It starts as root with only CHOWN/SETUID/SETGID/AUDIT_WRITE
# (agent/container_spec.py) and uses SETUID/SETGID once, for su; the session never runs as
# root. PID 1 gets no default signal handlers, hence the explicit TERM trap (docker stop).
ENTRYPOINT = """#!/bin/sh
# convocate session entrypoint (offline image): the command runs in tmux session "claude",
# as user claude (CLAUDE_UID/CLAUDE_GID, never 0).
export HOME=/home/claude LC_ALL=C.UTF-8 LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin:/sbin
[ "$#" -gt 0 ] || set -- /usr/local/bin/claude
if [ "$(id -u)" = 0 ]; then
  uid="${CLAUDE_UID:-1337}" gid="${CLAUDE_GID:-1337}"
  case "$uid:$gid" in
    *[!0-9:]*|:*|*:|0:*|*:0) echo "convocate: refusing session user $uid:$gid" >&2; exit 1 ;;
  esac
  if [ "$(id -u claude 2>/dev/null):$(id -g claude 2>/dev/null)" != "$uid:$gid" ]; then
    sed -i '/^claude:/d' /etc/passwd /etc/group
    echo "claude:x:$uid:$gid:claude:/home/claude:/bin/sh" >> /etc/passwd
    echo "claude:x:$gid:" >> /etc/group
  fi
  exec su -s /bin/sh -c 'exec "$0" "$@"' -- claude "$0" "$@"
fi
cd /home/claude 2>/dev/null || cd /
trap 'tmux kill-server 2>/dev/null; exit 0' TERM INT HUP
tmux new-session -d -s claude -x 80 -y 24 -- "$@" || exit 1
# Block (no polling) until the session closes: the hook wakes the waiter, and the server's
# exit (exit-empty) ends it too. In the background, so a TERM runs the trap at once.
tmux set-hook -g session-closed 'wait-for -S convocate-exit'
while tmux has-session -t claude 2>/dev/null; do
  tmux wait-for convocate-exit 2>/dev/null & wait $!
done
"""

TMUX_CONF = """# convocate offline image
set -g default-terminal "screen-256color"
set -g status off
set -g history-limit 5000
set -g exit-empty on
"""

DOCKERFILE = """FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin:/sbin LC_ALL=C.UTF-8 LANG=C.UTF-8 HOME=/home/claude
WORKDIR /home/claude
LABEL org.opencontainers.image.title="convocate offline session image"
ENTRYPOINT ["/usr/local/bin/convocate-entrypoint"]
CMD ["/usr/local/bin/claude", "--dangerously-skip-permissions"]
"""


@dataclass(frozen=True)
class ImageSources:
    """Where the host's parts come from (all overridable for unusual hosts)."""

    busybox: Path = Path("/bin/busybox")
    tmux: Path = Path("/usr/bin/tmux")
    locale_dir: Path = Path("/usr/lib/locale/C.utf8")
    terminfo_dirs: tuple[str, ...] = TERMINFO_DIRS
    extra_files: dict[str, str] = field(default_factory=dict)  # image path -> text


def _shared_libraries(binary: Path) -> list[str]:
    """The absolute library paths ``ldd`` lists for ``binary`` (loader included)."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False, timeout=30)
    if out.returncode != 0:
        raise FailedPreconditionError(f"ldd {binary} failed: {out.stderr.strip() or out.stdout.strip()}")
    libs: list[str] = []
    for line in out.stdout.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0] if parts else ""
        if path.startswith("/"):
            libs.append(path)
    return libs


def _busybox_applets(busybox: Path) -> list[str]:
    out = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True,
                         check=False, timeout=30)
    if out.returncode != 0:
        raise FailedPreconditionError(f"{busybox} is not a usable busybox: {out.stderr.strip()}")
    return sorted(line.strip() for line in out.stdout.splitlines() if line.strip())


class _Tar:
    """A deterministic tar writer (root-owned, mtime 0, sorted by the caller's order)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(  # noqa: SIM115 - closed by close(), which returns the bytes
            fileobj=self.buf, mode="w", format=tarfile.GNU_FORMAT
        )
        self.dirs: set[str] = set()

    def _info(self, name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime, info.uid, info.gid = kind, mode, 0, 0, 0
        return info

    def mkdir(self, name: str, mode: int = 0o755) -> None:
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.dirs.add(d)
                self.tar.addfile(self._info(d, tarfile.DIRTYPE, mode if i == len(parts) else 0o755))

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        name = name.strip("/")
        if "/" in name:
            self.mkdir(name.rsplit("/", 1)[0])
        info = self._info(name, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def symlink(self, name: str, target: str) -> None:
        name = name.strip("/")
        self.mkdir(name.rsplit("/", 1)[0])
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)

    def close(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


def build_context(sources: ImageSources | None = None) -> bytes:
    """Return the docker build context (a tar: ``Dockerfile`` + ``rootfs/``).

    Raises:
        FailedPreconditionError: a needed host file (busybox, tmux, locale) is missing.
    """
    src = sources or ImageSources()
    for need in (src.busybox, src.tmux):
        if not need.exists():
            raise FailedPreconditionError(f"{need} is missing: install busybox-static and tmux")
    t = _Tar()
    t.file("Dockerfile", DOCKERFILE.encode())
    root = "rootfs"
    for d, mode in (("tmp", 0o1777), ("home/claude", 0o755), ("root", 0o700), ("etc", 0o755),
                    ("usr/local/bin", 0o755), ("bin", 0o755), ("var/run", 0o755)):
        t.mkdir(f"{root}/{d}", mode)
    t.file(f"{root}/bin/busybox", src.busybox.read_bytes(), 0o755)
    for applet in _busybox_applets(src.busybox):
        if applet.strip("/") != "bin/busybox":
            t.symlink(f"{root}/{applet}", "/bin/busybox")
    t.file(f"{root}/usr/bin/tmux", src.tmux.read_bytes(), 0o755)
    for lib in _shared_libraries(src.tmux):
        t.file(f"{root}{lib}", Path(lib).resolve().read_bytes(), 0o755)
    for name in TERMINFO_NAMES:
        candidates = (Path(d, name[0], name) for d in src.terminfo_dirs)
        found = next((c for c in candidates if c.exists()), None)
        if found is not None:
            t.file(f"{root}/usr/share/terminfo/{name[0]}/{name}", found.resolve().read_bytes())
    if src.locale_dir.is_dir():
        for path in sorted(src.locale_dir.rglob("*")):
            if path.is_file():
                rel = path.relative_to(src.locale_dir.parent)
                t.file(f"{root}/usr/lib/locale/{rel}", path.read_bytes())
    files = {
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nclaude:x:1337:1337:claude:/home/claude:/bin/sh\n",
        "etc/group": "root:x:0:\nclaude:x:1337:\n",
        "etc/tmux.conf": TMUX_CONF,
        **src.extra_files,
    }
    for name, text in sorted(files.items()):
        t.file(f"{root}/{name}", text.encode())
    t.file(f"{root}/usr/local/bin/convocate-entrypoint", ENTRYPOINT.encode(), 0o755)
    t.file(f"{root}/usr/local/bin/claude", STAND_IN_CLI.encode(), 0o755)
    t.file(f"{root}/usr/local/bin/claude-hook", HOOK_RUNNER.encode(), 0o755)
    for command in STAND_IN_COMMANDS:
        t.symlink(f"{root}/usr/local/bin/{command}", "claude-hook")
    return t.close()


def offline_image_tag(context: bytes, repository: str = "convocate") -> str:
    """``<repository>:offline-<12 hex of the context hash>`` (same inputs, same tag)."""
    return f"{repository}:offline-{hashlib.sha256(context).hexdigest()[:12]}"


async def build_offline_image(
    runtime: ContainerRuntime, repository: str = "convocate", sources: ImageSources | None = None
) -> str:
    """Build the offline image unless an identical one exists; return its tag.

    Args:
        runtime: the container runtime to build with.
        repository: image repository name (tests use ``convocate-test``).
        sources: host paths of busybox, tmux, locale and terminfo.

    Returns:
        The tag, ``<repository>:offline-<hash>``.

    Raises:
        FailedPreconditionError: a needed host file is missing.
    """
    context = build_context(sources)
    tag = offline_image_tag(context, repository)
    if await runtime.image_exists(tag):
        return tag
    log.info("building offline session image", tag=tag, context_bytes=len(context))
    await runtime.build_image(context, tag)
    return tag

