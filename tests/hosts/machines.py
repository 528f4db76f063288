"""Throwaway Debian hosts: containers with systemd as PID 1, reached over real SSH.

:class:`HostFleet` starts hosts from the image of :mod:`tests.hosts.rootfs` on a Docker
network it creates. Each host publishes its SSH port(s) on a loopback address of its
own (127.0.0.2, 127.0.0.3, ...); the test machine reaches a host only that way, and
traffic between hosts stays on the fleet's network. Each host gets the operator's key
for user ``admin`` with passwordless ``sudo -n``, as a fresh machine from a provider
would look. :meth:`Host.run` goes over OpenSSH with the host's key pinned (read with
``docker exec`` at start).

Everything the fleet makes carries the label ``convocate-e2e-hosts=<run id>``;
:meth:`HostFleet.close` removes it even after a failed step, and :func:`sweep` removes
leftovers of earlier runs.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from common.ssh_keys import known_hosts_line
from tests.hosts.steps import RUN_LOG, RunLog
from tests.support.waiting import wait_for_sync

__all__ = ["LABEL", "OPERATOR_USER", "Host", "HostFleet", "RemoteError", "sweep"]

LABEL = "convocate-e2e-hosts"
OPERATOR_USER = "admin"
ADDRESS_RANGE = range(2, 255)
BOOT_TIMEOUT = 120.0
SSH_TIMEOUT = 60.0
DOCKER_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0  # systemd halts on SIGRTMIN+3; docker kills after this many seconds
# Every capability by name except SYS_RESOURCE: this machine kind's bounding set lacks it,
# which is also why --privileged fails here. (BPF, PERFMON and CHECKPOINT_RESTORE are left
# out because Docker 20.10 rejects their names; nothing here needs them.)
CAPABILITIES = (
    "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND",
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER",
    "KILL", "LEASE", "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN",
    "NET_BIND_SERVICE", "NET_BROADCAST", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP",
    "SETUID", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT",
    "SYS_PTRACE", "SYS_RAWIO", "SYS_TIME", "SYS_TTY_CONFIG", "SYSLOG", "WAKE_ALARM",
)
# What a provider's fresh machine has: an operator login with the key and sudo -n.
OPERATOR_SETUP = """set -eu
id {user} >/dev/null 2>&1 || useradd -m -s /bin/bash {user}
install -d -m 700 -o {user} -g {user} /home/{user}/.ssh
printf '%s\\n' {key} > /home/{user}/.ssh/authorized_keys
chown {user}:{user} /home/{user}/.ssh/authorized_keys
chmod 600 /home/{user}/.ssh/authorized_keys
printf '%s\\n' '{user} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-{user}
chmod 440 /etc/sudoers.d/90-{user}
"""


class RemoteError(AssertionError):
    """A command on a host failed; the message carries its output."""


def _docker(*args: str, timeout: float = DOCKER_TIMEOUT, check: bool = True,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                       check=False, input=stdin)
    if check and r.returncode != 0:
        raise RemoteError(f"docker {' '.join(args[:3])}... failed ({r.returncode}): "
                          f"{r.stderr.strip()[-2000:]}")
    return r


def _bindable(address: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


@dataclass
class Host:
    """One running host and what the operator needs to reach it."""

    name: str            # container name (and hostname on the fleet's network)
    address: str         # loopback address the host's ports are published on
    ssh_port: int        # OpenSSH, published on ``address``
    ports: tuple[int, ...]
    internal_ip: str     # the host's address on the fleet's network
    user: str
    key: Path
    known_hosts: Path
    log: RunLog = field(default_factory=lambda: RUN_LOG, repr=False)

    def ssh_argv(self, *extra: str) -> list[str]:
        """The OpenSSH client options that log in to this host (pinned key, no agent)."""
        return ["-F", "/dev/null", "-i", str(self.key), "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=10", "-o", "LogLevel=ERROR",
                *extra]

    def run(self, command: str, *, check: bool = True, timeout: float = SSH_TIMEOUT,
            stdin: str | bytes | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``command`` (a shell line) as the operator over SSH; raise on failure if ``check``."""
        argv = ["ssh", *self.ssh_argv("-p", str(self.ssh_port)), f"{self.user}@{self.address}", command]
        data = stdin.encode() if isinstance(stdin, str) else stdin
        r = subprocess.run(argv, capture_output=True, timeout=timeout, check=False, input=data)
        done = subprocess.CompletedProcess(argv, r.returncode, r.stdout.decode(errors="replace"),
                                           r.stderr.decode(errors="replace"))
        if check and r.returncode != 0:
            raise RemoteError(f"{self.name}: `{command}` exited {r.returncode}\n"
                              f"stdout: {done.stdout[-3000:]}\nstderr: {done.stderr[-3000:]}")
        return done

    def sudo(self, command: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        """Run ``command`` as root through ``sudo -n``, as provisioning does."""
        return self.run(f"sudo -n sh -c {shlex.quote(command)}", **kwargs)  # type: ignore[arg-type]

    def put(self, local: Path, remote: str, *, timeout: float = 300.0) -> None:
        """Copy ``local`` (a file or directory) to ``remote`` over scp."""
        argv = ["scp", "-q", "-r", *self.ssh_argv("-P", str(self.ssh_port)), str(local),
                f"{self.user}@{self.address}:{remote}"]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if r.returncode != 0:
            raise RemoteError(f"scp {local} to {self.name}:{remote} failed: {r.stderr.strip()}")

    def docker_exec(self, command: str, *, timeout: float = DOCKER_TIMEOUT,
                    check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``command`` as root through ``docker exec`` (fixture plumbing, not the operator's way)."""
        return _docker("exec", self.name, "sh", "-c", command, timeout=timeout, check=check)


class HostFleet:
    """Hosts of one test run on one Docker network; :meth:`close` removes everything."""

    def __init__(self, image: str, workdir: Path, operator_key: Path, log: RunLog = RUN_LOG) -> None:
        self.image, self.workdir, self.operator_key, self.log = image, workdir, operator_key, log
        self.run_id = uuid.uuid4().hex[:10]
        self.network = f"convocate-e2e-{self.run_id}"
        self.hosts: list[Host] = []
        self._network_made = False
        self._taken: set[str] = set()

    def _labels(self) -> list[str]:
        return ["--label", f"{LABEL}={self.run_id}"]

    def _ensure_network(self) -> None:
        if not self._network_made:
            _docker("network", "create", *self._labels(), self.network)
            self._network_made = True

    def _free_address(self, ports: tuple[int, ...]) -> str:
        for n in ADDRESS_RANGE:
            address = f"127.0.0.{n}"
            if address not in self._taken and all(_bindable(address, p) for p in ports):
                self._taken.add(address)
                return address
        raise RuntimeError(f"no loopback address in 127.0.0.2-254 has ports {ports} free")

    def start(self, count: int, ports: tuple[int, ...] = (22,)) -> list[Host]:
        """Start ``count`` hosts publishing ``ports``; wait until each boots and takes SSH."""
        self._ensure_network()
        started = [self._start_one(ports) for _ in range(count)]
        for host in started:
            with self.log.step("boot and reach over SSH", host.name):
                self._await_ssh(host)
        return started

    def reboot(self, host: Host) -> None:
        """Stop the whole host (systemd shuts down) and start it again; wait for SSH."""
        with self.log.step("stop and start the host", host.name):
            _docker("restart", host.name, timeout=STOP_TIMEOUT + DOCKER_TIMEOUT)
            self._await_ssh(host)

    def _start_one(self, ports: tuple[int, ...]) -> Host:
        index = len(self.hosts) + 1
        name = f"cvh-{self.run_id}-{index}"
        address = self._free_address(ports)
        volume = f"{name}-docker"
        _docker("volume", "create", *self._labels(), volume)
        caps = [arg for cap in CAPABILITIES for arg in ("--cap-add", cap)]
        published = [arg for p in ports for arg in ("-p", f"{address}:{p}:{p}")]
        with self.log.step("start container", name):
            _docker("run", "-d", "--name", name, "--hostname", name, *self._labels(),
                    "--network", self.network, "-e", "container=docker",
                    "--stop-signal", "SIGRTMIN+3", "--stop-timeout", str(int(STOP_TIMEOUT)),
                    "--tmpfs", "/run", "--tmpfs", "/run/lock",
                    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "-v", f"{volume}:/var/lib/docker",
                    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
                    *caps, *published, self.image, "/sbin/init")
        ip = _docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{self.network}").IPAddress}}}}',
                     name).stdout.strip()
        host = Host(name=name, address=address, ssh_port=22, ports=ports, internal_ip=ip,
                    user=OPERATOR_USER, key=self.operator_key,
                    known_hosts=self.workdir / f"{name}.known_hosts", log=self.log)
        self.hosts.append(host)
        self.log.hosts.append(name)
        return host

    def _await_ssh(self, host: Host) -> None:
        public = (self.operator_key.with_suffix(".pub")).read_text().strip()
        host.docker_exec(OPERATOR_SETUP.format(user=host.user, key=shlex.quote(public)))

        def host_key() -> str:
            out = host.docker_exec("systemctl is-active ssh.service && "
                                   "cat /etc/ssh/ssh_host_ed25519_key.pub", check=False)
            lines = out.stdout.splitlines()
            return lines[1].strip() if out.returncode == 0 and len(lines) > 1 else ""

        try:
            key = wait_for_sync(host_key, timeout=BOOT_TIMEOUT, interval=0.5)
        except AssertionError as e:
            status = host.docker_exec("systemctl status ssh.service --no-pager", check=False)
            raise RemoteError(f"{host.name}: sshd not active within {BOOT_TIMEOUT} s: {status.stdout}") from e
        host.known_hosts.write_text(known_hosts_line(host.address, host.ssh_port, key) + "\n")
        host.known_hosts.chmod(0o600)
        # The published port answers once docker-proxy and sshd are both up.
        wait_for_sync(lambda: host.run("true", check=False, timeout=20).returncode == 0,
                      timeout=SSH_TIMEOUT, interval=0.5)

    def close(self) -> None:
        """Remove every container, volume and network of this run (idempotent)."""
        _remove_labelled(f"{LABEL}={self.run_id}")
        self._network_made = False


def _remove_labelled(label: str) -> None:
    containers = _docker("ps", "-aq", "--filter", f"label={label}", check=False).stdout.split()
    if containers:
        _docker("rm", "-f", "-v", *containers, check=False, timeout=300)
    volumes = _docker("volume", "ls", "-q", "--filter", f"label={label}", check=False).stdout.split()
    if volumes:
        _docker("volume", "rm", "-f", *volumes, check=False)
    networks = _docker("network", "ls", "-q", "--filter", f"label={label}", check=False).stdout.split()
    if networks:
        _docker("network", "rm", *networks, check=False)


def sweep() -> None:
    """Remove what earlier runs left behind (containers, volumes, networks with the label)."""
    _remove_labelled(LABEL)
