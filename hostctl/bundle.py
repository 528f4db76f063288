"""The self-contained release bundle: this checkout's wheel and its dependencies' wheels.

Built here (``pip wheel``, from the pip cache or the index the operator's machine
uses) and cached by content: the cache key is a hash of the checkout's sources, and
the bundle's identity (:attr:`Bundle.digest`) a hash of the wheels themselves. A host
needs no package index: the wheels travel over SSH and are installed with
``pip install --no-index --find-links``.

On a host, releases live side by side::

    /opt/convocate/releases/<digest[:16]>/venv     one venv per release
    /opt/convocate/releases/<digest[:16]>/BUNDLE   the digest, written last (= complete)
    /opt/convocate/current  -> releases/<...>      switched atomically (rename of a link)
    /opt/convocate/previous -> releases/<...>      what ``current`` was before the switch
    /usr/local/bin/convocate{,-agent,-host} -> /opt/convocate/current/venv/bin/...

Wheels with compiled parts (grpcio, cryptography) are built for this machine's Python
(major.minor and platform); the host's ``python3`` must be the same minor version
(Debian 12: 3.11), which :func:`install_release` checks before installing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from common import defaults
from common.errors import ConvocateError, FailedPreconditionError, NotFoundError
from hostctl.remote import Runner
from hostctl.remote_files import run_checked
from hostctl.report import Report

__all__ = [
    "COMMANDS",
    "DEFAULT_BIN_DIR",
    "DEFAULT_PREFIX",
    "Bundle",
    "build_bundle",
    "default_cache",
    "install_release",
    "linked_release",
    "load_bundle",
    "release_on_host",
    "source_digest",
    "source_root",
    "switch_release",
]

DEFAULT_PREFIX = defaults.RELEASES_PREFIX
DEFAULT_BIN_DIR = defaults.BIN_DIR
COMMANDS = ("convocate", "convocate-agent", "convocate-host")
_SOURCES = ("pyproject.toml", "hatch_build.py", "README.md", "agent", "common", "shell", "hostctl", "proto",
            "deploy")
_SKIP = re.compile(r"(__pycache__|\.pyc$|_pb2(_grpc)?\.pyi?$)")
_CHUNK = 1 << 20
_MANIFEST = "BUNDLE"


@dataclass(frozen=True)
class Bundle:
    """A wheelhouse and its identity."""

    directory: Path
    digest: str       # sha256 over the wheels' names and contents
    version: str      # convocate's version, from its wheel's name
    python: str       # the CPython tag its compiled wheels need, e.g. "cp311"

    @property
    def release(self) -> str:
        """The release directory's name on a host."""
        return self.digest[:16]


def source_root() -> Path | None:
    """The checkout this module runs from, if it runs from one (else None: pass --bundle)."""
    root = Path(__file__).resolve().parents[1]
    project = root / "pyproject.toml"
    return root if project.is_file() and 'name = "convocate"' in project.read_text() else None


def default_cache() -> Path:
    """Where built bundles are kept (``$XDG_CACHE_HOME/convocate/bundles``)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "convocate" / "bundles"


def source_digest(root: Path) -> str:
    """A hash of the checkout's sources (what goes into the wheel), for the cache key."""
    h = hashlib.sha256()
    for name in _SOURCES:
        top = root / name
        if top.is_file():
            files = [top]
        else:
            files = sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else []
        for path in files:
            rel = path.relative_to(root).as_posix()
            if _SKIP.search(rel):
                continue
            h.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


# The generated gRPC code a convocate wheel must carry (the build hook writes it; a build
# that raced another one in the same checkout can lose it).
_GENERATED = ("convocate/v1/sessions_pb2.py", "convocate/v1/sessions_pb2_grpc.py",
              "convocate/v1/status_pb2.py")


