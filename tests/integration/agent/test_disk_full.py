"""Disk full is safe: a real agent whose sessions root is a 2 MiB tmpfs the test fills up.

Create, clone and update refuse with one line that says "disk full" and leave nothing
half-written; every existing record stays readable; reads and attaches keep working.
Two ways to the refusal: the up-front free-space check (``write_min_free_bytes``), and
ENOSPC during the write itself (the check set to 0), where the temp file goes away.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from convocate.v1 import sessions_pb2

from tests.integration.agent.conftest import HOST, open_client
from tests.support.agent_proc import AgentProcess
from tests.support.attach_stream import AttachStream
from tests.support.env import require_root, require_tool
from tests.support.images import offline_image  # noqa: F401 - the session fixture

CHUNK = 64 * 1024


@contextlib.contextmanager
def small_fs(path: Path, size: str = "2m") -> Iterator[Path]:
    """A sized tmpfs mounted at ``path`` (unmounted afterwards, also after a failure)."""
    require_tool("mount")
    require_root("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                   check=True, timeout=10)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, timeout=10)


def fill(root: Path) -> None:
    """Write a filler file until the filesystem says ENOSPC (bounded by its size)."""
    st = os.statvfs(root)
    budget = st.f_blocks * st.f_frsize // CHUNK + 16
    with (root / "filler").open("wb") as f:
        for _ in range(budget):
            try:
                f.write(b"\0" * CHUNK)
                f.flush()
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
        else:
            raise AssertionError("the filesystem never filled up")
    for _ in range(16):  # the last partial chunk: fill the remaining blocks too
        try:
            with (root / "filler").open("ab") as f:
                f.write(b"\0" * 4096)
        except OSError:
            break
    assert os.statvfs(root).f_bavail * os.statvfs(root).f_frsize < 64 * 1024


def _entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


@pytest.mark.parametrize("min_free", [256 * 1024, 0], ids=["checked-up-front", "enospc-during-write"])
async def test_full_disk_refuses_writes_in_one_line_and_keeps_serving(
    offline_image: str, min_free: int,  # noqa: F811 - fixture injection
) -> None:
    """Fill the sessions root: writes refused, nothing half-written, reads and attaches work."""
    with tempfile.TemporaryDirectory(prefix="cvdf-") as d:
        root = Path(d)
        with small_fs(root / "home") as home:
            agent = AgentProcess(root, host=HOST, image=offline_image,
                                 config={"write_min_free_bytes": min_free})
            agent.start()
            client = await open_client(agent)
            try:
                running = await client.create("keep", start=True)
                idle = await client.create("idle")
                fill(home)
                before = _entries(home)
                clone = sessions_pb2.CloneSessionRequest(source_id=idle.id, name="copy")
                update = sessions_pb2.UpdateSessionRequest(id=idle.id, name="renamed")
                for attempt in (
                    client.create("new"),
                    client.sessions.CloneSession(clone, timeout=20),
                    client.sessions.UpdateSession(update, timeout=20),
                ):
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await attempt
                    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    message = refused.value.details() or ""
                    assert message.startswith("disk full on this agent"), message
                    assert "\n" not in message
                    assert ("KiB free" in message) == bool(min_free)  # which of the two guards said it
                assert _entries(home) == before    # no staging directory, no temp file left
                assert not list(home.rglob("*.tmp"))
                listed = await client.sessions.ListSessions(sessions_pb2.ListSessionsRequest(), timeout=20)
                assert sorted(s.name for s in listed.sessions) == ["idle", "keep"]
                assert (await client.get(idle.id)).name == "idle"
                assert (await client.get(running.id)).running
                view = AttachStream(client.attach, running.id, rows=24, cols=80)
                try:
                    await view.wait_started()
                    view.type("echo FULL-$((40+2))\r")
                    await view.wait_for("FULL-42")
                finally:
                    await view.close()
            finally:
                await client.tunnel.close()
                agent.close()
