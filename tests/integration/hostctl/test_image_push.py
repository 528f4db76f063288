"""Image transfer to a host behind a real OpenSSH sshd, into a Docker Engine of its own.

The target is a private engine (tests/support/private_dockerd.py) that the sshd's
sessions reach through ``DOCKER_HOST``: it starts empty, so a push really stores layers
there, and an update push finds the previous image's layers already in place.

Broken streams are made outside the code under test: a second client key is authorized
with a forced command (``command="..."`` in authorized_keys) that runs a mangler in
front of the receiving command on the target. It flips a byte, forwards only part of
the stream, or swaps in another image's stream, as a faulty disk, relay or network path
would.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.errors import ConvocateError, FailedPreconditionError, NotFoundError
from common.ssh_keys import generate_keypair, public_key_text
from hostctl.image_receiver import inventory_script, parse_inventory
from hostctl.image_transfer import CODECS, push_image
from hostctl.remote import SSHRunner, SSHTarget
from tests.support.env import require_root, require_tool
from tests.support.private_dockerd import PrivateDockerd
from tests.support.sshd import QUIET_SHELL, Sshd, start_sshd
from tests.support.tiny_image import build_tiny_image

pytestmark = [pytest.mark.docker, pytest.mark.sshd]

# Runs instead of the client's command; mangles stdin of the load step only.
MANGLER = r"""
import os, shutil, subprocess, sys
command = os.environ.get("SSH_ORIGINAL_COMMAND", "")
how, at = open(sys.argv[1]).read().split()
if how == "path":  # run every command with this PATH (to hide a tool)
    os.environ["PATH"] = at
    os.execv("/bin/sh", ["sh", "-c", command])
if "sha256sum" not in command:
    os.execvp("sh", ["sh", "-c", command])
receiver = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE)
if how == "replace":  # read the whole stream, send another one instead
    while sys.stdin.buffer.read(65536):
        pass
    with open(at, "rb") as f:
        shutil.copyfileobj(f, receiver.stdin)
    receiver.stdin.close()
    sys.exit(receiver.wait())
at = int(at)
seen = 0
while chunk := sys.stdin.buffer.read(65536):
    start, seen = seen, seen + len(chunk)
    if how == "flip" and start <= at < seen:
        i = at - start
        chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1:]
    elif how in ("truncate", "cut") and seen > at:
        chunk = chunk[:max(0, at - start)]
    receiver.stdin.write(chunk)
    if how == "cut" and seen > at:
        break  # stop reading: the sender sees its stream refused
receiver.stdin.close()
sys.exit(receiver.wait())
"""


@pytest.fixture(scope="module")
def engine() -> Iterator[PrivateDockerd]:
    """An empty private Docker Engine: the target's engine."""
    for tool in ("dockerd", "ip"):
        require_tool(tool)
    require_root("the private Docker Engine needs root")
    target = PrivateDockerd()
    try:
        target.start()
        yield target
    finally:
        target.close()


@pytest.fixture(scope="module")
def sshd(engine: PrivateDockerd) -> Iterator[Sshd]:
    """A real sshd on loopback whose sessions use the private engine."""
    with tempfile.TemporaryDirectory(prefix="cvsshd-") as d:
        server = start_sshd(Path(d), env={"DOCKER_HOST": engine.url, **QUIET_SHELL})
        try:
            yield server
        finally:
            server.stop()


@dataclass
class Mangler:
    """A login whose loads pass through the mangler; ``set`` chooses what it does."""

    key: Path
    mode_file: Path

    def set(self, how: str, at: int | str) -> None:
        self.mode_file.write_text(f"{how} {at}\n")


@pytest.fixture(scope="module")
def mangler(sshd: Sshd) -> Mangler:
    """Authorize a second key of the test sshd with the mangler as its forced command."""
    root = sshd.client_key.parent
    script = root / "mangle.py"
    script.write_text(MANGLER)
    mode = root / "mangle-mode"
    mode.write_text("flip 100\n")
    key = root / "mangler_ed25519_key"
    pub = public_key_text(generate_keypair(key, "mangler"))
    forced = f'command="{sys.executable} {script} {mode}",no-pty {pub}'
    with (root / "authorized_keys").open("a") as f:
        f.write(forced + "\n")
    return Mangler(key, mode)


@pytest.fixture
def image() -> Iterator[str]:
    """A fresh tiny image, removed afterwards (here; the target engine is the module's)."""
    tag = build_tiny_image()
    try:
        yield tag
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False, timeout=60)


