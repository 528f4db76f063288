"""``convocate demo``: one machine, a real agent, the status service and the console.

Everything lives in one short work directory (``/tmp/cvd-*`` unless ``--workdir``):

1. the offline session image is built on the local Docker Engine (no registry);
2. keys are minted: the agent's host key, the shell -> agent key, the status
   service's host key and the agent -> shell key, each pinned or authorized;
3. the status service (``python -m shell.main status serve``) and the agent
   (``python -m agent serve``) start as processes on 127.0.0.1 with free ports; the
   agent is registered through :func:`common.registry.register_agent` and the demo
   waits for its ``READY=1`` on a private ``NOTIFY_SOCKET``;
4. the console opens (uid check off); with ``--no-console`` a smoke test instead
   creates, starts, kills and deletes one session through the real router;
5. on exit the processes stop (SIGTERM, then SIGKILL after 10 s) and the session
   containers are stopped (they are ``--rm``) unless ``--keep-sessions``; the work
   directory is removed unless it was given or sessions are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.public import stop_agent_sessions
from common.errors import FailedPreconditionError, UnavailableError
from common.logging import configure_logging
from common.registry import register_agent
from common.ssh_keys import add_authorized_key, generate_keypair, pin_host_key
from shell.console.config import ShellConfig
from shell.console.runner import run_console_for
from shell.demo_smoke import smoke_test
from shell.install import build_offline_image, run_with_input
from shell.status.identity import agent_key_comment

__all__ = ["AGENT_ID", "DemoOptions", "run_demo"]

AGENT_ID = "local"
HOST = "127.0.0.1"
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class DemoOptions:
    """What ``convocate demo`` was asked for."""

    workdir: Path | None = None
    console: bool = True
    keep_sessions: bool = False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class _Process:
    """A child process started by exec, logging to a file, stopped by its pid."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def tail(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:])[-400:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


