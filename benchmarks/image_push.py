"""`convocate-host image push` against the plain `docker save | gzip | ssh | docker load`.

Both run in the same session against the same real OpenSSH sshd on loopback and the
same Docker Engine, with the same ~48 MB image (random + text data so gzip has work).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.report import median, write_table
from hostctl.image_transfer import push_image
from hostctl.remote import SSHRunner, SSHTarget
from tests.support.sshd import start_sshd

__all__ = ["run"]

REPS = 3


def _build_image(ctx: Path) -> str:
    tag = f"convocate-bench:{uuid.uuid4().hex[:8]}"
    busybox = shutil.which("busybox") or "/bin/busybox"
    shutil.copy(busybox, ctx / "busybox")
    (ctx / "random.bin").write_bytes(os.urandom(16 * 1024 * 1024))
    (ctx / "text.txt").write_bytes(os.urandom(24 * 1024 * 1024).hex().encode()[: 32 * 1024 * 1024])
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY busybox random.bin text.txt /\n")
    subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True)
    return tag


def _tar_bytes(tag: str) -> int:
    out = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", tag],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def run() -> None:
    """Run both pipelines REPS times each and write benchmarks/results/image_push.md."""
    with tempfile.TemporaryDirectory(prefix="cvbi-") as d:
        root = Path(d)
        (root / "ctx").mkdir()
        tag = _build_image(root / "ctx")
        sshd = start_sshd(root / "sshd")
        try:
            size = _tar_bytes(tag)
            ssh = (f"ssh -p {sshd.port} -i {sshd.client_key} -o UserKnownHostsFile={sshd.known_hosts} "
                   f"-o StrictHostKeyChecking=yes -o BatchMode=yes {sshd.user}@{sshd.host}")
            plain: list[float] = []
            ours: list[float] = []
            for _ in range(REPS):
                t0 = time.perf_counter()
                subprocess.run(f"docker save {tag} | gzip -1 | {ssh} docker load", shell=True,
                               check=True, capture_output=True)
                plain.append(time.perf_counter() - t0)

                async def once() -> float:
                    runner = SSHRunner(SSHTarget(sshd.host, sshd.port, sshd.user, sshd.client_key,
                                                 sshd.known_hosts))
                    try:
                        return (await push_image(tag, runner, level=1)).seconds
                    finally:
                        await runner.close()

                ours.append(asyncio.run(once()))
        finally:
            sshd.stop()
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
    p, o = median(plain), median(ours)
    write_table(
        "image_push",
        "Image transfer: convocate-host image push vs. the plain pipeline",
        ["pipeline", "median seconds", "MB/s (image bytes)", "vs. baseline"],
        [
            [r"docker save \| gzip -1 \| ssh \| docker load (baseline)", f"{p:.2f}",
             f"{size / p / 1e6:.1f}", "1.00x"],
            ["convocate-host image push (sha256 both ends, id check)", f"{o:.2f}", f"{size / o / 1e6:.1f}",
             f"{o / p:.2f}x time"],
        ],
        [
            (f"Image of {size / 1e6:.0f} MB; {REPS} runs each, alternating; target = same host through "
             "a real OpenSSH sshd on 127.0.0.1."),
            ("Ours lands the stream in a temp file and checks SHA-256 before loading, so loading cannot "
             "overlap the transfer; the baseline overlaps them but loads a corrupted stream unchecked."),
        ],
    )
