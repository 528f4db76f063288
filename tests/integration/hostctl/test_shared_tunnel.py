"""`agents` / `sessions` through the status service's standing tunnels, and every way back to their own.

A real status service (in-process, or its own process reading the same config file as the
command) probes a registry of one real agent (fake runtime) on loopback; the command runs
as a script runs it, its own process, finding the service's sockets through that config
file (``CONVOCATE_CONFIG``). The agent answers the same either way; an unusable shared
socket (missing, stale, someone else's, in an open directory, refusing) sends the command
to its own SSH connection with today's answers, exit codes and error lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from convocate.v1 import sessions_pb2, status_pb2, status_pb2_grpc

from common.client.calls import AgentCalls
from common.grpc_options import CLIENT_OPTIONS
from common.registry import AGENT_FILE, entry_written_ns, load_registry, register_agent
from common.ssh_keys import read_private_key
from shell.status.config import StatusConfig
from shell.status.server import StatusServer
from shell.status.service import LocalServicer
from tests.support.agent_proc import AgentProcess
from tests.support.env import require_grpcurl, require_root
from tests.support.fleet import prepare_agent
from tests.support.hostile_agent import HostileAgent
from tests.support.status_stack import status_config, write_status_toml
from tests.support.waiting import assert_eventually

AGENT_INDEX = 25   # agent-z on 127.0.0.27: clear of the other suites' addresses
BOUND = 30         # s: the give-up test fails (pytest-timeout) if the command waited for its deadline
OTHER_UID = 65534  # nobody
LIST_DEADLINE = 8   # s: --timeout of the hanging-List test
LIST_BOUND = LIST_DEADLINE + LIST_DEADLINE // 2 + 1   # well under two deadlines: fails if List is asked twice


@dataclass
class Shell:
    """One agent, its registry, and the config file naming the status service that probes it."""

    root: Path
    registry: Path
    agent: AgentProcess
    config: StatusConfig
    toml: Path
    server: StatusServer | None = None   # the in-process service of `serving`

    @property
    def shared_socket(self) -> Path:
        return self.config.probe_sockets / f"{self.agent.agent_id}.sock"

    async def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``convocate-host ARGS --json --registry R`` in its own process (the loop keeps serving);
        a first argument ``-X``: with ``python -X importtime``."""
        return await _host(self.registry, self.toml, *args)

    async def agents(self, *extra: str) -> dict[str, object]:
        """The one row of a healthy `agents --json` (exit 0, nothing on stderr)."""
        done = await self.run("agents", *extra)
        assert (done.returncode, done.stderr) == (0, ""), done
        [row] = json.loads(done.stdout)
        return dict(row)


@pytest.fixture
def shell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shell]:
    """An agent registered (not started; stopped after the test) and a status config probing its registry."""
    root = Path(tmp_path_factory.mktemp("sh", numbered=True))   # short: socket paths
    registry = root / "registry"
    config = status_config(root / "shell", heartbeat_interval=0.5, registry_dir=registry)
    agent = prepare_agent(root / "agents", registry, AGENT_INDEX, None)
    try:
        yield Shell(root, registry, agent, config, write_status_toml(config, root / "convocate.toml"))
    finally:
        agent.stop()