def load_bundle(directory: Path) -> Bundle:
    """Read a wheelhouse: its digest, convocate's version and the Python tag it needs.

    Raises:
        NotFoundError: no convocate wheel in ``directory``.
        FailedPreconditionError: the convocate wheel lacks its generated gRPC code.
    """
    wheels = sorted(directory.glob("*.whl"))
    ours = [w for w in wheels if w.name.startswith("convocate-")]
    if not ours:
        raise NotFoundError(f"no convocate wheel in {directory}: build the bundle from a checkout "
                            "(convocate-host install without --bundle does)")
    with zipfile.ZipFile(ours[0]) as wheel:
        missing = sorted(set(_GENERATED) - set(wheel.namelist()))
    if missing:
        raise FailedPreconditionError(f"{ours[0].name} lacks its generated gRPC code ({', '.join(missing)}): "
                                      f"remove {directory} and build the bundle again")
    h = hashlib.sha256()
    tags: set[str] = set()
    for w in wheels:
        h.update(w.name.encode() + b"\0")
        with w.open("rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
        tags |= {t for t in w.name.split("-")[-3].split(".") if re.fullmatch(r"cp3\d+", t)}
    return Bundle(directory, h.hexdigest(), ours[0].name.split("-")[1], max(tags, default="py3"))


def _pip() -> list[str]:
    """A pip for this very Python (its compiled wheels must match the host's)."""
    own = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, check=False)
    if own.returncode == 0:
        return [sys.executable, "-m", "pip"]
    want = f"(python {sys.version_info.major}.{sys.version_info.minor})"
    for name in ("pip3", "pip"):
        found = shutil.which(name)
        if found:
            probe = subprocess.run([found, "--version"], capture_output=True, text=True, check=False)
            if want in probe.stdout:
                return [found]
    raise FailedPreconditionError(
        f"no pip for Python {sys.version_info.major}.{sys.version_info.minor} here to build the bundle: "
        "install one (python3 -m ensurepip) or pass --bundle with a wheelhouse"
    )


def build_bundle(source: Path, cache: Path | None = None) -> Bundle:
    """The bundle of the checkout at ``source``, from the cache or built with ``pip wheel``.

    Raises:
        FailedPreconditionError: no pip, or ``pip wheel`` failed (its last lines are in the message).
    """
    cache = cache or default_cache()
    key = source_digest(source)[:24]
    py = f"cp{sys.version_info.major}{sys.version_info.minor}"
    final = cache / f"{py}-{key}"
    if (final / _MANIFEST).is_file():
        return load_bundle(final)
    cache.mkdir(parents=True, exist_ok=True)
    # pip builds a local checkout in place, where the build hook writes the generated
    # code: two builds of one checkout at once (parallel installs) must not overlap.
    with _build_lock(cache, source):
        if (final / _MANIFEST).is_file():      # built while we waited
            return load_bundle(final)
        _build_into(source, cache, final)
    return load_bundle(final)


