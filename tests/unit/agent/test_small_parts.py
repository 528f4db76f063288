"""Agent id, image prune policy, slice rendering, systemd notify and the event hub."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.event_hub import EventHub
from agent.events import AgentEvent, EventType
from agent.identity import AGENT_ID_ALPHABET, load_or_create_agent_id
from agent.images import images_to_prune
from agent.install import render_slice, slice_values
from agent.sd_notify import notify, watchdog_interval
from agent.server import check_uid
from common.errors import PermissionDeniedError


def test_agent_id_is_minted_once(tmp_path: Path) -> None:
    """The id is 12 characters of the unambiguous alphabet and stays the same on later reads."""
    path = tmp_path / "etc" / "agent-id"
    first = load_or_create_agent_id(path)
    assert len(first) == 12
    assert set(first) <= set(AGENT_ID_ALPHABET)
    assert load_or_create_agent_id(path) == first
    path.write_text("  \n")
    assert load_or_create_agent_id(path) != first  # empty file: regenerated


def test_prune_keeps_referenced_and_current_images() -> None:
    """Tags used by a container (by name or id) and the current pointer are kept."""
    tags = {"convocate:v1": "sha256:a", "convocate:v2": "sha256:b", "convocate:v3": "sha256:c",
            "convocate:v4": "sha256:d", "<none>:<none>": "sha256:e"}
    assert images_to_prune(tags, {"convocate:v1", "sha256:c"}, "convocate:v2") == ["convocate:v4"]


def test_slice_is_90_percent_of_the_host() -> None:
    """CPUQuota = nproc x 90 %, MemoryMax = MemTotal x 90 % (the v2.0.0 example)."""
    cpu, mem = slice_values(8, "MemFree: 1 kB\nMemTotal:       16292456 kB\n")
    assert (cpu, mem) == (720, 15015127449)
    text = render_slice("CPUQuota=@CPU_QUOTA@%\nMemoryMax=@MEMORY_MAX@\n", cpu, mem)
    assert text == "CPUQuota=720%\nMemoryMax=15015127449\n"


def test_systemd_notify_reaches_the_socket(tmp_path: Path) -> None:
    """READY=1 arrives as one datagram on $NOTIFY_SOCKET; without it nothing is sent."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        assert notify("READY=1", {"NOTIFY_SOCKET": str(path)})
        assert server.recv(100) == b"READY=1"
    assert not notify("READY=1", {})
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval({}) is None


def test_uid_check_names_the_expected_uid() -> None:
    """Serving under the wrong uid is refused with the expected uid in the message; -1 disables."""
    with pytest.raises(PermissionDeniedError, match=r'"claude" \(uid 1337\), currently uid 0'):
        check_uid(AgentConfig(expected_uid=1337), uid=0)
    check_uid(AgentConfig(expected_uid=-1), uid=0)


async def test_event_hub_never_blocks_and_marks_slow_watchers() -> None:
    """A full watcher queue marks the watcher as fallen behind; sinks still get every event."""
    got: list[str] = []

    class Sink:
        def publish(self, event: AgentEvent) -> None:
            got.append(event.type)

    class Broken:
        def publish(self, event: AgentEvent) -> None:
            raise RuntimeError("boom")

    hub = EventHub(queue_size=2)
    hub.add_sink(Broken())
    hub.add_sink(Sink())
    w = hub.watch()
    for _ in range(3):
        hub.publish(AgentEvent(EventType.SESSION_CREATED, session_id="x"))
    assert got == [EventType.SESSION_CREATED] * 3
    assert w.fell_behind
    assert w.dropped == 1
    hub.unwatch(w)
    assert hub.watcher_count == 0
    await asyncio.sleep(0)


async def test_event_hub_close_ends_every_watcher_even_a_full_one() -> None:
    """Closing (the agent stopping) queues the end for each watcher, a full one and a later one too."""
    hub = EventHub(queue_size=2)
    full, idle = hub.watch(), hub.watch()
    for _ in range(2):
        hub.publish(AgentEvent(EventType.SESSION_CREATED, session_id="x"))
    for _ in range(2):
        idle.queue.get_nowait()        # read: its queue is empty, the other one's is full
    hub.close()
    hub.publish(AgentEvent(EventType.SESSION_DELETED, session_id="x"))   # after close: not queued
    assert [e.type if e else None for e in (full.queue.get_nowait(), full.queue.get_nowait())] == [
        EventType.SESSION_CREATED, None]
    assert idle.queue.get_nowait() is None
    assert idle.queue.empty()
    assert hub.watch().queue.get_nowait() is None