class Stages:
    """Records the stages of a push and the bytes it read."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.bytes = 0

    def stage(self, name: str, total: int | None) -> None:
        self.names.append(name)

    def advance(self, nbytes: int) -> None:
        self.bytes += nbytes


def _target(s: Sshd, key: Path | None = None) -> SSHTarget:
    return SSHTarget(s.host, s.port, s.user, key or s.client_key, s.known_hosts)


def _image_id(tag: str, engine: PrivateDockerd | None = None) -> str | None:
    argv = ["image", "inspect", "--format", "{{.Id}}", tag]
    r = (engine.docker(*argv, check=False) if engine else
         subprocess.run(["docker", *argv], capture_output=True, check=False, timeout=30))
    return r.stdout.decode().strip() if r.returncode == 0 else None


def _images(engine: PrivateDockerd) -> set[str]:
    return set(engine.docker("image", "ls", "-aq", "--no-trunc").stdout.decode().split())


def _emptied(engine: PrivateDockerd) -> PrivateDockerd:
    """``engine`` without any image (tests before may have left layers a new image shares)."""
    if ids := _images(engine):
        engine.docker("rmi", "-f", *ids, timeout=120)
    assert _images(engine) == set()
    return engine


def _runs(engine: PrivateDockerd, tag: str) -> bool:
    r = engine.docker("run", "--rm", "--network", "none", tag, "/bin/busybox", "true", check=False,
                      timeout=120)
    return r.returncode == 0


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    """A private staging directory on the target (the target is this machine)."""
    d = tmp_path / "staging"
    d.mkdir()
    return d


@pytest.mark.parametrize("codec", list(CODECS))
async def test_push_loads_the_image_into_an_empty_engine_and_sets_the_pointer(
    sshd: Sshd, engine: PrivateDockerd, image: str, tmp_path: Path, staging: Path, codec: str
) -> None:
    """Every layer travels, the target's engine runs the image, the tag and pointer follow."""
    _emptied(engine)
    pointer = tmp_path / "current-image"
    pointer.write_text("convocate:previous\n")
    stages = Stages()
    runner = SSHRunner(_target(sshd))
    try:
        result = await push_image(image, runner, codec=codec, set_current=str(pointer), progress=stages,
                                  staging_dir=str(staging))
    finally:
        await runner.close()
    assert _image_id(image, engine) == _image_id(image) == result.image_id
    assert _runs(engine, image)
    assert pointer.read_text() == f"{image}\n"
    assert result.codec == codec
    assert (result.layers_sent, result.layers_skipped) == (2, 0)
    assert result.compressed_bytes < result.tar_bytes == stages.bytes
    assert stages.names == ["send", "verify", "done"]
    assert len(result.sha256) == 64
    assert list(staging.iterdir()) == []


async def test_an_update_sends_only_the_layers_the_target_lacks(
    sshd: Sshd, engine: PrivateDockerd, image: str, tmp_path: Path
) -> None:
    """The next release on top of the previous one: its base layers stay home, the image runs."""
    _emptied(engine)
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "release").write_bytes(os.urandom(200_000))
    (tmp_path / "ctx" / "Dockerfile").write_text(f"FROM {image}\nCOPY release /release\n")
    update = f"{image}-update"
    subprocess.run(["docker", "build", "-q", "-t", update, str(tmp_path / "ctx")], check=True,
                   capture_output=True, timeout=120)
    runner = SSHRunner(_target(sshd))
    try:
        first = await push_image(image, runner)
        second = await push_image(update, runner)
        again = await push_image(update, runner)
    finally:
        await runner.close()
        subprocess.run(["docker", "rmi", update], capture_output=True, check=False, timeout=60)
    assert (first.layers_sent, first.layers_skipped) == (2, 0)
    assert (second.layers_sent, second.layers_skipped) == (1, 2)
    assert second.compressed_bytes < first.compressed_bytes
    assert (again.layers_sent, again.layers_skipped) == (0, 3)
    assert _image_id(update, engine) == second.image_id == again.image_id
    assert _runs(engine, update)


