"""`convocate status serve --config FILE` as a real process: serves, logs events, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from convocate.v1 import status_pb2, status_pb2_grpc

from common.grpc_options import CLIENT_OPTIONS
from tests.support.fleet import prepare_agent
from tests.support.status_stack import status_config


async def _wait_view(
    socket: Path, pred: Callable[[status_pb2.View], bool], timeout: float
) -> status_pb2.View:
    """GetView on ``socket`` until ``pred`` holds (connection errors count as not yet)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            async with grpc.aio.insecure_channel(f"unix:{socket}", options=CLIENT_OPTIONS) as ch:
                view = await status_pb2_grpc.StatusStub(ch).GetView(status_pb2.GetViewRequest(), timeout=2)
            if pred(view):
                return view
            last = view
        except grpc.RpcError as e:
            last = e
        await asyncio.sleep(0.1)
    raise AssertionError(f"not true within {timeout} s: {last}")


async def test_status_process_serves_agents_logs_json_and_stops_on_sigterm(short_tmp: Path) -> None:
    """The service process takes an agent's stream, pings it, logs events as JSON, exits 0 on SIGTERM."""
    config = status_config(short_tmp / "shell", heartbeat_interval=0.5)
    toml = short_tmp / "convocate.toml"
    toml.write_text(
        "[status]\n"
        f'host = "{config.host}"\nport = {config.port}\nhost_key = "{config.host_key}"\n'
        f'authorized_keys = "{config.authorized_keys}"\nsocket = "{config.socket}"\n'
        "heartbeat_interval = 0.5\ngrace = 1.0\n"
        f'registry_dir = "{short_tmp / "registry"}"\n'
    )
    agent = prepare_agent(short_tmp / "agents", short_tmp / "registry", 0, config)
    log_path = short_tmp / "status.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shell.main", "status", "serve", "--config", str(toml)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CONVOCATE_LOG_LEVEL": "INFO"},
        )
    try:
        await _wait_view(config.socket, lambda _v: True, timeout=15)
        await agent.astart()
        # Both directions known without any console: the service pings the registered agent itself.
        view = await _wait_view(
            config.socket,
            lambda v: bool(v.agents) and v.agents[0].connected and v.agents[0].control_link.up,
            10,
        )
        health = view.agents[0]
        assert (health.agent_id, health.connected, health.hostname) == ("agent-a", True, socket.gethostname())
        assert health.notices == []
        agent.kill()
        view = await _wait_view(
            config.socket, lambda v: any("unreachable both ways" in n for n in v.agents[0].notices), 5
        )
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        print(f"status service stopped {time.monotonic() - t0:.3f} s after SIGTERM")
    finally:
        agent.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    events = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    started = [e for e in events if e.get("event") == "status event" and e.get("type") == "agent.started"]
    assert started
    assert started[0]["agent"] == "agent-a"
    assert any(e.get("event") == "status service stopped" for e in events)