async def _host(registry: Path, toml: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``convocate-host ARGS --json --registry REGISTRY`` in its own process, the config file ``toml``."""
    python = [sys.executable, "-X", "importtime"] if args[:1] == ("-X",) else [sys.executable]
    argv = [*python, "-m", "hostctl", *args[args[:1] == ("-X",):], "--json", "--registry", str(registry)]
    env = {**os.environ, "CONVOCATE_LOG_LEVEL": "WARNING", "CONVOCATE_CONFIG": str(toml)}
    return await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60,
                                   check=False, env=env)


async def _wait_socket(config: StatusConfig, agent_id: str) -> None:
    """Until the status service's tunnel to ``agent_id`` is up (its socket is there)."""
    await assert_eventually((config.probe_sockets / f"{agent_id}.sock").is_socket, timeout=15)


async def _wait_shared(shell: Shell) -> None:
    """Until the status service's tunnel to the agent is up."""
    await _wait_socket(shell.config, shell.agent.agent_id)


@pytest.fixture
async def serving(shell: Shell) -> AsyncIterator[Shell]:
    """The agent started and an in-process status service (the config file's) with its tunnel to it up."""
    await shell.agent.astart()
    async with StatusServer(shell.config) as server:
        await _wait_shared(shell)
        shell.server = server
        yield shell


def _count_asks(shell: Shell) -> list[int]:
    """Counts the AskAgents calls the in-process service answers (a list of one count)."""
    assert shell.server is not None
    asker = shell.server.asker
    assert asker is not None
    calls = [0]
    ask = asker.ask

    def counted(request: status_pb2.AskAgentsRequest) -> AsyncGenerator[status_pb2.AgentAnswer, None]:
        calls[0] += 1
        return ask(request)

    asker.ask = counted  # type: ignore[method-assign]
    return calls


def _without_ask(shell: Shell) -> None:
    """The service's own socket gone (as for a service from before AskAgents): each agent's tunnel
    socket is what the command can share."""
    shell.config.socket.unlink()


async def test_agents_and_sessions_go_through_the_status_service_and_answer_as_directly(
        serving: Shell) -> None:
    """via = status-service, and the same Ping and List answers as over the command's own connection."""
    shell = serving
    async with grpc.aio.insecure_channel(f"unix:{shell.agent.socket_path}", options=CLIENT_OPTIONS) as ch:
        created = await AgentCalls(shell.agent.agent_id, lambda: ch).create("shared-1", 8080, "tcp", "")
    shared, direct = await shell.agents(), await shell.agents("--direct")
    assert (shared.pop("via"), direct.pop("via")) == ("status-service", "direct")
    assert shared["reachable"] is True
    assert shared["hostname"] == socket.gethostname()
    shared_health, direct_health = shared.pop("health"), direct.pop("health")   # its figures move
    assert shared == direct
    assert isinstance(shared_health, dict)
    assert isinstance(direct_health, dict)
    assert shared_health["engine_up"] is direct_health["engine_up"] is True

    done_shared, done_direct = await shell.run("sessions"), await shell.run("sessions", "--direct")
    assert (done_shared.returncode, done_shared.stderr, done_direct.returncode) == (0, "", 0)
    listed_shared, listed_direct = json.loads(done_shared.stdout), json.loads(done_direct.stdout)
    assert listed_shared["via"] == {shell.agent.agent_id: "status-service"}
    assert listed_direct["via"] == {shell.agent.agent_id: "direct"}
    assert [s["id"] for s in listed_shared["sessions"]] == [created.id]
    # state_known_at: stamped by the agent at every List; the shared answer is a live one too.
    stamps = [s.pop("state_known_at") for s in (*listed_shared["sessions"], *listed_direct["sessions"])]
    assert listed_shared["sessions"] == listed_direct["sessions"]
    assert len(set(stamps)) == 2
    assert listed_shared["unreachable"] == listed_direct["unreachable"] == []


async def test_sessions_log_goes_through_the_status_service_too_and_loads_no_ssh(serving: Shell) -> None:
    """`sessions log ID --json`: the survey that finds the agent and the log itself, through the service's
    tunnel, the same entries as --direct, without asyncssh."""
    shell = serving
    async with grpc.aio.insecure_channel(f"unix:{shell.agent.socket_path}", options=CLIENT_OPTIONS) as ch:
        created = await AgentCalls(shell.agent.agent_id, lambda: ch).create("logged", 0, "tcp", "")
    shared = await shell.run("-X", "sessions", "log", created.id)
    assert shared.returncode == 0, shared.stderr
    doc = json.loads(shared.stdout)
    assert (doc["via"], doc["agent_id"]) == ("status-service", shell.agent.agent_id)
    assert [e["kind"] for e in doc["entries"]] == ["created"]
    imported = {line.rsplit("|", 1)[-1].strip() for line in shared.stderr.splitlines()
                if line.startswith("import time:")}
    assert "hostctl.session_log" in imported
    assert not {m for m in imported if m.split(".")[0] in ("asyncssh", "cryptography")}
    direct = await shell.run("sessions", "log", created.id, "--direct")
    assert direct.returncode == 0, direct.stderr
    assert json.loads(direct.stdout) == {**doc, "via": "direct"}


async def test_the_shared_path_loads_neither_asyncssh_nor_cryptography(serving: Shell) -> None:
    """What the command imports, reaching its agent through the status service: no SSH stack at all."""
    shell = serving
    argv = [sys.executable, "-X", "importtime", "-m", "hostctl", "agents", "--json", "--registry",
            str(shell.registry)]
    env = {**os.environ, "CONVOCATE_LOG_LEVEL": "WARNING", "CONVOCATE_CONFIG": str(shell.toml)}
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60,
                                   check=False, env=env)
    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)
    assert row["via"] == "status-service"
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "hostctl.fleet" in imported
    assert "grpc" in imported
    assert not {m for m in imported if m.split(".")[0] in ("asyncssh", "cryptography")}
    # The same through the library call, in a process of its own.
    code = ("import sys\nfrom pathlib import Path\nfrom common.registry import load_registry\n"
            "from hostctl.fleet import survey_now\n"
            f"registry = Path({str(shell.registry)!r})\n"
            "[report] = survey_now(load_registry(registry), registry=registry)\n"
            "print(report.via, report.reachable, 'asyncssh' in sys.modules, 'cryptography' in sys.modules)\n")
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code], capture_output=True,
                                   text=True, timeout=60, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["status-service", "True", "False", "False"]