@pytest.mark.parametrize(("how", "at"), [("flip", 5000), ("truncate", 20000), ("cut", 20000)])
async def test_broken_stream_is_refused_and_the_current_image_stays(
    sshd: Sshd, engine: PrivateDockerd, mangler: Mangler, image: str, tmp_path: Path, staging: Path,
    how: str, at: int,
) -> None:
    """A flipped byte or a cut stream: refused, the tag and pointer keep their image, nothing added."""
    runner = SSHRunner(_target(sshd))
    try:
        previous = await push_image(image, runner)  # the target has a "previous" under the same tag
    finally:
        await runner.close()
    update = _rebuilt(image, tmp_path)
    mangler.set(how, at)
    pointer = tmp_path / "current-image"
    pointer.write_text("convocate:previous\n")
    before = _images(engine)
    stages = Stages()
    runner = SSHRunner(_target(sshd, mangler.key))
    try:
        with pytest.raises(ConvocateError, match=r"sha256 mismatch .* nothing was tagged|stopped reading"):
            await push_image(update, runner, set_current=str(pointer), progress=stages,
                             staging_dir=str(staging))
    finally:
        await runner.close()
    assert "done" not in stages.names
    assert pointer.read_text() == "convocate:previous\n"
    assert _image_id(image, engine) == previous.image_id
    assert _images(engine) == before
    assert list(staging.iterdir()) == []


def _rebuilt(tag: str, tmp_path: Path) -> str:
    """A new image under ``tag`` (another top layer); the old one keeps its id on the target."""
    ctx = tmp_path / "rebuild"
    ctx.mkdir()
    (ctx / "release").write_bytes(os.urandom(100_000))
    (ctx / "Dockerfile").write_text(f"FROM {tag}\nCOPY release /release\n")
    subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True,
                   timeout=120)
    return tag


async def test_a_stream_that_loads_another_image_is_removed_again(
    sshd: Sshd, engine: PrivateDockerd, mangler: Mangler, image: str, tmp_path: Path
) -> None:
    """A valid stream of the wrong image: it loads, the checks refuse it, and it is removed."""
    other = build_tiny_image()
    try:
        other_id = _image_id(other)
        assert other_id is not None
        swapped = tmp_path / "other.tar.zst"
        subprocess.run(f"docker save {other_id} | zstd -q -c > {swapped}", shell=True, check=True,
                       timeout=120)
    finally:
        subprocess.run(["docker", "rmi", other], capture_output=True, check=False, timeout=60)
    mangler.set("replace", str(swapped))
    before = _images(engine)
    runner = SSHRunner(_target(sshd, mangler.key))
    try:
        with pytest.raises(FailedPreconditionError, match=r"sha256 mismatch .* what it loaded was removed"):
            await push_image(image, runner)
    finally:
        await runner.close()
    assert _image_id(other_id, engine) is None
    assert _image_id(image, engine) is None
    assert _images(engine) == before


async def test_mangler_passes_an_intact_stream(
    sshd: Sshd, engine: PrivateDockerd, mangler: Mangler, image: str
) -> None:
    """The fault injector itself forwards a stream it is told not to touch (offset past the end)."""
    mangler.set("flip", 1 << 40)
    runner = SSHRunner(_target(sshd, mangler.key))
    try:
        result = await push_image(image, runner, codec="gzip", all_layers=True)  # whatever is there
    finally:
        await runner.close()
    assert (result.layers_sent, result.layers_skipped) == (2, 0)
    assert result.image_id == _image_id(image) == _image_id(image, engine)


