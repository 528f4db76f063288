"""The needs-input webhook against real HTTP receivers on 127.0.0.1, fed by a real status service.

Events go into the service's view exactly as a Publish stream puts them there
(``view.apply_event``); the webhook watches the view like any local client.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from convocate.v1 import sessions_pb2, status_pb2

from common.domain import Activity, ActivityState, NeedsInputReason, Session
from common.errors import InvalidArgumentError
from common.proto_convert import session_to_proto
from shell.status.server import StatusServer
from shell.status.view import StatusView
from shell.status.webhook import QUEUE_SIZE, InputWebhook, TokenBucket, Transition, WebhookSettings, render
from tests.support.status_stack import status_config
from tests.support.waiting import assert_eventually

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers ``status``."""

    status: int = 200
    posts: list[str] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append(await request.text())
        return web.Response(status=self.status, text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A receiver on a free loopback port; stopped afterwards."""
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rec.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


def _event(session_id: str, state: ActivityState, since: datetime | None, name: str = "asks",
           agent_id: str = "agent-a") -> status_pb2.Event:
    reason = NeedsInputReason.PERMISSION if state is ActivityState.NEEDS_INPUT else NeedsInputReason.NONE
    session = Session(id=session_id, name=name, agent_id=agent_id, running=True,
                      activity=Activity(state=state, reason=reason, since=since))
    return status_pb2.Event(type="session.activity", agent_id=agent_id, session_id=session_id,
                            session=session_to_proto(session))


def _fast(url: str, **kw: object) -> WebhookSettings:
    return replace(WebhookSettings(url=url, timeout=2.0, attempts=3, backoff_initial=0.05, backoff_max=0.2),
                   **kw)  # type: ignore[arg-type]


async def test_one_post_per_transition_through_the_status_service(receiver: Receiver, tmp_path: Path) -> None:
    """working -> needs input -> (same again) -> working -> needs input: exactly two posts, with name,
    agent and wait; another session's wait is its own post."""
    config = replace(status_config(tmp_path / "s"), webhook_url=receiver.url, registry_dir=None)
    server = StatusServer(config)
    await server.start()
    try:
        assert server.webhook is not None
        view = server.view
        sid, other = str(uuid.uuid4()), str(uuid.uuid4())
        since = datetime.now(UTC) - timedelta(minutes=3)
        view.apply_event(_event(sid, ActivityState.WORKING, since - timedelta(minutes=1)))
        view.apply_event(_event(sid, ActivityState.NEEDS_INPUT, since))
        view.apply_event(_event(sid, ActivityState.NEEDS_INPUT, since))      # re-sent: the same wait
        await assert_eventually(lambda: len(receiver.posts) == 1)
        first = json.loads(receiver.posts[0])
        assert first["text"] == 'convocate: session "asks" on agent-a needs input (permission), waiting 3m'
        view.apply_event(_event(sid, ActivityState.WORKING, datetime.now(UTC)))
        view.apply_event(_event(sid, ActivityState.NEEDS_INPUT, datetime.now(UTC)))
        view.apply_event(_event(other, ActivityState.NEEDS_INPUT, datetime.now(UTC), name='quo"ted\nname',
                                agent_id="agent-b"))
        await assert_eventually(lambda: len(receiver.posts) == 3)
        bodies = [json.loads(p)["text"] for p in receiver.posts]       # still valid JSON
        assert any('"quo"ted\\nname" on agent-b' in b for b in bodies)  # the newline shown escaped
        await asyncio.sleep(0)
        assert server.webhook.posted == 3
        assert server.webhook.failed == server.webhook.dropped == 0
    finally:
        await server.stop(grace=0)
    assert len(receiver.posts) == 3


async def test_a_failing_receiver_never_blocks_the_service(receiver: Receiver) -> None:
    """Every post fails: retried with backoff up to the limit, logged, counted; events keep flowing."""
    receiver.status = 500
    view = StatusView(heartbeat_budget=10.0)
    hook = InputWebhook(_fast(receiver.url), view)
    await hook.start()
    try:
        watcher = view.subscribe()
        began = time.monotonic()
        for i in range(3):
            view.apply_event(_event(str(uuid.uuid4()), ActivityState.NEEDS_INPUT, T0 + timedelta(seconds=i)))
        assert time.monotonic() - began < 0.5        # apply_event never waits on the receiver
        await assert_eventually(lambda: hook.failed == 3, timeout=15)
        assert len(receiver.posts) == 9               # 3 transitions x 3 attempts
        assert hook.posted == 0
        # The view and its other watchers carried on the whole time.
        first = await asyncio.wait_for(watcher.next(), 2)
        assert first.WhichOneof("update") == "snapshot"
        view.unsubscribe(watcher)
    finally:
        await hook.close()


async def test_a_dead_receiver_and_a_flood_are_bounded() -> None:
    """Nobody listens and thousands of sessions start waiting: the queue drops and counts, nothing blocks."""
    view = StatusView(heartbeat_budget=10.0)
    hook = InputWebhook(_fast("http://127.0.0.1:9/hook", attempts=1, timeout=0.5), view)  # port 9: refused
    await hook.start()
    try:
        began = time.monotonic()
        flood = 2 * QUEUE_SIZE
        for i in range(flood):
            hook.offer(Transition("agent-a", str(uuid.uuid4()), f"s{i}", since=T0), "needs_input")
        assert time.monotonic() - began < 1.0
        assert hook.dropped >= flood - QUEUE_SIZE - 1
        await assert_eventually(lambda: hook.failed >= 1, timeout=10)
    finally:
        await hook.close()


def test_render_and_settings() -> None:
    """Placeholders are filled (JSON-escaped for JSON); a bad URL is refused with the setting's name."""
    t = Transition("agent-a", "sid", 'a "name"', reason="question", since=T0)
    body = render('{"n": "{name}", "w": "{wait}", "s": {wait_seconds}}', t, json_values=True,
                  now=T0 + timedelta(hours=2, minutes=5))
    assert json.loads(body) == {"n": 'a "name"', "w": "2h", "s": 7500}
    assert render("{name} waits", t, json_values=False, now=T0) == 'a "name" waits'
    with pytest.raises(InvalidArgumentError, match="webhook_url"):
        WebhookSettings(url="file:///etc/passwd").check()
    with pytest.raises(InvalidArgumentError, match="webhook_per_minute"):
        WebhookSettings(url="http://127.0.0.1/", per_minute=0).check()
    assert sessions_pb2.ACTIVITY_STATE_NEEDS_INPUT  # the wire enum the events carry


def test_rate_limit_bucket() -> None:
    """30 a minute: a burst of 30, then one every 2 s."""
    now = [0.0]
    bucket = TokenBucket(30, lambda: now[0])
    for _ in range(30):
        assert bucket.wait_time() == 0
        bucket.take()
    assert bucket.wait_time() == pytest.approx(2.0)
    now[0] += 2.0
    assert bucket.wait_time() == 0
