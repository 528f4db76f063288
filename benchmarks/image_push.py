"""`convocate-host image push` (zstd and gzip) against the plain `docker save | gzip | ssh | docker load`.

The target is a Docker Engine of its own (tests/support/private_dockerd.py) behind a real
OpenSSH sshd on loopback (its sessions reach the engine through ``DOCKER_HOST``); the
sender is the shared engine. Two scenarios, each with the same target state before every
run of every pipeline (rounds alternate the pipelines; the first round is a warm-up):

* **fresh**: the target's engine holds no image: every layer is sent and stored;
* **update**: the target holds the previous release, which shares the base layers with
  the pushed release (busybox, 16 MB random, 32 MB hex text); only the release's own
  top layer (4 MB) differs, as when a new version of the session image is rolled out.

A floor runs beside them: ``docker save | docker load`` straight into the target's engine
(no compression, no SSH), the least any pipeline that ends in ``docker load`` needs.

With ``CONVOCATE_BENCH_BASE=REV`` set, the push of revision REV (exported to a temporary
tree, run in a child process that times its own ``push_image``, as this process times
this tree's) takes its turn in every round too: before and after in the same run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.agent_session import PROTO
from benchmarks.keystroke_ab import export_tree
from benchmarks.report import QUICK, Figures, Row, host_line, median, write_markdown
from hostctl.image_transfer import CODECS, PushResult, push_image
from hostctl.remote import SSHRunner, SSHTarget
from tests.support.private_dockerd import PrivateDockerd
from tests.support.sshd import QUIET_SHELL, Sshd, start_sshd

__all__ = ["figures", "run"]

ROUNDS = 2 if QUICK.on else 5   # measured rounds per scenario, after one warm-up round
BASELINE = "docker save | gzip | ssh | docker load (baseline)"
FLOOR = "docker save | docker load, no compression or SSH (floor)"
SCENARIOS = ("fresh", "update")
# The stages a push reports (PushResult.stage_seconds), as the detail table shows them.
STAGES = ("save", "inventory", "send", "load", "commit")
# Runs one push of the base revision; prints its result as JSON (the base tree's own timing).
_BEFORE_PUSH = """
import asyncio, dataclasses, json, sys, time
from pathlib import Path
from hostctl.image_transfer import push_image
from hostctl.remote import SSHRunner, SSHTarget
host, port, user, key, known, tag, codec = sys.argv[1:]
async def main():
    runner = SSHRunner(SSHTarget(host, int(port), user, Path(key), Path(known)))
    t0 = time.perf_counter()
    try:
        result = await push_image(tag, runner, codec=codec)
    finally:
        await runner.close()
    print(json.dumps({**dataclasses.asdict(result), "seconds": time.perf_counter() - t0}))
asyncio.run(main())
"""


@dataclass
class Scenario:
    """The seconds of each pipeline in one scenario, and what our pushes reported."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    pushes: dict[str, list[PushResult]] = field(default_factory=dict)   # by pipeline name
    wire_bytes: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)   # a base revision's push that failed: why


def _md(text: str) -> str:
    """``text`` for a markdown table cell (its pipes escaped)."""
    return text.replace("|", "\\|")


def _ours(codec: str) -> str:
    return f"convocate-host image push --codec {codec}"


def _before(codec: str, rev: str) -> str:
    return f"{_ours(codec)}, before ({rev})"


def _build(ctx: Path, tag: str, dockerfile: str, files: dict[str, bytes]) -> None:
    ctx.mkdir()
    for name, data in files.items():
        (ctx / name).write_bytes(data)
    (ctx / "Dockerfile").write_text(dockerfile)
    subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True,
                   timeout=300)


def _out(command: str) -> str:
    return subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], capture_output=True, text=True,
                          check=True, timeout=300).stdout