@contextlib.contextmanager
def _build_lock(cache: Path, source: Path) -> Iterator[None]:
    """An exclusive lock per checkout in the cache, held while pip builds (released on exit or crash)."""
    name = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:16]
    fd = os.open(cache / f".build-{name}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _build_into(source: Path, cache: Path, final: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
    try:
        argv = [*_pip(), "wheel", "-q", "--disable-pip-version-check", "--wheel-dir", str(work), str(source)]
        built = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
        if built.returncode != 0:
            tail = " ".join(built.stderr.strip().splitlines()[-3:])
            raise FailedPreconditionError(f"pip wheel of {source} failed: {tail}")
        bundle = load_bundle(work)
        (work / _MANIFEST).write_text(bundle.digest + "\n")
        try:
            work.rename(final)
        except OSError:            # another build finished first: theirs is the same content
            if not (final / _MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def release_on_host(runner: Runner, prefix: Path) -> str:
    """The digest of the release ``prefix/current`` points at on the host ('' if none)."""
    found = await runner.run(["cat", str(prefix / "current" / _MANIFEST)], root=True)
    return found.text() if found.status == 0 else ""


def wheel_names(directory: Path) -> list[str]:
    """The wheels of a wheelhouse, sorted."""
    return sorted(p.name for p in directory.glob("*.whl"))


async def _tar_chunks(directory: Path, hashed: Callable[[bytes], object]) -> AsyncGenerator[bytes]:
    proc = await asyncio.create_subprocess_exec(
        "tar", "-C", str(directory), "-cf", "-", *wheel_names(directory),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    if proc.stdout is None:  # pragma: no cover - PIPE gives a reader
        raise ConvocateError("tar gave no output stream")
    try:
        while chunk := await proc.stdout.read(_CHUNK):
            hashed(chunk)
            yield chunk
        if await proc.wait() != 0:
            err = await proc.stderr.read() if proc.stderr else b""
            raise ConvocateError(f"tar of {directory} failed: {err.decode(errors='replace').strip()}")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# $0 release dir, $1 digest, $2 python: unpack the checked tar, make the venv, install offline.
_INSTALL = """
set -e
cd "$0"
rm -rf wheels venv "$0/BUNDLE"
mkdir wheels
tar -xf wheels.tar -C wheels
rm -f wheels.tar
"$2" -m venv venv
venv/bin/python -m pip install -q --disable-pip-version-check --no-index --find-links wheels convocate
venv/bin/convocate-host version >/dev/null
rm -rf wheels
printf '%s\\n' "$1" > BUNDLE.tmp && mv -f BUNDLE.tmp BUNDLE
"""


async def install_release(runner: Runner, bundle: Bundle, report: Report, *, prefix: Path = DEFAULT_PREFIX,
                          python: str = "python3") -> bool:
    """Install ``bundle`` as a release beside the others (not switched to); True if it was not there.

    The wheels go over the runner as one tar stream, hashed on both ends; the venv is
    made with the host's ``python``, whose version must match the bundle's compiled wheels.

    Raises:
        FailedPreconditionError: the host's Python does not match, or the stream arrived damaged.
        ConvocateError: a step failed on the host (its message names it).
    """
    rel = prefix / "releases" / bundle.release
    there = await runner.run(["cat", str(rel / _MANIFEST)], root=True)
    if there.status == 0 and there.text() == bundle.digest:
        return False
    if report.dry_run:
        return True
    tag = "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')"
    probe = await runner.run([python, "-c", tag])
    host_py = probe.text() if probe.status == 0 else "none"
    if bundle.python not in ("py3", host_py):
        raise FailedPreconditionError(
            f"{runner.name} has {python} = {host_py}, the bundle needs {bundle.python}: install that Python "
            f"there (Debian 12's python3 is cp311) or build the bundle with it"
        )
    await run_checked(runner, ["mkdir", "-p", str(rel)], "creating the release directory")
    digest = hashlib.sha256()
    upload = ["sh", "-c", 'umask 022 && tee "$0/wheels.tar" | sha256sum', str(rel)]
    stream = _tar_chunks(bundle.directory, digest.update)
    try:
        result = await runner.run(upload, root=True, stdin=stream)
    finally:
        await stream.aclose()  # stops tar if the upload ended early
    got = result.text().split()[0] if result.status == 0 and result.text() else ""
    if got != digest.hexdigest():
        await runner.run(["rm", "-rf", str(rel)], root=True)
        raise FailedPreconditionError(f"the bundle arrived damaged on {runner.name} (sha256 {got or 'none'} "
                                      f"!= {digest.hexdigest()}); nothing was installed: re-run")
    await run_checked(runner, ["sh", "-c", _INSTALL, str(rel), bundle.digest, python],
                      f"installing release {bundle.version} ({bundle.release})", timeout=1800)
    return True


# $0 prefix, $1 release name, $2 bin dir, then the command names: switch `current` by renaming a link.
_SWITCH = """
set -e
p="$0"; r="$1"; b="$2"; shift 2
[ -f "$p/releases/$r/BUNDLE" ] || { echo "release $r is not complete" >&2; exit 3; }
old=$(readlink "$p/current" 2>/dev/null || true)
if [ "$old" != "releases/$r" ]; then
  if [ -n "$old" ]; then ln -sfn "$old" "$p/previous.new" && mv -fT "$p/previous.new" "$p/previous"; fi
  ln -sfn "releases/$r" "$p/current.new" && mv -fT "$p/current.new" "$p/current"
  echo switched
fi
mkdir -p "$b"
for c in "$@"; do
  [ "$(readlink "$b/$c" 2>/dev/null)" = "$p/current/venv/bin/$c" ] && continue
  ln -sfn "$p/current/venv/bin/$c" "$b/$c.new" && mv -fT "$b/$c.new" "$b/$c"
  echo linked
done
"""


async def switch_release(runner: Runner, release: str, *, prefix: Path = DEFAULT_PREFIX,
                         bin_dir: Path = DEFAULT_BIN_DIR) -> bool:
    """Point ``prefix/current`` (and the commands in ``bin_dir``) at ``release``; True if anything moved.

    The previous target is kept as ``prefix/previous``. Each link is replaced by a rename,
    so a reader sees the old release or the new one, never neither.
    """
    out = await run_checked(runner, ["sh", "-c", _SWITCH, str(prefix), release, str(bin_dir), *COMMANDS],
                            f"switching to release {release}")
    return bool(out)


async def linked_release(runner: Runner, prefix: Path = DEFAULT_PREFIX, link: str = "current") -> str:
    """The release name ``prefix/<link>`` points at ('' if there is no such link)."""
    found = await runner.run(["readlink", str(prefix / link)], root=True)
    return found.text().rsplit("/", 1)[-1] if found.status == 0 else ""
