"""A real ``convocate-agent serve`` process on a loopback address, for integration tests.

Usage::

    agent = AgentProcess(short_tmp / "a1", host="127.0.0.2", image=offline_image)
    agent.start()                        # waits until it serves (or raises with its log)
    async with Tunnel(agent.tunnel_settings()) as t:
        await t.wait_up(10)
        stub = sessions_pb2_grpc.SessionsStub(t.channel)
        ...
    agent.kill()                         # SIGKILL (fault tests); agent.start() again re-adopts
    agent.stop()                         # SIGTERM, SIGKILL after a timeout
    await agent.astop()                  # the same without blocking the test's event loop
    agent.remove_containers()            # every container labelled with this agent's id

Each instance has its own state root (config dir, sessions root, runtime dir), its own
keys (:func:`tests.support.keys.make_peer_keys`), its own config file and a fixed agent
id, so several agents (127.0.0.2, 127.0.0.3, ...) run side by side. Keep ``root`` short:
the gRPC socket lives under it and UNIX socket paths must stay under 107 bytes. The
process's log (JSON lines) is ``agent.log`` under ``root``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agent.identity import new_agent_id
from common.tunnel import TunnelSettings
from tests.support.keys import PeerKeys, make_peer_keys
from tests.support.net import free_port

__all__ = ["AgentProcess", "remove_labelled_containers"]

_READY_MARK = '"agent serving"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def remove_labelled_containers(label: str) -> None:
    """Force-remove every container carrying ``label`` (``key=value``)."""
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={label}"],
                         capture_output=True, text=True, timeout=30, check=False).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60, check=False)


class AgentProcess:
    """One agent subprocess with its own state root, keys and config file.

    Args:
        root: a short, private directory for everything this agent owns.
        host: the loopback address its SSH server binds (127.0.0.2, 127.0.0.3, ...).
        image: the session image (written to the current-image pointer).
        name: a name for logs, keys and the tunnel.
        config: extra ``[agent]`` settings (override the defaults written here).
        agent_id: a fixed agent id (default: a new one).
        runtime: ``docker`` runs ``python -m agent serve``; ``fake`` runs the same server on
            the in-memory runtime (``python -m tests.support.fake_agent``), no Docker needed.
    """

    def __init__(self, root: Path, *, host: str = "127.0.0.2", image: str = "", name: str = "agent",
                 config: dict[str, Any] | None = None, agent_id: str | None = None,
                 runtime: str = "docker") -> None:
        self.root = root
        self.host = host
        self.name = name
        self.port = free_port(host)
        root.mkdir(parents=True, exist_ok=True)
        self.keys: PeerKeys = make_peer_keys(root / "keys", host, self.port, name)
        self.agent_id = agent_id or new_agent_id()
        self.argv = [sys.executable, "-m", "agent" if runtime == "docker" else "tests.support.fake_agent"]
        if runtime == "docker":
            self.argv.append("serve")
        self.config_dir = root / "etc"
        self.sessions_root = root / "home"
        self.runtime_dir = root / "run"
        self.config_dir.mkdir(exist_ok=True)
        self.sessions_root.mkdir(exist_ok=True)
        (self.config_dir / "agent-id").write_text(self.agent_id + "\n")
        if image:
            (self.config_dir / "current-image").write_text(image + "\n")
        settings: dict[str, Any] = {
            "config_dir": self.config_dir, "sessions_root": self.sessions_root,
            "runtime_dir": self.runtime_dir, "listen_host": host, "listen_port": self.port,
            "host_key": self.keys.host_key, "authorized_keys": self.keys.authorized_keys,
            "expected_uid": -1, "cgroup_parent": "", "dns_server": "", "stop_timeout": 2,
            "claude_cli": root / "no-claude-cli", "image": image or "convocate:latest",
        }
        settings.update(config or {})
        self.config_file = root / "agent.toml"
        body = "".join(f"{k} = {_toml_value(v)}\n" for k, v in settings.items())
        self.config_file.write_text("[agent]\n" + body)
        self.log_file = root / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        """The agent's gRPC socket."""
        return self.runtime_dir / "agent.sock"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        """The agent's log so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def start(self, timeout: float = 30.0) -> None:
        """Start ``python -m agent serve`` and wait until it serves.

        Raises:
            RuntimeError: it exited or did not serve within ``timeout`` (with its log tail).
        """
        if self.running:
            return
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        env = {**os.environ, "CONVOCATE_LOG_LEVEL": os.environ.get("CONVOCATE_AGENT_TEST_LOG", "INFO")}
        env.pop("NOTIFY_SOCKET", None)
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.argv, "--config", str(self.config_file)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _READY_MARK in self.log_text()[offset:]:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log_text()[offset:][-3000:]
        self.kill()
        raise RuntimeError(f"agent {self.name} did not start serving within {timeout} s:\n{tail}")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` s; return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the agent (a crash: no shutdown work at all)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)

    async def astart(self, timeout: float = 30.0) -> None:
        """:meth:`start` in a thread, so the test's event loop keeps serving its streams."""
        await asyncio.to_thread(self.start, timeout)

    async def astop(self, timeout: float = 15.0) -> int | None:
        """:meth:`stop` in a thread (a blocked loop would miss the agent's last frames)."""
        return await asyncio.to_thread(self.stop, timeout)

    async def akill(self) -> None:
        """:meth:`kill` in a thread."""
        await asyncio.to_thread(self.kill)

    def tunnel_settings(self, name: str | None = None, local_socket: Path | None = None,
                        **overrides: Any) -> TunnelSettings:
        """Settings for :class:`common.tunnel.Tunnel` to this agent (pinned key, client key)."""
        values: dict[str, Any] = {
            "name": name or self.name, "host": self.host, "port": self.port,
            "client_key": self.keys.client_key, "known_hosts": self.keys.known_hosts,
            "local_socket": local_socket or self.root / "cli" / "agent.sock",
        }
        values.update(overrides)
        return TunnelSettings(**values)

    def remove_containers(self) -> None:
        """Force-remove every container labelled with this agent's id."""
        remove_labelled_containers(f"convocate.agent={self.agent_id}")

    def close(self) -> None:
        """Stop the process and remove its containers."""
        self.stop()
        self.remove_containers()