def _text(n: int) -> bytes:
    return os.urandom(n // 2).hex().encode()


def _build_images(root: Path) -> tuple[str, str, str]:
    """Base (48 MB + busybox), and two releases on it with their own 4 MB top layer."""
    name = f"convocate-bench-{uuid.uuid4().hex[:8]}"
    busybox = Path(shutil.which("busybox") or "/bin/busybox").read_bytes()
    _build(root / "base", f"{name}:base", "FROM scratch\nCOPY busybox /bin/busybox\nCOPY random.bin /\n"
           "COPY text.txt /\n", {"busybox": busybox, "random.bin": os.urandom(16 << 20),
                                 "text.txt": _text(32 << 20)})
    for release in ("1", "2"):
        _build(root / release, f"{name}:{release}", f"FROM {name}:base\nCOPY app /app\n",
               {"app": os.urandom(1 << 20) + _text(3 << 20)})
    return f"{name}:base", f"{name}:1", f"{name}:2"


class _Bench:
    def __init__(self, sshd: Sshd, engine: PrivateDockerd, base: Path | None) -> None:
        self.sshd, self.engine, self.base = sshd, engine, base
        self.ssh = (f"ssh -p {sshd.port} -i {sshd.client_key} -o UserKnownHostsFile={sshd.known_hosts} "
                    f"-o StrictHostKeyChecking=yes -o BatchMode=yes {sshd.user}@{sshd.host}")

    async def shell(self, command: str) -> tuple[float, None]:
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec("bash", "-c", f"set -o pipefail; {command}",
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{command} failed: {err.decode(errors='replace')}")
        return time.perf_counter() - t0, None

    async def push(self, tag: str, codec: str) -> tuple[float, PushResult]:
        s = self.sshd
        runner = SSHRunner(SSHTarget(s.host, s.port, s.user, s.client_key, s.known_hosts))
        t0 = time.perf_counter()
        try:
            result = await push_image(tag, runner, codec=codec)
        finally:
            await runner.close()
        return time.perf_counter() - t0, result

    async def push_before(self, tag: str, codec: str) -> tuple[float, PushResult]:
        """The base revision's push, in a child process that imports the base tree."""
        s = self.sshd
        path = os.pathsep.join([str(self.base), str(PROTO)])
        env = {**os.environ, "PYTHONPATH": path, "PYTHONSAFEPATH": "1"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _BEFORE_PUSH, s.host, str(s.port), s.user, str(s.client_key),
            str(s.known_hosts), tag, codec, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env, cwd=self.base)
        out, err = await asyncio.wait_for(proc.communicate(), 600)
        if proc.returncode != 0:
            raise RuntimeError(f"the base revision's push failed: {err.decode(errors='replace')}")
        done = json.loads(out)
        names = {f.name for f in dataclasses.fields(PushResult)}
        # An older revision may not count layers: -1 shows as "-".
        known = {"layers_sent": -1, "layers_skipped": -1, **{k: v for k, v in done.items() if k in names}}
        return done["seconds"], PushResult(**known)

    def reset(self, keep: str | None) -> None:
        """Leave the target's engine with only ``keep`` (or nothing), no dangling layers."""
        ids = self.engine.docker("image", "ls", "-aq", "--no-trunc").stdout.decode().split()
        keep_id = self.engine.docker("image", "inspect", "-f", "{{.Id}}", keep).stdout.decode().strip() \
            if keep else ""
        drop = [i for i in set(ids) if i != keep_id]
        if drop:
            self.engine.docker("rmi", "-f", *drop, check=False, timeout=120)


async def _scenario(bench: _Bench, release: str, keep: str | None) -> Scenario:
    floor = f"docker save {release} | docker -H {bench.engine.url} load"
    baseline = f"docker save {release} | gzip | {bench.ssh} docker load"
    pipelines: dict[str, Callable[[], Awaitable[tuple[float, PushResult | None]]]] = {
        FLOOR: lambda: bench.shell(floor),
        BASELINE: lambda: bench.shell(baseline),
        **{_ours(c): (lambda c=c: bench.push(release, c)) for c in CODECS},  # type: ignore[misc]
    }
    if bench.base is not None:
        pipelines.update({_before(c, _base_rev()): (lambda c=c: bench.push_before(release, c))  # type: ignore[misc]
                          for c in CODECS})
    out = Scenario({name: [] for name in pipelines}, {name: [] for name in pipelines})
    for round_no in range(ROUNDS + 1):
        for name, go in pipelines.items():
            if name in out.failed:
                continue
            await asyncio.to_thread(bench.reset, keep)
            try:
                elapsed, done = await go()
            except RuntimeError as e:
                if bench.base is None or not name.endswith(f"before ({_base_rev()})"):
                    raise
                out.failed[name] = str(e).strip().splitlines()[-1]   # the base revision's; ours go on
                continue
            if round_no == 0:
                continue  # warm-up: page cache, the engine's first load
            out.seconds[name].append(elapsed)
            if done is not None:
                out.pushes[name].append(done)
    out.wire_bytes[BASELINE] = int(await asyncio.to_thread(_out, f"docker save {release} | gzip | wc -c"))
    for name, results in out.pushes.items():
        if results:
            out.wire_bytes[name] = results[-1].compressed_bytes
    return out


def _base_rev() -> str:
    return os.environ.get("CONVOCATE_BENCH_BASE", "")


async def measure() -> tuple[dict[str, Scenario], int, int]:
    """Run both scenarios; return them with the release's size and layer count."""
    with tempfile.TemporaryDirectory(prefix="cvbi-") as d:
        root = Path(d)
        base, previous, release = await asyncio.to_thread(_build_images, root)
        before: Path | None = None
        if _base_rev():
            before = root / "before"
            before.mkdir()
            await asyncio.to_thread(export_tree, _base_rev(), before, "hostctl")
        engine = PrivateDockerd()
        sshd: Sshd | None = None
        try:
            await asyncio.to_thread(engine.start)
            env = {"DOCKER_HOST": engine.url, **QUIET_SHELL}
            sshd = await asyncio.to_thread(start_sshd, root / "sshd", env=env)
            bench = _Bench(sshd, engine, before)
            fmt = "'{{.Size}} {{len .RootFS.Layers}}'"
            size, layers = map(int, (await asyncio.to_thread(
                _out, f"docker image inspect -f {fmt} {release}")).split())
            fresh = await _scenario(bench, release, None)
            await bench.shell(f"docker save {previous} | docker -H {engine.url} load")
            update = await _scenario(bench, release, previous)
        finally:
            if sshd is not None:
                sshd.stop()
            await asyncio.to_thread(engine.close)
            await asyncio.to_thread(_out, f"docker rmi {release} {previous} {base} || true")
    return {"fresh": fresh, "update": update}, size, layers


def _rows(results: dict[str, Scenario], size: int, layers: int) -> list[Row]:
    rows = []
    for scenario, sc in results.items():
        base = median(sc.seconds[BASELINE])
        floor = median(sc.seconds[FLOOR])
        for codec in CODECS:
            name = _ours(codec)
            ours = median(sc.seconds[name])
            pushes = sc.pushes[name]
            sent = median([p.layers_sent for p in pushes])
            goal = 2.0 if codec == "zstd" else 1.0
            speed = base / ours
            wire, base_wire = sc.wire_bytes[name] / 1e6, sc.wire_bytes[BASELINE] / 1e6
            st = {k: median([p.stage_seconds[k] for p in pushes]) for k in STAGES}
            before = sc.seconds.get(_before(codec, _base_rev()))
            why = (f"{speed:.2f}x; {sent:.0f} of {layers} layers sent, {wire:.1f} MB on the wire (baseline "
                   f"{base_wire:.1f} MB); ours {ours:.2f} s: the target's image list in at "
                   f"{st['inventory']:.2f} s, docker save read whole at {st['save']:.2f} s, the last byte "
                   "sent at "
                   f"{st['inventory'] + st['send']:.2f} s, then the load {st['load']:.2f} s and the tag "
                   f"{st['commit']:.2f} s; docker save | docker load alone {floor:.2f} s")
            if before:
                why += f"; before ({_base_rev()}, same run) {base / median(before):.2f}x"
            if speed < goal:
                why += (f": that floor is {base / floor:.2f}x the baseline, so {goal:.1f}x is out of reach "
                        "of any pipeline ending in docker load" if base / floor < goal else
                        f": {ours - floor:.2f} s above that floor: compression, hashing, SSH and the "
                        f"decompressor's CPU on {os.cpu_count()} cores shared with docker save, docker load "
                        "and other work")
            figure = f"image push, {codec}, {scenario} target ({size / 1e6:.0f} MB image)"
            rows.append(Row(figure, _md(BASELINE),
                            size / ours / 1e6, size / base / 1e6, "MB/s", f"≥ {goal:.1f}x",
                            lambda x, g=goal: x >= g, _md(why), higher_is_better=True))  # type: ignore[misc]
    return rows


def _stage(pushes: list[PushResult], key: str) -> str:
    """The median of one stage over ``pushes`` (a base revision may not report it: "-")."""
    values = [p.stage_seconds[key] for p in pushes if key in p.stage_seconds]
    return f"{median(values):.2f}" if values else "-"


def _detail(results: dict[str, Scenario], size: int, layers: int) -> list[str]:
    lines = [
        "# Image transfer: convocate-host image push (zstd, gzip) vs. the plain pipeline", "",
        host_line(), "",
        ("| scenario | pipeline | median s | MB/s (image bytes) | MB on the wire | layers sent | "
         f"{' / '.join(STAGES)} s | speed vs. baseline |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for scenario, sc in results.items():
        base = median(sc.seconds[BASELINE])
        for name, secs in sc.seconds.items():
            if not secs:
                lines.append(f"| {scenario} | {_md(name)} | failed: {_md(sc.failed.get(name, '?'))} "
                             "| | | | | |")
                continue
            m = median(secs)
            pushes = sc.pushes.get(name, [])
            stages = " / ".join(_stage(pushes, k) for k in STAGES) if pushes else "-"
            sent = (f"{layers} of {layers}" if not pushes else "-" if pushes[-1].layers_sent < 0 else
                    f"{pushes[-1].layers_sent} of {layers}")
            wire = sc.wire_bytes.get(name)
            shown = _md(name)
            lines.append(f"| {scenario} | {shown} | {m:.2f} | {size / m / 1e6:.1f} | "
                         f"{'-' if wire is None else f'{wire / 1e6:.1f}'} | {sent} | {stages} | "
                         f"{base / m:.2f}x |")
    lines += [
        "",
        (f"- Release image of {size / 1e6:.0f} MB in {layers} layers; {ROUNDS} measured rounds per scenario "
         "after one warm-up round; in each round every pipeline runs once, in turn, each after the target "
         "was reset to the scenario's state (fresh: no image; update: the previous release only)."),
        ("- Target: a private dockerd (own data root, overlay2) behind OpenSSH sshd on 127.0.0.1; sender: "
         "the shared engine, on the same cores. The sshd's sessions set SHLVL=1 so that bash skips root's "
         "~/.bashrc (here it runs pyenv init, 0.2-1 s per exec under load; not so on a provisioned host), "
         "for the baseline's one exec and the push's three alike."),
        ("- push: the target lists its images' layers (inventory: the Docker API through one python3), the "
         "sender streams `docker save`, untagged and without the layers whose chain the target has, through "
         f"`{' '.join(CODECS['zstd'].compress(None))}` or `{' '.join(CODECS['gzip'].compress(None))}` and "
         "SHA-256 into one exec that decompresses into `docker load` while sha256sum hashes the same bytes; "
         "tag and pointer only after both digests and the image id match (commit). Stages: save = from the "
         "push's start until docker save was read whole; inventory = from the start until the target's "
         "list was in (layers wait for it, the rest not); send = from then until the last compressed byte "
         "went to SSH; load = from that byte until the load step reported; commit = tag and pointer."),
        ("- The baseline (gzip -6, OpenSSH client) loads whatever arrives, unchecked, and sends every layer "
         "in both scenarios; docker load then skips storing the layers the target has."),
        "",
    ]
    return lines


async def figures() -> Figures:
    """Both scenarios, as summary rows; also writes results/image_push.md."""
    results, size, layers = await measure()
    write_markdown("image_push", _detail(results, size, layers))
    notes = [(f"Image push: {ROUNDS} rounds per scenario (fresh target; update = the target has the "
              "previous release), stages and bytes per pipeline in image_push.md."), ""]
    return Figures(_rows(results, size, layers), notes)


def run() -> None:
    """`python -m benchmarks image_push`: measure and write benchmarks/results/image_push.md."""
    asyncio.run(figures())
