"""The processes of the fleet-scale benchmark: N real agents, one status service, a real console.

* agents: ``python -m agent serve`` with the real Docker runtime
  (:class:`tests.support.agent_proc.AgentProcess`) on 127.0.0.2, 127.0.0.3, ..., each with
  its own state root, keys and agent -> shell key, registered in one registry and given
  :data:`SESSIONS` session records (created through the API, never started: no containers);
* the status service: ``python -m shell.main status serve`` with the registry (it pings
  every agent itself, and every agent publishes to it); its config file is how
  ``convocate-host`` finds its standing tunnels (``CONVOCATE_CONFIG``). A second one
  probes the one-agent registry, for the baseline of the shared-tunnel figures;
* the console: ``python -m shell.main`` on a pty (the real full-screen console over the
  same registry and status socket), ready when its log says every agent is reachable.

:class:`FleetStack` owns all of them; ``close()`` stops every process and removes the
state directory, whatever happened before.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common.client.calls import AgentCalls
from common.errors import UnavailableError
from common.registry import register_agent
from common.tunnel import Tunnel
from shell.fleet.status_client import StatusClient
from shell.status.server import StatusConfig
from tests.support.agent_proc import AgentProcess
from tests.support.images import ensure_offline_image
from tests.support.status_stack import agent_status_keys, status_config, write_status_toml

__all__ = ["SESSIONS", "ConsoleProcess", "FleetStack", "cpu_seconds", "fd_count", "rss_mib"]

SESSIONS = 20          # session records per agent
START_PARALLEL = 4     # agents starting at once (each is a Python start-up: CPU-bound)
FILL_ATTEMPTS = 5


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fd_count(pid: int) -> int:
    """Open file descriptors of process ``pid``."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _close_agent(agent: AgentProcess) -> None:
    with contextlib.suppress(Exception):
        agent.close()


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class ConsoleProcess:
    """The real console (``python -m shell.main``) on a pty, over ``registry`` and ``status_socket``."""

    def __init__(self, root: Path, registry: Path, status_socket: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.log = root / "console.log"
        config = root / "console.toml"
        config.write_text(
            "[shell]\n"
            f'registry_dir = "{registry}"\nstatus_socket = "{status_socket}"\n'
            f'log_file = "{self.log}"\nexpected_uid = -1\norphans_root = "{root / "no-orphans"}"\n'
            f'dnsmasq_hosts = "{root / "hosts"}"\nruntime_dir = "{root}"\n')
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "CONVOCATE_LOG_LEVEL": "INFO"}
        self.proc = subprocess.Popen([sys.executable, "-m", "shell.main", "--config", str(config)],
                                     stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        self._master = master
        # The screen must be read, or the console blocks once the pty's buffer is full.
        self._drain = threading.Thread(target=self._read_screen, name="console-pty", daemon=True)
        self._drain.start()

    def _read_screen(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._master, 65536):
                pass

    def reachable(self) -> set[str]:
        """The agents the console's log has reported reachable."""
        seen: set[str] = set()
        if self.log.exists():
            for line in self.log.read_text(errors="replace").splitlines():
                if '"agent reachable"' in line:
                    with contextlib.suppress(ValueError):
                        seen.add(str(json.loads(line).get("agent", "")))
        return seen

    async def wait_reachable(self, agents: set[str], timeout: float) -> float:
        """Wait until every one of ``agents`` is reachable in the console; return the seconds it took."""
        t0 = time.monotonic()
        while not agents <= self.reachable():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the console exited ({self.proc.returncode}): {self.log_tail()}")
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"the console reached {len(self.reachable() & agents)} of {len(agents)} "
                                   f"agents in {timeout} s: {self.log_tail()}")
            await asyncio.sleep(0.05)
        return time.monotonic() - t0

    def log_tail(self) -> str:
        """The end of the console's log."""
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else "(no log)"

    def close(self) -> None:
        """Stop the console and close its pty."""
        _stop(self.proc)
        with contextlib.suppress(OSError):
            os.close(self._master)
        self._drain.join(5)