async def test_the_service_process_as_installed_shares_its_tunnel(shell: Shell) -> None:
    """`convocate status serve` and the command read one config file: the command finds its sockets."""
    await shell.agent.astart()
    log_path = shell.root / "status.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "shell.main", "status", "serve"], stdout=log_file,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, "CONVOCATE_CONFIG": str(shell.toml)})
    try:
        await _wait_shared(shell)
        row = await shell.agents()
        assert (row["via"], row["reachable"]) == ("status-service", True)
        assert row["agent_id"] == shell.agent.agent_id
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 5)


async def test_no_status_service_running_means_direct(shell: Shell) -> None:
    """The config names a service that is not running (no socket directory): the command's own connection."""
    await shell.agent.astart()
    row = await shell.agents()
    assert (row["via"], row["reachable"]) == ("direct", True)


async def test_a_missing_socket_means_direct(serving: Shell) -> None:
    """No AskAgents socket, and the service's socket for the agent removed under it: direct."""
    shell = serving
    _without_ask(shell)
    shell.shared_socket.unlink()
    row = await shell.agents()
    assert (row["via"], row["reachable"]) == ("direct", True)


@pytest.mark.parametrize("ask", [True, False], ids=["askagents", "socket"])
async def test_a_socket_older_than_the_agents_registry_entry_is_not_used(
        serving: Shell, ask: bool) -> None:
    """The entry written after the service's tunnel connected (a re-peer): the old tunnel is not used,
    neither by AskAgents (its client's entry time) nor through the tunnel's socket (its age)."""
    shell = serving
    if not ask:
        _without_ask(shell)
    entry = shell.registry / shell.agent.agent_id / AGENT_FILE
    later = shell.shared_socket.stat().st_mtime_ns + 3600 * 10**9   # ahead of any new socket of this test
    os.utime(entry, ns=(later, later))
    row = await shell.agents()
    assert (row["via"], row["reachable"]) == ("direct", True)


async def test_after_a_re_peer_the_service_tunnels_anew_and_the_command_shares_it(serving: Shell) -> None:
    """The entry written again under the same file names: the service's next registry sync starts a new
    tunnel (a new socket, newer than the entry), which the command then uses."""
    shell = serving
    agent = shell.agent
    record = register_agent(shell.registry, agent.agent_id, agent.host, agent.port, agent.keys.client_key,
                            read_private_key(agent.keys.host_key))
    written = entry_written_ns(shell.registry, record)

    def anew() -> bool:
        try:
            st = shell.shared_socket.stat()
        except FileNotFoundError:
            return False
        return st.st_mtime_ns >= written   # bound after the entry was written: a new tunnel's

    await assert_eventually(anew, timeout=15)
    row = await shell.agents()
    assert (row["via"], row["reachable"]) == ("status-service", True)


