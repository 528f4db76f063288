"""The console's attach goes on the agent's attach channel; the status service refuses that channel."""

from __future__ import annotations

from pathlib import Path

import asyncssh
import pytest

from common.attach_wire import CHANNEL_NAME
from common.client.attach_channel_call import AttachChannelCall
from common.domain import AttachMode, AttachStarted
from common.tunnel import Tunnel
from tests.integration.status.conftest import Fleet
from tests.support.status_stack import StatusStack
from tests.support.waiting import assert_eventually


class Quiet(asyncssh.SSHUNIXSession[bytes]):
    """A channel session that does nothing (the open is what is tested)."""


async def test_the_router_attaches_on_the_channel(fleet: Fleet) -> None:
    """``Router.attach_call`` (what the console's relay uses) opens the agent's attach channel."""
    router = fleet.router
    await assert_eventually(lambda: all(a.reachable for a in router.agents()))
    agent_id = "agent-a"
    row = await router.create(agent_id, "chan", 0, "tcp", "", start=True)
    call = router.attach_call(row.id)
    assert isinstance(call, AttachChannelCall)
    try:
        await call.start(row.id, rows=24, cols=80, term="xterm", mode=AttachMode.DRIVE)
        assert call.on_channel
        started = await call.read()
        assert isinstance(started, AttachStarted)
        assert started.session_id == row.id
        assert (await router.clients[agent_id].get(row.id)).viewer_count == 1
    finally:
        call.cancel()       # the fake runtime's terminal never ends by itself: the channel's close does

    async def released() -> bool:
        return (await router.clients[agent_id].get(row.id)).viewer_count == 0

    await assert_eventually(released, timeout=10)
    log = fleet.agents[agent_id].log_text()
    assert "attach channel opened" in log
    assert "attach channel closed" in log


async def test_the_status_service_refuses_the_attach_channel(status: StatusStack, short_tmp: Path) -> None:
    """Only the agent answers the virtual name: the status service refuses it like any other path."""
    async with Tunnel(status.agent_tunnel("agent-x", short_tmp / "agent-x")) as t:
        await t.wait_up(10)
        with pytest.raises(asyncssh.ChannelOpenError) as info:
            await t.open_channel(Quiet, CHANNEL_NAME)
        assert info.value.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED
        assert "only the convocate gRPC socket" in info.value.reason
