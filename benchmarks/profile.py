"""Sampling profiles with py-spy (the ``bench`` dependency group), summarised as markdown.

py-spy attaches to running processes without changing them (``--nonblocking``: the
target is never paused), so the product's code carries no timing or logging of its own.
Only samples of threads that are running count (py-spy leaves idle waits out), so the
tables say where the CPU time of the measured work goes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["available", "inclusive", "sample", "summarise"]

RATE = 1000   # samples per second
TOP = 12
_LAYERS = (
    ("asyncssh", "asyncssh (SSH packets, channels)"),
    ("cryptography", "cryptography (cipher)"),
    ("grpc", "grpc Python/Cython"),
    ("google/protobuf", "protobuf"),
    ("aiodocker", "aiodocker"),
    ("aiohttp", "aiohttp (Docker API client)"),
    ("asyncio", "asyncio event loop"),
    ("selectors", "selectors (epoll)"),
    ("/agent/", "convocate agent"),
    ("/common/", "convocate common"),
    ("/shell/", "convocate shell"),
    ("/benchmarks/", "benchmark harness"),
    ("structlog", "logging"),
    ("logging", "logging"),
)


def _py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def available() -> bool:
    """True when py-spy is installed (``--group bench``)."""
    return _py_spy() is not None


def _layer(frame: str) -> str:
    for needle, name in _LAYERS:
        if needle in frame:
            return name
    return "other (stdlib, C extensions)"


def summarise(raw: Path) -> tuple[int, Counter[str], Counter[str]]:
    """Total samples, self samples per leaf function, self samples per layer."""
    leaves: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    total = 0
    if not raw.exists():
        return 0, leaves, layers
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        leaf = stack.rsplit(";", 1)[-1]
        total += n
        leaves[leaf] += n
        layers[_layer(leaf)] += n
    return total, leaves, layers


def inclusive(raw: Path, frames: Sequence[tuple[str, str]]) -> tuple[int, Counter[str]]:
    """Total samples, and per label of ``frames`` ((needle, label) pairs) the samples whose stack
    holds a frame containing the needle (each sample counted once per label)."""
    shares: Counter[str] = Counter()
    total = 0
    if not raw.exists():
        return 0, shares
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        for label in {label for needle, label in frames if needle in stack}:
            shares[label] += int(count)
    return total, shares


async def sample(targets: dict[str, int | None], work: Awaitable[Any], out: Path, what: str,
                 frames: Sequence[tuple[str, str]] = ()) -> list[str]:
    """Run py-spy on each target (None: this process) while ``work`` runs; markdown lines.

    ``frames``: (needle, label) pairs whose inclusive share (samples with such a frame
    anywhere in the stack) is reported per target as well, in this order.
    """
    spy = _py_spy()
    if spy is None:
        await work
        return ["py-spy is not installed (`--group bench`): no profile."]
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    for name, pid in targets.items():
        raw = out / f"{len(procs)}.txt"
        cmd = [spy, "record", "--pid", str(pid or os.getpid()), "--rate", str(RATE), "--format", "raw",
               "--nonblocking", "--output", str(raw)]
        spawned = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
        procs[name] = (spawned, raw)
    await asyncio.sleep(1.0)   # py-spy attaches asynchronously; nothing to wait on but time
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await work
    seconds = loop.time() - t0
    for proc, _ in procs.values():
        proc.send_signal(signal.SIGINT)
    for proc, _ in procs.values():
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    lines = [f"## Profile: {what} ({seconds:.1f} s, py-spy at {RATE} Hz, running threads only)", ""]
    for name, (_, raw) in procs.items():
        total, leaves, layers = summarise(raw)
        if not total:
            lines += [f"{name}: no samples (py-spy could not attach?)", ""]
            continue
        lines += [f"### {name}: {total} samples ≈ {total / RATE / seconds * 100:.0f} % of one core", "",
                  "| layer (leaf frame) | share |", "|---|---|"]
        lines += [f"| {layer} | {n / total * 100:.1f} % |" for layer, n in layers.most_common()]
        lines += ["", "| hottest leaf functions | share |", "|---|---|"]
        lines += [f"| `{leaf.replace('|', '/')}` | {n / total * 100:.1f} % |"
                  for leaf, n in leaves.most_common(TOP)]
        lines.append("")
        if frames:
            _, shares = inclusive(raw, frames)
            lines += ["| inclusive: samples inside | share |", "|---|---|"]
            lines += [f"| {label} | {shares[label] / total * 100:.1f} % |"
                      for label in dict.fromkeys(label for _, label in frames)]
            lines.append("")
    return lines