async def test_an_open_socket_directory_is_not_used(serving: Shell) -> None:
    """A directory others may write to (0777): whatever is in it may be planted, so direct."""
    shell = serving
    shell.config.probe_sockets.chmod(0o777)
    row = await shell.agents()
    assert (row["via"], row["reachable"]) == ("direct", True)
    shell.config.probe_sockets.chmod(0o700)
    row = await shell.agents()
    assert row["via"] == "status-service"


async def test_a_socket_or_directory_of_another_user_is_not_used(serving: Shell) -> None:
    """A working socket, but owned by another uid (then its directory): direct (AskAgents aside: the
    service's own socket is checked likewise, below)."""
    require_root("chown to another uid")
    shell = serving
    _without_ask(shell)
    directory = shell.config.probe_sockets
    os.chown(shell.shared_socket, OTHER_UID, -1)
    assert (await shell.agents())["via"] == "direct"
    os.chown(shell.shared_socket, os.geteuid(), -1)
    os.chown(directory, OTHER_UID, -1)
    assert (await shell.agents())["via"] == "direct"
    os.chown(directory, os.geteuid(), -1)
    assert (await shell.agents())["via"] == "status-service"


async def test_a_service_probing_another_registry_is_not_used(serving: Shell) -> None:
    """Its sockets are for its registry's records: with another registry named, direct."""
    shell = serving
    text = shell.toml.read_text()
    shell.toml.write_text(text.replace(f'registry_dir = "{shell.registry}"', 'registry_dir = "/nonexistent"'))
    row = await shell.agents()
    assert (row["via"], row["reachable"]) == ("direct", True)


@pytest.mark.timeout(BOUND)
async def test_an_agent_down_behind_a_refusing_socket_is_given_up_as_today(shell: Shell) -> None:
    """Status service up, agent down, a dead socket where the tunnel's was: refused, then the direct
    path's give-up policy, its one-line error and exit 3 (sessions too)."""
    async with StatusServer(shell.config):
        await assert_eventually(shell.config.probe_sockets.is_dir, timeout=10)   # its tunnel is trying
        dead = socket.socket(socket.AF_UNIX)
        dead.bind(str(shell.shared_socket))   # nothing listens: connecting is refused
        dead.close()
        shell.shared_socket.chmod(0o600)
        done = await shell.run("agents", "--timeout", "60")
        assert done.returncode == 3, done.stderr
        [row] = json.loads(done.stdout)
        agent = shell.agent
        assert (row["via"], row["reachable"], row["health"]) == ("direct", False, None)
        assert row["error"] == (f"{agent.name} ({agent.host}:{agent.port}) refused the "
                                "connection: start its agent there (`systemctl start convocate-agent`)")
        done = await shell.run("sessions", "--timeout", "60")
        assert done.returncode == 3, done.stderr
        listed = json.loads(done.stdout)
        assert listed["unreachable"] == [{"agent_id": agent.agent_id, "error": row["error"]}]
        assert listed["via"] == {agent.agent_id: "direct"}


class _ListHangs(HostileAgent):
    """An agent that answers Ping and never answers List (its servicer's List waits forever)."""

    def __init__(self, root: Path, registry: Path) -> None:
        super().__init__(root, registry, "agent-h", "127.0.0.1", [])

        async def hang(_request: object, _context: object) -> sessions_pb2.ListSessionsResponse:
            await asyncio.Event().wait()
            raise AssertionError   # unreachable

        self.servicer.ListSessions = hang  # type: ignore[method-assign,assignment]


@pytest.mark.timeout(LIST_BOUND)
async def test_an_agent_that_hangs_in_list_through_the_service_is_not_asked_twice(shell: Shell) -> None:
    """Ping answers through the service's tunnel, List never does: the row says so after one deadline,
    not a second one over a connection of the command's own (the test's bound is under two)."""
    registry = shell.root / "registry-h"
    config = status_config(shell.root / "sh", heartbeat_interval=0.5, registry_dir=registry)
    toml = write_status_toml(config, shell.root / "h.toml")
    async with _ListHangs(shell.root / "hostile", registry), StatusServer(config):
        await _wait_socket(config, "agent-h")
        done = await _host(registry, toml, "sessions", "--timeout", str(LIST_DEADLINE))
        assert done.returncode == 3, done.stderr
        listed = json.loads(done.stdout)
        assert listed["via"] == {"agent-h": "status-service"}
        [down] = listed["unreachable"]
        assert down["agent_id"] == "agent-h"
        assert down["error"]