async def _wait_ready(notify: socket.socket, proc: _Process) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT
    while loop.time() < deadline:
        if proc.proc.poll() is not None:
            raise FailedPreconditionError(f"the {proc.name} exited ({proc.proc.returncode}): {proc.tail()}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                data = await loop.sock_recv(notify, 4096)
                if b"READY=1" in data.split(b"\n"):
                    return
    raise UnavailableError(f"the {proc.name} was not ready within {READY_TIMEOUT:.0f} s: {proc.tail()}")


async def _wait_port(port: int, proc: _Process) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT
    while loop.time() < deadline:
        if proc.proc.poll() is not None:
            raise FailedPreconditionError(f"the {proc.name} exited ({proc.proc.returncode}): {proc.tail()}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(HOST, port)
            writer.close()
            return
        await asyncio.sleep(0.2)
    raise UnavailableError(f"the {proc.name} did not listen on {HOST}:{port}: {proc.tail()}")


class DemoStack:
    """The demo's files and processes."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: list[_Process] = []
        self.registry = work / "registry"
        self.status_socket = work / "status" / "status.sock"
        empty = work / "empty.toml"
        empty.write_text("")
        self.env = {**os.environ, "CONVOCATE_CONFIG": str(empty), "CI": ""}

    def start_status(self) -> tuple[int, Path]:
        """Start the status service; return its port and its host key."""
        d = self.work / "status"
        d.mkdir(mode=0o700, exist_ok=True)
        port = _free_port()
        generate_keypair(d / "host_ed25519_key", "demo-status-host")
        (d / "authorized_keys").touch(mode=0o600)
        env = {**self.env, "CONVOCATE_STATUS_HOST": HOST, "CONVOCATE_STATUS_PORT": str(port),
               "CONVOCATE_STATUS_HOST_KEY": str(d / "host_ed25519_key"),
               "CONVOCATE_STATUS_AUTHORIZED_KEYS": str(d / "authorized_keys"),
               "CONVOCATE_STATUS_SOCKET": str(self.status_socket),
               "CONVOCATE_STATUS_REGISTRY_DIR": str(self.registry)}
        argv = [sys.executable, "-m", "shell.main", "status", "serve"]
        self.procs.append(_Process("status service", argv, env, self.work / "status.log"))
        return port, d / "host_ed25519_key"

    def start_agent(self, image: str, status_port: int, status_host_key: Path,
                    notify_path: Path) -> tuple[_Process, int]:
        """Mint the agent's keys, register it, and start it."""
        d = self.work / "agent"
        etc = d / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (d / "home" / ".claude").mkdir(parents=True, exist_ok=True)
        (etc / "agent-id").write_text(AGENT_ID + "\n")
        port = _free_port()
        host_key = generate_keypair(etc / "ssh_host_ed25519_key", "demo-agent-host")
        shell_key = generate_keypair(self.work / "shell_to_agent_ed25519_key", "demo-shell")
        add_authorized_key(d / "authorized_keys", shell_key)
        status_key = generate_keypair(d / "agent_to_shell_ed25519_key", agent_key_comment(AGENT_ID))
        add_authorized_key(self.work / "status" / "authorized_keys", status_key)
        pin_host_key(d / "status_known_hosts", HOST, status_port,
                     Path(str(status_host_key) + ".pub").read_text())
        register_agent(self.registry, AGENT_ID, HOST, port, self.work / "shell_to_agent_ed25519_key",
                       host_key)
        env = {**self.env, "NOTIFY_SOCKET": str(notify_path)}
        settings = {
            "CONFIG_DIR": etc, "SESSIONS_ROOT": d / "home", "RUNTIME_DIR": d / "run",
            "LISTEN_HOST": HOST, "LISTEN_PORT": port, "EXPECTED_UID": -1, "IMAGE": image,
            "CGROUP_PARENT": "", "DNS_SERVER": "", "AUTHORIZED_KEYS": d / "authorized_keys",
            "STATUS_HOST": HOST, "STATUS_PORT": status_port,
            "STATUS_CLIENT_KEY": d / "agent_to_shell_ed25519_key",
            "STATUS_KNOWN_HOSTS": d / "status_known_hosts",
        }
        env.update({f"CONVOCATE_AGENT_{k}": str(v) for k, v in settings.items()})
        proc = _Process("agent", [sys.executable, "-m", "agent", "serve"], env, self.work / "agent.log")
        self.procs.append(proc)
        return proc, port

    def shell_config(self) -> ShellConfig:
        """The console's configuration for the demo (no uid check, files in the work dir)."""
        return ShellConfig(registry_dir=self.registry, status_socket=self.status_socket,
                           log_file=self.work / "console.log", expected_uid=-1,
                           orphans_root=self.work / "no-orphans", dnsmasq_hosts=self.work / "dnsmasq-hosts",
                           runtime_dir=self.work)

    def stop(self) -> None:
        """Stop every process, newest first."""
        for proc in reversed(self.procs):
            proc.stop()


async def _stop_sessions(say: Callable[[str], None]) -> None:
    stopped = await stop_agent_sessions(AGENT_ID, 5)
    if stopped:
        say(f"[demo] stopped {stopped} session container(s)")


async def run_demo(opts: DemoOptions, say: Callable[[str], None]) -> None:
    """Build, start, open the console (or smoke-test), and clean up.

    Args:
        opts: the options.
        say: where progress lines go (stdout of the command).

    Raises:
        ConvocateError: a step failed (the message names it).
    """
    work = opts.workdir or Path(tempfile.mkdtemp(prefix="cvd-"))
    work.mkdir(parents=True, exist_ok=True)
    stack = DemoStack(work)
    notify_path = work / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.setblocking(False)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    for sig in (signal.SIGTERM, signal.SIGHUP):   # a closed terminal or a kill still cleans up
        if main is not None:
            loop.add_signal_handler(sig, main.cancel)
    try:
        say("[demo] building the offline session image...")
        image = await asyncio.to_thread(build_offline_image, run_with_input)
        say(f"[demo] image {image}")
        status_port, status_host_key = stack.start_status()
        agent, agent_port = stack.start_agent(image, status_port, status_host_key, notify_path)
        await _wait_port(status_port, stack.procs[0])
        await _wait_ready(notify, agent)
        say(f"[demo] agent {AGENT_ID} on {HOST}:{agent_port}, status service on {HOST}:{status_port}")
        config = stack.shell_config()
        if opts.console:
            say("[demo] opening the console: N creates a session, Enter attaches, Ctrl-B d detaches, "
                "Q quits")
            configure_logging("tui", log_file=config.console_log)
            await run_console_for(config)
        else:
            await smoke_test(config, AGENT_ID, say)
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        notify.close()
        stack.stop()
        if not opts.keep_sessions:
            with contextlib.suppress(Exception):
                await _stop_sessions(say)
        if opts.workdir is None and not opts.keep_sessions:
            shutil.rmtree(work, ignore_errors=True)
        say(f"[demo] stopped; files {'kept in ' + str(work) if work.exists() else 'removed'}")
