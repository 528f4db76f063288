"""The production session image, built from the Debian archive and the npm registry alone.

Two steps, each cached by content:

1. **The base**: ``debootstrap --variant=minbase SUITE`` from the archive this machine's apt
   uses (:mod:`agent.apt_sources`; ``--mirror`` overrides it), imported with ``docker import``
   as ``convocate-base:<suite>-<hash>``, the hash over the suite, the extra packages and the
   apt sources the image will use. When that tag exists it is reused; ``--base IMAGE`` skips
   this step and builds on any image an operator names (``ubuntu:24.04`` where a registry is
   reachable).
2. **The layers**: ``deploy/docker/Dockerfile`` on that base, the same file operators with a
   registry build ``FROM ubuntu:24.04``: ``install-toolset.sh`` (v2.0.0's tools from the
   distribution, the Claude CLI from npm at the pinned version, user ``claude`` uid 1337),
   the tmux configuration and the entrypoint. Docker's build cache makes a repeat take seconds.
   The build host's locally added CAs (``/usr/local/share/ca-certificates``) go in too, so a
   network behind a TLS-intercepting proxy works; ``local_ca_dir=None`` leaves them out.

The image is tagged ``<repository>:<release>-cli<version>`` and ``<repository>:<release>``
(the tag the agent's current-image pointer names). The Docker CLI does the work, as the
commands an operator would type; ``DOCKER_HOST`` is honoured.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from agent.apt_sources import archive_mirror, read_sources, release_sources, sources_list
from common.deploy_files import deploy_dir
from common.errors import FailedPreconditionError, InvalidArgumentError
from common.logging import get_logger
from common.version import VERSION

__all__ = [
    "BASE_REPOSITORY",
    "DEFAULT_SUITE",
    "LOCAL_CA_DIR",
    "BaseSpec",
    "BuiltImage",
    "ProductionOptions",
    "base_spec",
    "build_production_image",
    "docker_tag_part",
    "pinned_cli_version",
    "production_tags",
]

log = get_logger(__name__)

DEFAULT_SUITE = "bookworm"
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")   # Debian's place for locally added CAs
BASE_REPOSITORY = "convocate-base"
_CLI_ARG = re.compile(r"^ARG\s+CLI_VERSION=(\S+)\s*$", re.MULTILINE)
_CLI_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$")   # npm versions, nothing a shell reads
_SUITE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_TAG_BAD = re.compile(r"[^A-Za-z0-9_.-]")

Say = Callable[[str], None]


@dataclass(frozen=True)
class ProductionOptions:
    """What ``convocate-agent build-image --production`` was asked for."""

    repository: str = "convocate"
    base: str = ""                    # "" = bootstrap a Debian base; else any image
    cli_version: str = ""             # "" = the version the Dockerfile pins
    suite: str = DEFAULT_SUITE
    mirror: str = ""                  # "" = the archive this machine's apt uses
    base_packages: tuple[str, ...] = ()
    apt_dir: Path = Path("/etc/apt")
    docker_dir: Path = field(default_factory=lambda: deploy_dir() / "docker")
    local_ca_dir: Path | None = LOCAL_CA_DIR   # None: trust only the distribution's CAs


@dataclass(frozen=True)
class BaseSpec:
    """A bootstrapped base: what goes into it, and the tag that names exactly that."""

    suite: str
    mirror: str
    packages: tuple[str, ...]
    sources: str          # the image's /etc/apt/sources.list
    tag: str


@dataclass(frozen=True)
class BuiltImage:
    """The outcome of one production build."""

    tags: tuple[str, ...]
    base: str
    base_reused: bool
    cli_version: str
    size_bytes: int
    seconds: float

    def summary(self) -> str:
        """One line for the operator: tags, size, time, base."""
        reused = "reused" if self.base_reused else "built"
        return (f"{', '.join(self.tags)}: {self.size_bytes / 1e6:.0f} MB, built in {self.seconds:.1f} s "
                f"(Claude CLI {self.cli_version}; base {self.base}, {reused})")


def docker_tag_part(text: str) -> str:
    """``text`` made a valid Docker tag fragment (``2.1.0+local`` -> ``2.1.0-local``)."""
    return _TAG_BAD.sub("-", text).lstrip(".-")[:100] or "unknown"


def pinned_cli_version(dockerfile: str) -> str:
    """The ``ARG CLI_VERSION=`` default of the production Dockerfile (the one pinned version).

    Raises:
        FailedPreconditionError: the Dockerfile pins none.
    """
    match = _CLI_ARG.search(dockerfile)
    if match is None:
        raise FailedPreconditionError("the production Dockerfile has no `ARG CLI_VERSION=<version>`")
    return match.group(1)


def production_tags(repository: str, cli_version: str, release: str = VERSION) -> tuple[str, str]:
    """(``<repository>:<release>-cli<version>``, ``<repository>:<release>``)."""
    rel = docker_tag_part(release)
    return f"{repository}:{rel}-cli{docker_tag_part(cli_version)}", f"{repository}:{rel}"


def base_spec(suite: str, mirror: str, packages: Sequence[str], apt_dir: Path) -> BaseSpec:
    """The base for ``suite``: mirror and apt sources from ``apt_dir`` unless ``mirror`` is given.

    Raises:
        InvalidArgumentError: a malformed suite or package name.
        FailedPreconditionError: no apt source carries the suite and no mirror was given.
    """
    if not _SUITE.match(suite):
        raise InvalidArgumentError(f"not a Debian suite name: {suite!r}")
    bad = [p for p in packages if not re.match(r"^[a-z0-9][a-z0-9.+-]*$", p)]
    if bad:
        raise InvalidArgumentError(f"not Debian package names: {', '.join(bad)}")
    sources = read_sources(apt_dir)
    chosen = mirror.rstrip("/") or archive_mirror(sources, suite)
    # The image's apt uses the same sources as this host (the suite, -updates, -security);
    # an overriding mirror replaces the host's archive wherever it served the suite itself.
    release = [replace(s, uri=chosen) if suite in s.suites else s
               for s in release_sources(sources, suite)]
    text = sources_list(release) or f"deb {chosen} {suite} main\n"
    pkgs = tuple(sorted(set(packages)))
    key = hashlib.sha256("\n".join([suite, chosen, " ".join(pkgs), text]).encode()).hexdigest()[:12]
    return BaseSpec(suite, chosen, pkgs, text, f"{BASE_REPOSITORY}:{suite}-{key}")


def _docker(*args: str, stdin: int | None = None, stream: Say | None = None,
            timeout: float = 3600) -> str:
    """Run ``docker ARGS``; stream its lines to ``stream`` if given; raise on failure."""
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}   # the classic builder: no buildx needed
    with subprocess.Popen(["docker", *args], stdin=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env) as proc:
        assert proc.stdout is not None  # noqa: S101 - stdout=PIPE
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if stream is not None:
                stream(lines[-1])
            if time.monotonic() > deadline:
                proc.kill()
                break
        code = proc.wait(timeout=60)
    if code != 0:
        tail = "\n".join(lines[-15:])
        raise FailedPreconditionError(f"docker {args[0]} failed (exit {code}):\n{tail}")
    return "\n".join(lines)


def _image_exists(tag: str) -> bool:
    probe = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", tag],
                           capture_output=True, check=False, timeout=60)
    return probe.returncode == 0


def _bootstrap(spec: BaseSpec, say: Say) -> None:
    """debootstrap ``spec`` into a temporary directory and import it as ``spec.tag``."""
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise FailedPreconditionError("debootstrap is not installed (apt-get install debootstrap), "
                                      "or name a base image with --base")
    if os.geteuid() != 0:
        raise FailedPreconditionError("debootstrap needs root: run as root, or name a base image "
                                      "with --base")
    with tempfile.TemporaryDirectory(prefix="convocate-base-") as tmp:
        root = Path(tmp) / "rootfs"
        argv = [debootstrap, "--variant=minbase"]
        if spec.packages:
            argv.append(f"--include={','.join(spec.packages)}")
        argv += [spec.suite, str(root), spec.mirror]
        say(f"bootstrapping {spec.suite} from {spec.mirror} ...")
        r = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1800)
        if r.returncode != 0:
            raise FailedPreconditionError(
                f"debootstrap failed (exit {r.returncode}): {(r.stderr or r.stdout).strip()[-800:]}")
        (root / "etc/apt/sources.list").write_text(spec.sources)
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (root / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        say(f"importing the base as {spec.tag} ...")
        with subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."],
                              stdout=subprocess.PIPE) as tar:
            _docker("import", "--message", f"debootstrap --variant=minbase {spec.suite}",
                    "-", spec.tag, stdin=tar.stdout.fileno() if tar.stdout else None)
            if tar.wait(timeout=600) != 0:
                raise FailedPreconditionError("tar of the bootstrapped base failed")


def _copy_local_cas(source: Path | None, target: Path) -> None:
    """Copy the build host's locally added CAs (``*.crt``) into the context's ``local-ca/``.

    Behind a TLS-intercepting proxy npm (at build time) and the CLI (at run time) need them.
    """
    target.mkdir(exist_ok=True)
    if source is None or not source.is_dir():
        return
    for i, cert in enumerate(sorted(source.rglob("*.crt"))):
        if cert.is_file():
            shutil.copyfile(cert, target / f"{i:02d}-{cert.name}")


def build_production_image(opts: ProductionOptions, say: Say = print, *,
                           verbose: bool = False) -> BuiltImage:
    """Build (or reuse) the base, then the production layers; tag, measure and return them.

    Args:
        opts: what to build.
        say: where progress lines go.
        verbose: also stream every line of ``docker build``.

    Raises:
        InvalidArgumentError: a malformed CLI version, suite or package name.
        FailedPreconditionError: a missing tool or file, or a failed step (with its output).
    """
    started = time.monotonic()
    dockerfile = opts.docker_dir / "Dockerfile"
    if not dockerfile.is_file():
        raise FailedPreconditionError(f"no production Dockerfile at {dockerfile}")
    cli_version = opts.cli_version or pinned_cli_version(dockerfile.read_text())
    if not _CLI_VERSION.match(cli_version):
        raise InvalidArgumentError(f"not an npm version: {cli_version!r}")
    reused = True
    base = opts.base
    if not base:
        spec = base_spec(opts.suite, opts.mirror, opts.base_packages, opts.apt_dir)
        base = spec.tag
        if not _image_exists(base):
            reused = False
            _bootstrap(spec, say)
    tags = production_tags(opts.repository, cli_version)
    say(f"building {tags[0]} on {base} ...")
    with tempfile.TemporaryDirectory(prefix="convocate-build-") as ctx:
        shutil.copytree(opts.docker_dir, ctx, dirs_exist_ok=True)
        _copy_local_cas(opts.local_ca_dir, Path(ctx) / "local-ca")
        _docker("build", "--build-arg", f"BASE={base}", "--build-arg", f"CLI_VERSION={cli_version}",
                *(a for t in tags for a in ("-t", t)), ctx, stream=say if verbose else None)
    size = int(_docker("image", "inspect", "--format", "{{.Size}}", tags[0]).strip() or 0)
    built = BuiltImage(tags, base, reused, cli_version, size, time.monotonic() - started)
    log.info("production image built", tags=list(tags), base=base, size_bytes=size,
             seconds=round(built.seconds, 1))
    return built
