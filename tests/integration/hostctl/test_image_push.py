"""Image transfer to a host behind a real OpenSSH sshd, with the Docker Engine loading it.

Broken streams are made outside the code under test: a second client key is authorized
with a forced command (``command="..."`` in authorized_keys) that runs a mangler in
front of the receiving command on the target. It flips a byte, or forwards only part
of the stream, as a faulty disk, relay or network path would.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.errors import ConvocateError, FailedPreconditionError, NotFoundError
from common.ssh_keys import generate_keypair, public_key_text
from hostctl.image_transfer import CODECS, push_image
from hostctl.remote import SSHRunner, SSHTarget
from tests.support.sshd import Sshd
from tests.support.tiny_image import build_tiny_image

pytestmark = [pytest.mark.docker, pytest.mark.sshd]

# Runs instead of the client's command; mangles stdin of the upload step only.
MANGLER = r"""
import os, subprocess, sys
command = os.environ.get("SSH_ORIGINAL_COMMAND", "")
how, at = open(sys.argv[1]).read().split()
if how == "path":  # run every command with this PATH (to hide a tool)
    os.environ["PATH"] = at
    os.execv("/bin/sh", ["sh", "-c", command])
at = int(at)
if "sha256sum" not in command:
    os.execvp("sh", ["sh", "-c", command])
receiver = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE)
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


@dataclass
class Mangler:
    """A login whose uploads pass through the mangler; ``set`` chooses what it does."""

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
    """A fresh tiny image, removed afterwards."""
    tag = build_tiny_image()
    try:
        yield tag
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False, timeout=60)


class Stages:
    """Records the stages of a push; can run a step when one starts."""

    def __init__(self, on_load: object = None) -> None:
        self.names: list[str] = []
        self.bytes = 0
        self.on_load = on_load

    def stage(self, name: str, total: int | None) -> None:
        self.names.append(name)
        if name == "load" and callable(self.on_load):
            self.on_load()

    def advance(self, nbytes: int) -> None:
        self.bytes += nbytes


def _target(s: Sshd, key: Path | None = None) -> SSHTarget:
    return SSHTarget(s.host, s.port, s.user, key or s.client_key, s.known_hosts)


def _image_id(tag: str) -> str | None:
    r = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", tag],
                       capture_output=True, text=True, check=False, timeout=30)
    return r.stdout.strip() if r.returncode == 0 else None


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    """A private staging directory on the target (the target is this machine)."""
    d = tmp_path / "staging"
    d.mkdir()
    return d


@pytest.mark.parametrize("codec", list(CODECS))
async def test_push_loads_the_image_and_sets_the_pointer(
    sshd: Sshd, image: str, tmp_path: Path, staging: Path, codec: str
) -> None:
    """The image removed here once the upload is verified comes back through docker load."""
    before_id = _image_id(image)
    pointer = tmp_path / "current-image"
    pointer.write_text("convocate:previous\n")

    def remove_local() -> None:
        subprocess.run(["docker", "rmi", image], check=True, capture_output=True, timeout=60)
        assert _image_id(image) is None

    stages = Stages(on_load=remove_local)
    runner = SSHRunner(_target(sshd))
    try:
        result = await push_image(image, runner, codec=codec, set_current=str(pointer), progress=stages,
                                  staging_dir=str(staging))
    finally:
        await runner.close()
    assert _image_id(image) == before_id == result.image_id
    assert pointer.read_text() == f"{image}\n"
    assert result.codec == codec
    assert result.compressed_bytes < result.tar_bytes == stages.bytes
    assert stages.names == ["send", "verify", "load", "done"]
    assert len(result.sha256) == 64
    assert result.remote_file.startswith(f"{staging}/convocate-image-")
    assert list(staging.iterdir()) == []


@pytest.mark.parametrize(("how", "at"), [("flip", 5000), ("truncate", 20000), ("cut", 20000)])
async def test_broken_stream_is_refused_and_the_current_image_stays(
    sshd: Sshd, mangler: Mangler, image: str, tmp_path: Path, staging: Path, how: str, at: int
) -> None:
    """A flipped byte or a cut stream is refused before docker load; the pointer keeps its value."""
    mangler.set(how, at)
    pointer = tmp_path / "current-image"
    pointer.write_text("convocate:previous\n")
    stages = Stages()
    runner = SSHRunner(_target(sshd, mangler.key))
    try:
        with pytest.raises(ConvocateError, match=r"sha256 mismatch .* nothing was loaded|stopped reading"):
            await push_image(image, runner, set_current=str(pointer), progress=stages,
                             staging_dir=str(staging))
    finally:
        await runner.close()
    assert "load" not in stages.names
    assert pointer.read_text() == "convocate:previous\n"
    assert list(staging.iterdir()) == []


async def test_mangler_passes_an_intact_stream(sshd: Sshd, mangler: Mangler, image: str) -> None:
    """The fault injector itself forwards a stream it is told not to touch (offset past the end)."""
    mangler.set("flip", 1 << 40)
    runner = SSHRunner(_target(sshd, mangler.key))
    try:
        result = await push_image(image, runner, codec="gzip")
    finally:
        await runner.close()
    assert result.image_id == _image_id(image)


async def test_a_target_without_zstd_is_told_what_to_do(
    sshd: Sshd, mangler: Mangler, image: str, tmp_path: Path, staging: Path
) -> None:
    """Without the zstd tool on the target the push stops before sending and names the fix."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "mktemp", "rm", "tee", "sha256sum", "id"):
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


async def test_missing_image_is_a_clear_error(sshd: Sshd) -> None:
    """Pushing an image that does not exist here says so before connecting anywhere."""
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
def test_cli_dry_run_and_json(sshd: Sshd, image: str, codec: str) -> None:
    """`--dry-run --json` prints the plan; a real `--json` push prints only the result on stdout."""
    base = _cli(sshd, image, "--json", "--codec", codec)
    plan = subprocess.run([*base, "--dry-run"], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(plan.stdout)["steps"][0].startswith(f"docker save {image} | {codec}")
    done = subprocess.run(base, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["tag"], result["codec"]) == (image, codec)
    assert result["image_id"] == _image_id(image)
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
    for stage in ("send", "verify", "load"):
        assert stage in text
    assert out.decode().startswith(f"pushed {image}")