async def test_a_target_without_zstd_is_told_what_to_do(
    sshd: Sshd, mangler: Mangler, image: str, tmp_path: Path, staging: Path
) -> None:
    """Without the zstd tool on the target the push stops before sending and names the fix."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "bash", "mktemp", "rm", "tee", "sha256sum", "id"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    mangler.set("path", str(bin_dir))
    stages = Stages()
    runner = SSHRunner(_target(sshd, mangler.key))
    try:
        with pytest.raises(FailedPreconditionError, match=r"zstd is not installed on .*--codec gzip"):
            await push_image(image, runner, staging_dir=str(staging), progress=stages)
    finally:
        await runner.close()
    assert stages.names == []
    assert list(staging.iterdir()) == []


STEP_TOOLS = ("sh", "bash", "mktemp", "mkfifo", "rm", "tee", "sha256sum", "cut", "sed", "tail", "mv", "sort",
              "id", "zstd", "gzip")


def _bin(tmp_path: Path, name: str, *tools: str) -> Path:
    """A directory for PATH with only ``tools`` in it."""
    bin_dir = tmp_path / name
    bin_dir.mkdir()
    for tool in tools:
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    return bin_dir


def _bin_without_python(tmp_path: Path) -> Path:
    """Every tool the three steps need (docker too), but not python3 or openssl (used when there)."""
    return _bin(tmp_path, "no-python", *STEP_TOOLS, "docker")


def test_the_docker_api_and_the_docker_cli_list_the_same_images(
    engine: PrivateDockerd, image: str, tmp_path: Path
) -> None:
    """The inventory asks the Docker API through python3; without python3 the docker CLI
    answers: both give every image of the engine with its layers, bottom first."""
    engine.docker("image", "rm", "-f", image, check=False)
    subprocess.run(f"docker save {image} | docker -H {engine.url} load -q", shell=True, check=True,
                   capture_output=True, timeout=120)
    argv = inventory_script("zstd")
    # Without the docker CLI only the Docker API can answer; without python3, only the CLI.
    env = {"DOCKER_HOST": engine.url, "PATH": str(_bin(tmp_path, "no-docker", *STEP_TOOLS, "python3"))}
    api = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=True)
    env["PATH"] = str(_bin_without_python(tmp_path))
    cli = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=True)
    listed = parse_inventory(api.stdout)
    assert listed == parse_inventory(cli.stdout)
    expected = json.loads(engine.docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", image).stdout)
    assert listed[_image_id(image, engine) or ""] == expected
    assert _images(engine) == set(listed)


async def test_an_update_to_a_target_without_python3_still_leaves_out_its_layers(
    sshd: Sshd, engine: PrivateDockerd, mangler: Mangler, image: str, tmp_path: Path
) -> None:
    """No python3 or openssl there: the docker CLI lists the images, sha256sum hashes the stream;
    the update sends only its new layer and is verified as usual."""
    _emptied(engine)
    runner = SSHRunner(_target(sshd))
    try:
        await push_image(image, runner)
    finally:
        await runner.close()
    update = _rebuilt(image, tmp_path)
    mangler.set("path", str(_bin_without_python(tmp_path)))
    runner = SSHRunner(_target(sshd, mangler.key))
    try:
        result = await push_image(update, runner)
    finally:
        await runner.close()
    assert (result.layers_sent, result.layers_skipped) == (1, 2)
    assert _image_id(update, engine) == result.image_id == _image_id(update)
    assert _runs(engine, update)


async def test_missing_image_is_a_clear_error(sshd: Sshd) -> None:
    """Pushing an image that does not exist here says so; nothing is loaded or tagged there."""
    runner = SSHRunner(_target(sshd))
    try:
        with pytest.raises(NotFoundError, match="no local image 'convocate-nope:0'"):
            await push_image("convocate-nope:0", runner)
    finally:
        await runner.close()


def _cli(sshd: Sshd, image: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hostctl", "image", "push", image, "--host", sshd.host,
            "--port", str(sshd.port), "--user", sshd.user, "--key", str(sshd.client_key),
            "--known-hosts", str(sshd.known_hosts), *extra]


@pytest.mark.parametrize("codec", list(CODECS))
def test_cli_dry_run_and_json(sshd: Sshd, engine: PrivateDockerd, image: str, codec: str) -> None:
    """`--dry-run --json` prints the plan; a real `--json` push prints only the result on stdout."""
    base = _cli(sshd, image, "--json", "--codec", codec)
    plan = subprocess.run([*base, "--dry-run"], capture_output=True, text=True, timeout=60, check=True)
    steps = json.loads(plan.stdout)["steps"]
    assert steps[1].startswith(f"docker save {image} | untag")
    assert f"| {codec} " in steps[1]
    done = subprocess.run(base, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["tag"], result["codec"]) == (image, codec)
    assert result["image_id"] == _image_id(image) == _image_id(image, engine)
    assert "send" not in done.stderr  # no progress display without a terminal


def test_cli_shows_progress_on_a_terminal(sshd: Sshd, image: str) -> None:
    """With stderr on a pseudo-terminal the push draws its stages; stdout keeps the summary."""
    main, sub = os.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    proc = subprocess.Popen(_cli(sshd, image), stdout=subprocess.PIPE, stderr=sub,
                            stdin=subprocess.DEVNULL, env=env)
    os.close(sub)
    drawn = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and len(drawn) < 1 << 22:
            ready, _, _ = select.select([main], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the child closed its side and everything was read
                break
            if not chunk:
                break
            drawn += chunk
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(main)
    text = drawn.decode(errors="replace")
    assert proc.returncode == 0, text
    for stage in ("send", "verify"):
        assert stage in text
    assert out.decode().startswith(f"pushed {image}")
