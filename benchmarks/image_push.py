"""`convocate-host image push` (zstd and gzip) against the plain `docker save | gzip | ssh | docker load`.

All three run in the same session, alternating, against the same real OpenSSH sshd on
loopback and the same Docker Engine, with the same ~50 MB image (random + hex text, so
the compressor has work and some of it does not compress).
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
from hostctl.image_transfer import CODECS, PushResult, push_image
from hostctl.remote import SSHRunner, SSHTarget
from tests.support.sshd import Sshd, start_sshd

__all__ = ["run"]

REPS = 5


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


def _push(sshd: Sshd, tag: str, codec: str) -> PushResult:
    async def once() -> PushResult:
        runner = SSHRunner(SSHTarget(sshd.host, sshd.port, sshd.user, sshd.client_key, sshd.known_hosts))
        try:
            return await push_image(tag, runner, codec=codec)
        finally:
            await runner.close()

    return asyncio.run(once())


def run() -> None:
    """Run the baseline and both codecs REPS times each; write benchmarks/results/image_push.md."""
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
            ours: dict[str, list[PushResult]] = {c: [] for c in CODECS}
            for _ in range(REPS):
                t0 = time.perf_counter()
                subprocess.run(f"set -o pipefail; docker save {tag} | gzip | {ssh} docker load", shell=True,
                               executable="/bin/bash", check=True, capture_output=True)
                plain.append(time.perf_counter() - t0)
                for codec in CODECS:
                    ours[codec].append(_push(sshd, tag, codec))
            loadavg = os.getloadavg()[0]
            plain_bytes = int(subprocess.run(f"docker save {tag} | gzip | wc -c", shell=True, check=True,
                                             capture_output=True, text=True).stdout)
        finally:
            sshd.stop()
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
    p = median(plain)
    rows = [[r"docker save \| gzip \| ssh \| docker load (baseline)", f"{p:.2f}", f"{size / p / 1e6:.1f}",
             f"{plain_bytes / 1e6:.1f}", "-", "1.00x"]]
    for codec, results in ours.items():
        o = median([r.seconds for r in results])
        send = median([r.stage_seconds["send"] for r in results])
        load = median([r.stage_seconds["load"] for r in results])
        level = CODECS[codec].compress(None)
        rows.append([f"convocate-host image push --codec {codec} ({' '.join(level[1:-1])})", f"{o:.2f}",
                     f"{size / o / 1e6:.1f}", f"{results[0].compressed_bytes / 1e6:.1f}",
                     f"{send:.2f} / {load:.2f}", f"{p / o:.2f}x"])
    write_table(
        "image_push",
        "Image transfer: convocate-host image push (zstd, gzip) vs. the plain pipeline",
        ["pipeline", "median seconds", "MB/s (image bytes)", "MB on the wire", "send / load s",
         "speed vs. baseline"],
        rows,
        [
            (f"Image of {size / 1e6:.0f} MB; {REPS} runs of each, alternating, in one session; target = "
             f"this host through a real OpenSSH sshd on 127.0.0.1, same Docker Engine; {os.cpu_count()} "
             "cores shared with other work."),
            ("push = save + compress + SHA-256 both ends into a temp file on the target (send), then "
             "decompress + docker load + image id check (load); the baseline overlaps loading with the "
             "transfer but loads a corrupted stream unchecked."),
            "The image is already in the target engine, so docker load stores no new layers in any row.",
            (f"1-minute load average at the end of the runs: {loadavg:.1f} on {os.cpu_count()} cores; the "
             "ratios between rows are the figure to read, not the absolute rates."),
        ],
    )