class FleetStack:
    """The status service and a growing set of real agents, all under one temporary directory."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="cvfl-"))
        self.run_id = self.root.name.removeprefix("cvfl-").lower().replace("_", "-")
        self.registry = self.root / "registry"
        self.registry_one = self.root / "registry-1"   # the first agent only: the baseline's
        self.image = ensure_offline_image()
        self.status: StatusConfig = status_config(self.root / "st", heartbeat_interval=30.0)
        self.status_proc: subprocess.Popen[bytes] | None = None
        self.status_toml = self.root / "status.toml"   # `convocate-host` finds its tunnels through it
        self.status_one: StatusConfig = status_config(self.root / "st1", heartbeat_interval=30.0)
        self.status_one_toml = self.root / "status-1.toml"
        self.status_one_proc: subprocess.Popen[bytes] | None = None
        self.agents: list[AgentProcess] = []
        self.consoles: list[ConsoleProcess] = []

    # --- the status service ------------------------------------------------------------------
    async def start_status(self) -> None:
        """Start the status service process and wait until its local socket answers."""
        write_status_toml(self.status, self.status_toml, self.registry)
        self.registry.mkdir(mode=0o700, exist_ok=True)
        self.status_proc = self._spawn_status(self.status_toml)
        await self.wait_status(set(), 30)

    async def start_status_one(self, timeout: float = 60.0) -> None:
        """A second status service, probing the one-agent registry (the baseline's standing tunnel).

        Started once the first agent is registered; returns when its tunnel socket to it is there.
        """
        write_status_toml(self.status_one, self.status_one_toml, self.registry_one)
        self.status_one_proc = self._spawn_status(self.status_one_toml, "status-1.log")
        sock = self.status_one.probe_sockets / f"{self.agents[0].agent_id}.sock"
        t0 = time.monotonic()
        while not sock.is_socket():
            if self.status_one_proc.poll() is not None or time.monotonic() - t0 > timeout:
                raise RuntimeError(f"the second status service has no tunnel to {self.agents[0].agent_id}")
            await asyncio.sleep(0.1)

    def _spawn_status(self, toml: Path, log_name: str = "status.log") -> subprocess.Popen[bytes]:
        with (self.root / log_name).open("wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "shell.main", "status", "serve", "--config", str(toml)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "CONVOCATE_LOG_LEVEL": "WARNING"})

    async def wait_status(self, agents: set[str], timeout: float) -> float:
        """Wait until the shared view has every one of ``agents`` publishing and pinged; return the seconds.

        Watches the view as the console does (:class:`shell.fleet.status_client.StatusClient`).
        """
        t0 = time.monotonic()
        watcher = StatusClient(self.status.socket, "bench-fleet", lambda _agent: None)
        await watcher.start()
        try:
            while True:
                ready = {a for a, h in watcher.health.items() if h.connected and h.control_link.up}
                if watcher.connected and agents <= ready:
                    return time.monotonic() - t0
                if self.status_proc is not None and self.status_proc.poll() is not None:
                    raise RuntimeError(f"the status service exited: {self._status_log()}")
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError(f"the status service did not see all {len(agents)} agents up in "
                                       f"{timeout} s: {self._status_log()}")
                await asyncio.sleep(0.1)
        finally:
            await watcher.close()

    def _status_log(self) -> str:
        log = self.root / "status.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"

    @property
    def status_pid(self) -> int:
        """The status service's process id."""
        assert self.status_proc is not None
        return self.status_proc.pid

    @property
    def status_one_pid(self) -> int:
        """The second status service's process id (:meth:`start_status_one`)."""
        assert self.status_one_proc is not None
        return self.status_one_proc.pid

    # --- agents -----------------------------------------------------------------------------
    def _new_agent(self, index: int) -> AgentProcess:
        state = self.root / f"a{index}"
        agent_id = f"bench-{self.run_id}-{index:03d}"
        key, known = agent_status_keys(self.status, state / "status", agent_id)
        agent = AgentProcess(state, host=f"127.0.0.{index + 2}", image=self.image, name=agent_id,
                             agent_id=agent_id, config={
                                 "status_host": self.status.host, "status_port": self.status.port,
                                 "status_client_key": key, "status_known_hosts": known})
        self.agents.append(agent)
        return agent

    async def _fill(self, agent: AgentProcess) -> None:
        """Create the session records (not started) through the agent's API.

        On a loaded machine a call can fail to connect in time; the records already there
        are counted again (a create that timed out may have happened) and the rest retried.
        """
        async with Tunnel(agent.tunnel_settings()) as tunnel:
            calls = AgentCalls(agent.agent_id, lambda: tunnel.channel, call_timeout=60)
            for attempt in range(FILL_ATTEMPTS):
                try:
                    await tunnel.wait_up(30)
                    for i in range(len(await calls.list_sessions()), SESSIONS):
                        await calls.create(f"s{i:02d}", 0, "tcp", "", start=False)
                except UnavailableError:
                    if attempt == FILL_ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(1.0)
                else:
                    return

    async def grow(self, n: int) -> list[AgentProcess]:
        """Start agents until there are ``n``, each with its sessions, registered; return the new ones."""
        new = [self._new_agent(i) for i in range(len(self.agents), n)]
        gate = asyncio.Semaphore(START_PARALLEL)

        async def bring_up(agent: AgentProcess) -> None:
            async with gate:
                await agent.astart(60)
            await self._fill(agent)
            self._register(agent)

        await asyncio.gather(*(bring_up(a) for a in new))
        return new

    def _register(self, agent: AgentProcess) -> None:
        for registry in [self.registry] + ([self.registry_one] if agent is self.agents[0] else []):
            register_agent(registry, agent.agent_id, agent.host, agent.port, agent.keys.client_key,
                           Path(f"{agent.keys.host_key}.pub").read_text())

    def console(self, name: str) -> ConsoleProcess:
        """Start a real console over the registry (closed by :meth:`close` if not before)."""
        console = ConsoleProcess(self.root / name, self.registry, self.status.socket)
        self.consoles.append(console)
        return console

    def close(self) -> None:
        """Stop the consoles, the agents (and any container of theirs) and the status service."""
        for console in self.consoles:
            with contextlib.suppress(Exception):
                console.close()
        with ThreadPoolExecutor(8) as pool:  # each waits for its agent's shutdown
            list(pool.map(_close_agent, self.agents))
        for proc in (self.status_proc, self.status_one_proc):
            if proc is not None:
                with contextlib.suppress(Exception):
                    _stop(proc)
        shutil.rmtree(self.root, ignore_errors=True)
