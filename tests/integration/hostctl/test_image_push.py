"""Image transfer to a host behind a real OpenSSH sshd, with the Docker Engine loading it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.errors import FailedPreconditionError, NotFoundError
from hostctl.image_transfer import push_image
from hostctl.remote import SSHRunner, SSHTarget
from tests.support.sshd import Sshd
from tests.support.tiny_image import build_tiny_image


@pytest.fixture
def image() -> Iterator[str]:
    """A fresh tiny image, removed afterwards."""
    tag = build_tiny_image()
    try:
        yield tag
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False, timeout=60)


def _target(s: Sshd) -> SSHTarget:
    return SSHTarget(s.host, s.port, s.user, s.client_key, s.known_hosts)


def _image_id(tag: str) -> str | None:
    r = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", tag],
                       capture_output=True, text=True, check=False, timeout=30)
    return r.stdout.strip() if r.returncode == 0 else None


def _leftovers() -> set[str]:
    return {p.name for p in Path("/tmp").glob("convocate-image-*.tar.gz")}


async def test_push_loads_the_image_and_sets_the_pointer(sshd: Sshd, image: str, tmp_path: Path) -> None:
    """The image removed locally after upload comes back through docker load with the same id."""
    before_id = _image_id(image)
    pointer = tmp_path / "current-image"
    before = _leftovers()

    async def remove_local() -> None:
        subprocess.run(["docker", "rmi", image], check=True, capture_output=True, timeout=60)
        assert _image_id(image) is None

    runner = SSHRunner(_target(sshd))
    try:
        result = await push_image(image, runner, set_current=str(pointer), on_uploaded=remove_local)
    finally:
        await runner.close()
    assert _image_id(image) == before_id == result.image_id
    assert pointer.read_text() == f"{image}\n"
    assert result.gz_bytes < result.tar_bytes
    assert len(result.sha256) == 64
    assert _leftovers() <= before


async def test_corrupted_stream_is_refused_before_load(sshd: Sshd, image: str) -> None:
    """A byte flipped on the wire is caught by the target's checksum; nothing is loaded."""
    loaded = False

    async def never() -> None:
        nonlocal loaded
        loaded = True

    before = _leftovers()
    runner = SSHRunner(_target(sshd))
    try:
        with pytest.raises(FailedPreconditionError, match=r"sha256 mismatch .* nothing was loaded"):
            await push_image(image, runner, on_uploaded=never, corrupt_at=100)
    finally:
        await runner.close()
    assert not loaded
    assert _leftovers() <= before


async def test_missing_image_is_a_clear_error(sshd: Sshd) -> None:
    """Pushing an image that does not exist here says so before connecting anywhere."""
    runner = SSHRunner(_target(sshd))
    try:
        with pytest.raises(NotFoundError, match="no local image 'convocate-nope:0'"):
            await push_image("convocate-nope:0", runner)
    finally:
        await runner.close()


def test_cli_dry_run_and_json(sshd: Sshd, image: str) -> None:
    """`image push --dry-run --json` prints the plan; a real `--json` push prints the result."""
    base = [sys.executable, "-m", "hostctl", "image", "push", image, "--host", sshd.host,
            "--port", str(sshd.port), "--user", sshd.user, "--key", str(sshd.client_key),
            "--known-hosts", str(sshd.known_hosts), "--json"]
    plan = subprocess.run([*base, "--dry-run"], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(plan.stdout)["steps"][0].startswith(f"docker save {image}")
    done = subprocess.run(base, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["tag"] == image
    assert result["image_id"] == _image_id(image)
