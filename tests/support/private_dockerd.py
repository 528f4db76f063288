"""A Docker Engine of the test's own, so stopping and starting it disturbs nothing else.

Usage (the ``private_dockerd`` fixture, module scope)::

    engine = private_dockerd              # started, the offline image loaded
    engine.url                            # unix:///tmp/cvd-.../docker.sock, for the agent's docker_url
    engine.docker("ps")                   # the docker CLI against it
    engine.stop(); engine.start()         # the engine down and up again

A second ``dockerd`` runs beside the shared one with its own ``--data-root``,
``--exec-root`` (its own managed containerd), ``--pidfile`` and socket,
``--iptables=false --ip-masq=false``, and ``--bridge=`` a bridge interface made here
with an address from a small private subnet that no interface uses. Never
``--bridge=none``: that deletes the host's ``docker0`` and breaks the shared engine's
networking. The subnet is a /28, not a /30: a /30 leaves one address for containers,
and the scenarios run several sessions at once.

Every wait is bounded; teardown kills the engine, unmounts what it left, removes its
directories and the bridge, also after a failure. Needs root (it runs ``dockerd`` and ``ip``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.env import require_docker, require_root, require_tool
from tests.support.images import ensure_offline_image

__all__ = ["PrivateDockerd", "private_dockerd"]

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
_CANDIDATES = [ipaddress.IPv4Network(f"10.{a}.{b}.0/28") for a in (213, 231) for b in range(16, 48)]


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True,
                            timeout=10, check=True).stdout
    nets = [ipaddress.ip_interface(line.split()[3]).network for line in out.splitlines() if " inet " in line]
    for line in routes.splitlines():
        first = line.split()[0]
        if first != "default":
            with contextlib.suppress(ValueError):
                nets.append(ipaddress.ip_network(first, strict=False))
    return [n for n in nets if isinstance(n, ipaddress.IPv4Network)]


def _free_subnet() -> ipaddress.IPv4Network:
    used = _used_networks()
    for net in _CANDIDATES:
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free private /28 for the test engine's bridge")


class PrivateDockerd:
    """One private engine (see the module docstring). ``close`` removes every trace."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.root = Path(tempfile.mkdtemp(prefix=f"cvd-{tag}-"))  # short: the exec-root holds sockets
        self.bridge = f"cvdbr{tag}"
        self.subnet = _free_subnet()
        self.socket = self.root / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.log_file = self.root / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._bridge_made = False

    def _make_bridge(self) -> None:
        gateway = next(self.subnet.hosts())
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True, timeout=10)
        self._bridge_made = True
        subprocess.run(["ip", "addr", "add", f"{gateway}/{self.subnet.prefixlen}", "dev", self.bridge],
                       check=True, timeout=10)
        subprocess.run(["ip", "link", "set", self.bridge, "up"], check=True, timeout=10)

    @property
    def argv(self) -> list[str]:
        """The dockerd command line."""
        return [
            "dockerd", f"--data-root={self.root / 'data'}", f"--exec-root={self.root / 'x'}",
            f"--pidfile={self.root / 'dockerd.pid'}", f"--host={self.url}",
            "--iptables=false", "--ip-masq=false", f"--bridge={self.bridge}",
            "--shutdown-timeout=5",
        ]

    def docker(self, *args: str, timeout: float = 60, check: bool = True,
               stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run the docker CLI against this engine."""
        return subprocess.run(["docker", "-H", self.url, *args], capture_output=True, timeout=timeout,
                              check=check, input=stdin)

    def answers(self) -> bool:
        """True if the engine answers now."""
        try:
            version = self.docker("version", "--format", "{{.Server.Version}}", timeout=10, check=False)
        except subprocess.TimeoutExpired:
            return False
        return version.returncode == 0

    def start(self) -> None:
        """Start dockerd and wait (bounded) until it answers.

        Raises:
            RuntimeError: it exited or did not answer in time (with its log tail).
        """
        if not self._bridge_made:
            self._make_bridge()
        log = self.log_file.open("ab")
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.answers():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        tail = self.log_file.read_text(errors="replace")[-3000:]
        self._kill()
        raise RuntimeError(f"the private dockerd did not answer within {START_TIMEOUT} s:\n{tail}")

    def stop(self) -> None:
        """SIGTERM dockerd and wait until it is gone (SIGKILL after :data:`STOP_TIMEOUT`)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill()
        self.proc = None

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # dockerd and its containerd
            self.proc.wait(10)
        self.proc = None

    def load_image(self, tag: str) -> None:
        """Copy ``tag`` from the shared engine into this one (docker save | docker load)."""
        saved = subprocess.run(["docker", "save", tag], capture_output=True, timeout=120, check=True).stdout
        self.docker("load", stdin=saved, timeout=120)

    def close(self) -> None:
        """Stop the engine, unmount what it left, remove its directories and the bridge."""
        try:
            if self.proc is not None and self.answers():
                ids = self.docker("ps", "-aq", timeout=20, check=False).stdout.decode().split()
                if ids:
                    self.docker("rm", "-f", *ids, timeout=60, check=False)
            self.stop()
        finally:
            self._kill()
            self._unmount()
            shutil.rmtree(self.root, ignore_errors=True)
            if self._bridge_made:
                subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=10,
                               check=False)
                self._bridge_made = False

    def _unmount(self) -> None:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        targets = [m.split()[1] for m in mounts if m.split()[1].startswith(str(self.root))]
        for target in sorted(targets, key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True, timeout=10, check=False)


@pytest.fixture(scope="module")
def private_dockerd() -> Iterator[PrivateDockerd]:
    """A started private engine with the offline session image loaded (removed afterwards)."""
    require_docker()
    for tool in ("dockerd", "ip"):
        require_tool(tool)
    require_root("the private Docker Engine needs root")
    image = ensure_offline_image()
    engine = PrivateDockerd()
    try:
        engine.start()
        engine.load_image(image)
        yield engine
    finally:
        engine.close()
