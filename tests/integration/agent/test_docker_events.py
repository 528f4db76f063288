"""The Docker events follower resubscribes after the stream ends, with ``since`` and a resync."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from agent.docker_runtime import DockerRuntime
from agent.runtime import ContainerEvent

SID = "5a0ef8a4-0c61-4f0e-9d3c-2f1d6b1d1a11"


def _event(action: str, nano: int) -> bytes:
    return json.dumps({
        "Type": "container", "Action": action, "time": nano // 10**9, "timeNano": nano,
        "Actor": {"ID": "c1", "Attributes": {"convocate.session": SID, "convocate.agent": "a1"}},
    }).encode() + b"\n"


class FakeEngine:
    """Just enough of the Engine API: /version and an /events stream that drops once."""

    def __init__(self) -> None:
        self.subscriptions: list[dict[str, str]] = []
        self.done = asyncio.Event()

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"ApiVersion": "1.41", "Version": "20.10"})

    async def events(self, request: web.Request) -> web.StreamResponse:
        self.subscriptions.append(dict(request.query))
        resp = web.StreamResponse()
        resp.content_type = "application/json"
        await resp.prepare(request)
        if len(self.subscriptions) == 1:
            await resp.write(_event("die", 1_700_000_000_000_000_000))
            return resp  # the stream ends: the follower must come back
        await resp.write(_event("start", 1_700_000_005_000_000_000))
        await asyncio.wait_for(self.done.wait(), 10)
        return resp


@pytest.fixture
async def engine() -> AsyncIterator[tuple[FakeEngine, str]]:
    """A fake Engine API on a UNIX socket."""
    fake = FakeEngine()
    app = web.Application()
    app.router.add_get("/version", fake.version)
    app.router.add_get("/v1.41/version", fake.version)
    app.router.add_get("/v1.41/events", fake.events)
    runner = web.AppRunner(app)
    await runner.setup()
    with tempfile.TemporaryDirectory(prefix="cvd-") as d:
        sock = Path(d) / "docker.sock"
        site = web.UnixSite(runner, str(sock))
        await site.start()
        try:
            yield fake, f"unix://{sock}"
        finally:
            fake.done.set()
            await runner.cleanup()


async def test_events_resubscribe_with_since_and_resync(engine: tuple[FakeEngine, str]) -> None:
    """After the stream ends (``lost``), the follower resubscribes from the last event time and resyncs."""
    fake, url = engine
    runtime = DockerRuntime(url)
    got: list[ContainerEvent] = []

    async def follow() -> None:
        async for ev in runtime.events("a1"):
            got.append(ev)
            if len(got) == 5:
                return

    try:
        await asyncio.wait_for(follow(), 15)
    finally:
        await runtime.close()
    expected = [("resync", ""), ("die", SID), ("lost", ""), ("resync", ""), ("start", SID)]
    assert [(e.action, e.session_id) for e in got] == expected
    assert got[1].container_id == "c1"
    filters = json.loads(fake.subscriptions[0]["filters"])
    assert filters["label"] == ["convocate.agent=a1"]
    assert float(fake.subscriptions[1]["since"]) >= 1_700_000_000 - 1