async def test_an_agent_answering_under_another_id_is_not_reached_through_the_service(shell: Shell) -> None:
    """The service's socket named for agent-h leads to an agent that says it is someone else: the command
    asks agent-h over its own connection instead (what it says there is as before)."""
    registry = shell.root / "registry-h"
    config = status_config(shell.root / "sh", heartbeat_interval=0.5, registry_dir=registry)
    toml = write_status_toml(config, shell.root / "h.toml")
    async with HostileAgent(shell.root / "hostile", registry, "agent-h", "127.0.0.1", []) as agent, \
            StatusServer(config):
        await _wait_socket(config, "agent-h")
        agent.servicer.agent_id = "agent-other"
        done = await _host(registry, toml, "agents")
        [row] = json.loads(done.stdout)
        assert (row["via"], row["agent_id"], row["reachable"]) == ("direct", "agent-h", True), done.stderr


async def test_one_askagents_call_answers_for_every_agent_of_a_command(serving: Shell) -> None:
    """`agents` and `sessions` each make one AskAgents call and open no channel per agent; the answers
    are the agent's, as the first test compares with --direct."""
    shell = serving
    asks = _count_asks(shell)
    row = await shell.agents()
    assert (row["via"], row["reachable"]) == ("status-service", True)
    done = await shell.run("sessions")
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout)["via"] == {shell.agent.agent_id: "status-service"}
    assert asks == [2]


async def test_without_askagents_each_tunnel_socket_is_still_shared(serving: Shell) -> None:
    """A service that refuses AskAgents (FAILED_PRECONDITION here; an older one: UNIMPLEMENTED), then
    one without its own socket: the agent's tunnel socket is used as before, not a connection of the
    command's own."""
    shell = serving
    assert shell.server is not None
    [local] = [s.servicer for s in shell.server.grpc.services if isinstance(s.servicer, LocalServicer)]
    local.asker = None
    row = await shell.agents()
    assert (row["via"], row["reachable"]) == ("status-service", True)
    _without_ask(shell)
    row = await shell.agents()
    assert (row["via"], row["reachable"]) == ("status-service", True)


async def test_a_status_socket_of_another_user_is_not_asked(serving: Shell) -> None:
    """The service's own socket owned by another uid (it could be planted): no AskAgents; the tunnel
    socket, which passes its own checks, is used instead."""
    require_root("chown to another uid")
    shell = serving
    asks = _count_asks(shell)
    os.chown(shell.config.socket, OTHER_UID, -1)
    row = await shell.agents()
    assert (row["via"], row["reachable"]) == ("status-service", True)
    assert asks == [0]
    os.chown(shell.config.socket, os.geteuid(), -1)
    await shell.agents()
    assert asks == [1]


async def _ask(config: StatusConfig, request: status_pb2.AskAgentsRequest) -> list[status_pb2.AgentAnswer]:
    async with grpc.aio.insecure_channel(f"unix:{config.socket}", options=CLIENT_OPTIONS) as ch:
        return [a async for a in status_pb2_grpc.StatusStub(ch).AskAgents(request, timeout=15)]


async def test_askagents_refuses_bad_requests_and_answers_only_under_the_callers_entry(
        serving: Shell) -> None:
    """Invalid, repeated or too many ids and a bad deadline: INVALID_ARGUMENT. An agent it keeps no
    tunnel to, or one asked under another entry than its tunnel's: not answered, saying why."""
    shell = serving
    agent_id = shell.agent.agent_id
    entry = status_pb2.AgentEntry
    for bad in (status_pb2.AskAgentsRequest(agents=[entry(agent_id="../etc")]),
                status_pb2.AskAgentsRequest(agents=[entry(agent_id=agent_id), entry(agent_id=agent_id)]),
                status_pb2.AskAgentsRequest(agents=[entry(agent_id=f"a{i}") for i in range(10_001)]),
                status_pb2.AskAgentsRequest(agents=[entry(agent_id=agent_id)], timeout_seconds=float("nan")),
                status_pb2.AskAgentsRequest(agents=[entry(agent_id=agent_id)], timeout_seconds=-1)):
        with pytest.raises(grpc.aio.AioRpcError) as got:
            await _ask(shell.config, bad)
        assert got.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad.agents[:2]
    [record] = load_registry(shell.registry)
    written = entry_written_ns(shell.registry, record)
    answers = await _ask(shell.config, status_pb2.AskAgentsRequest(
        agents=[entry(agent_id="agent-unknown", entry_written_ns=written),
                entry(agent_id=agent_id, entry_written_ns=written - 1)], with_sessions=True))
    by_id = {a.agent_id: a for a in answers}
    assert not by_id["agent-unknown"].answered
    assert "no tunnel" in by_id["agent-unknown"].error
    assert not by_id[agent_id].answered
    assert "another registry entry" in by_id[agent_id].error
    [answer] = await _ask(shell.config, status_pb2.AskAgentsRequest(
        agents=[entry(agent_id=agent_id, entry_written_ns=written)], with_sessions=True))
    assert (answer.answered, answer.error, answer.ping.agent_id) == (True, "", agent_id)


async def test_a_service_without_a_registry_refuses_askagents(shell: Shell) -> None:
    """It keeps no tunnels: FAILED_PRECONDITION, saying so."""
    config = status_config(shell.root / "bare", heartbeat_interval=0.5)
    async with StatusServer(config):
        with pytest.raises(grpc.aio.AioRpcError) as got:
            await _ask(config, status_pb2.AskAgentsRequest(
                agents=[status_pb2.AgentEntry(agent_id="agent-a")]))
    assert got.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no agent registry" in (got.value.details() or "")


async def test_grpcurl_asks_every_agent_through_the_status_service(serving: Shell) -> None:
    """The real grpcurl on the service's local socket, no body: every agent it keeps a tunnel to,
    each with its Ping and sessions (what a person debugging a shell host sees)."""
    shell = serving
    argv = [require_grpcurl(), "-plaintext", "-unix", "-d", '{"with_sessions": true}',
            str(shell.config.socket), "convocate.v1.Status/AskAgents"]
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60,
                                   check=False)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert (answer["agent_id"], answer["answered"], answer["ping"]["agent_id"]) == (
        shell.agent.agent_id, True, shell.agent.agent_id)


class _BadTimestamp(HostileAgent):
    """An agent whose List names a session created in a year no timestamp may hold."""

    def __init__(self, root: Path, registry: Path) -> None:
        super().__init__(root, registry, "agent-h", "127.0.0.1", [])

        async def bad(_request: object, _context: object) -> sessions_pb2.ListSessionsResponse:
            session = sessions_pb2.Session(id="0" * 32, name="x")
            session.created_at.seconds = 2**60
            return sessions_pb2.ListSessionsResponse(sessions=[session])

        self.servicer.ListSessions = bad  # type: ignore[method-assign,assignment]


async def test_an_agent_sending_a_timestamp_out_of_range_is_a_row_not_a_crash(shell: Shell) -> None:
    """Through the service and directly alike: that agent's row says so, exit 3, no traceback."""
    registry = shell.root / "registry-h"
    config = status_config(shell.root / "sh", heartbeat_interval=0.5, registry_dir=registry)
    toml = write_status_toml(config, shell.root / "h.toml")
    async with _BadTimestamp(shell.root / "hostile", registry), StatusServer(config):
        await _wait_socket(config, "agent-h")
        for extra in ((), ("--direct",)):
            done = await _host(registry, toml, "sessions", *extra)
            assert done.returncode == 3, done.stderr
            assert "Traceback" not in done.stderr
            listed = json.loads(done.stdout)
            [down] = listed["unreachable"]
            assert down["agent_id"] == "agent-h"
            assert "out of range" in down["error"], down
