"""Steps that make a booted host an agent host, and the checks of what systemd runs there.

Until ``convocate-host install``/``init-agent`` exist these steps do their part by hand,
the way the README tells an operator: this checkout as a wheelhouse (the host needs no
package index) in ``/opt/convocate/venv``, ``convocate-agent install`` as root, the
offline session image loaded into the host's engine. Later provisioning tests reuse the
checks (:func:`slice_caps`, :func:`structured_journal_lines`, :func:`agent_sessions`).
Every step is idempotent.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.hosts.machines import Host, RemoteError
from tests.support.waiting import wait_for_sync

__all__ = [
    "AGENT_BIN",
    "HOST_PYTHON",
    "VENV",
    "SliceCaps",
    "agent_install",
    "agent_sessions",
    "attach_and_see",
    "build_wheelhouse",
    "create_session",
    "expected_slice_caps",
    "install_convocate",
    "kill_session",
    "load_image",
    "restart_session",
    "slice_caps",
    "structured_journal_lines",
]

REPO = Path(__file__).resolve().parents[2]
VENV = "/opt/convocate/venv"
# The Python of whichever release /usr/local/bin/convocate-agent runs (this fixture's venv, or
# the one `convocate-host install` switched to): a shell expression, for commands on the host.
HOST_PYTHON = '"$(dirname "$(readlink -f /usr/local/bin/convocate-agent)")/python"'
AGENT_BIN = "/usr/local/bin/convocate-agent"
REMOTE_WHEELS = "/tmp/convocate-wheelhouse"
CLAUDE_STAND_IN = "#!/bin/sh\necho 'claude stand-in: a shell in the session'\nexec /bin/sh -i\n"
# A gRPC client run on the agent host as claude, straight on the agent's socket.
CLIENT = """
import json, sys, grpc
from convocate.v1 import sessions_pb2 as pb, sessions_pb2_grpc as rpc
stub = rpc.SessionsStub(grpc.insecure_channel("unix:/run/convocate-agent/agent.sock"))
if sys.argv[1] == "create":
    s = stub.CreateSession(pb.CreateSessionRequest(name=sys.argv[2], start=True), timeout=60)
    print(json.dumps({"id": s.id, "running": s.running}))
elif sys.argv[1] == "restart":
    s = stub.RestartSession(pb.RestartSessionRequest(id=sys.argv[2]), timeout=60)
    print(json.dumps({"id": s.id, "running": s.running}))
elif sys.argv[1] == "kill":
    stub.KillSession(pb.KillSessionRequest(id=sys.argv[2]), timeout=60)
    print(json.dumps({"id": sys.argv[2]}))
else:
    r = stub.ListSessions(pb.ListSessionsRequest(), timeout=30)
    print(json.dumps([{"id": s.id, "name": s.name, "running": s.running} for s in r.sessions]))
"""

# An attach client run on the agent host as claude: attach, type argv[2] (if any), wait until
# the screen shows argv[3], detach. Exit 0 once seen, 1 if the stream ended or timed out first.
ATTACH_CLIENT = r"""
import queue, re, sys, grpc
from convocate.v1 import attach_pb2 as pb, attach_pb2_grpc as rpc
sid, typed, want = sys.argv[1], sys.argv[2], sys.argv[3].encode()
outbox = queue.Queue()
outbox.put(pb.AttachRequest(start=pb.AttachStart(session_id=sid, rows=24, cols=80, term="xterm",
                                                 mode=pb.ATTACH_MODE_DRIVE)))
def requests():
    while (r := outbox.get(timeout=60)) is not None:
        yield r
stub = rpc.AttachStub(grpc.insecure_channel("unix:/run/convocate-agent/agent.sock"))
out, seen = b"", False
try:
    for resp in stub.Attach(requests(), timeout=45):
        kind = resp.WhichOneof("frame")
        if kind == "started" and typed:
            outbox.put(pb.AttachRequest(input=typed.encode()))
        elif kind == "output" and not seen:
            out += resp.output
            if want in re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\r", b"", out):
                seen = True
                outbox.put(pb.AttachRequest(detach=pb.Detach()))
                outbox.put(None)
        elif kind == "end":
            break
except grpc.RpcError as e:
    print("attach failed:", e.code(), e.details(), file=sys.stderr)
print("SEEN" if seen else "NOT SEEN", out[-2000:].decode(errors="replace"))
sys.exit(0 if seen else 1)
"""


def build_wheelhouse(dest: Path) -> Path:
    """This checkout's wheel and every dependency as wheels in ``dest`` (PyPI via the pip cache)."""
    dest.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                        "--wheel-dir", str(dest), str(REPO)],
                       capture_output=True, text=True, timeout=600, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"pip wheel failed: {r.stderr[-3000:]}")
    if not list(dest.glob("convocate-*.whl")):
        raise RuntimeError(f"no convocate wheel in {dest}")
    return dest


def install_convocate(host: Host, wheelhouse: Path) -> str:
    """Copy the wheelhouse over scp and install it into the venv, offline; return the version."""
    version = host.run(f"{AGENT_BIN} version", check=False)
    if version.returncode == 0:
        return version.stdout.strip()
    host.run(f"rm -rf {REMOTE_WHEELS}")
    host.put(wheelhouse, REMOTE_WHEELS)
    host.sudo(f"python3 -m venv {VENV} && {VENV}/bin/pip install -q --disable-pip-version-check "
              f"--no-index --find-links {REMOTE_WHEELS} convocate", timeout=300)
    host.sudo(f"ln -sf {VENV}/bin/convocate-agent {AGENT_BIN} && rm -rf {REMOTE_WHEELS}")
    return host.run(f"{AGENT_BIN} version").stdout.strip()


def load_image(host: Host, tag: str, as_tag: str = "convocate:latest") -> None:
    """``docker save TAG | docker exec -i HOST docker load``, then tag it ``as_tag`` there."""
    if host.sudo(f"docker image inspect {shlex.quote(as_tag)}", check=False).returncode == 0:
        return
    save = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE)
    try:
        load = subprocess.run(["docker", "exec", "-i", host.name, "docker", "load", "-q"],
                              stdin=save.stdout, capture_output=True, text=True, timeout=300, check=False)
    finally:
        if save.stdout is not None:
            save.stdout.close()
        save.wait(60)
    if load.returncode != 0 or save.returncode != 0:
        raise RemoteError(f"loading {tag} into {host.name} failed: {load.stderr.strip()}")
    host.sudo(f"docker tag {shlex.quote(tag)} {shlex.quote(as_tag)}")


def agent_install(host: Host) -> str:
    """The Claude CLI (a stand-in) in place, then ``sudo -n convocate-agent install``; its output."""
    host.sudo(f"test -x /usr/local/bin/claude || {{ printf %s {shlex.quote(CLAUDE_STAND_IN)} "
              "> /usr/local/bin/claude && chmod 755 /usr/local/bin/claude; }")
    out = host.sudo(f"{AGENT_BIN} install", timeout=180).stdout
    wait_for_sync(lambda: unit_state(host, "convocate-agent.service") == "active", timeout=60, interval=0.5)
    return out


def unit_state(host: Host, unit: str) -> str:
    """``systemctl is-active UNIT``."""
    return host.run(f"systemctl is-active {unit}", check=False).stdout.strip()


@dataclass(frozen=True)
class SliceCaps:
    """The caps of ``convocate-sessions.slice`` as systemd reports them."""

    cpu_quota_per_sec: str   # e.g. "1.800000s" for 180 %
    memory_max: int


def slice_caps(host: Host) -> SliceCaps:
    """``systemctl show convocate-sessions.slice -p CPUQuotaPerSecUSec -p MemoryMax``."""
    out = host.run("systemctl show convocate-sessions.slice -p CPUQuotaPerSecUSec -p MemoryMax").stdout
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return SliceCaps(values["CPUQuotaPerSecUSec"], int(values["MemoryMax"]))


def expected_slice_caps(host: Host) -> SliceCaps:
    """90 % of the host's CPUs and memory, from its own ``nproc`` and ``/proc/meminfo``."""
    nproc = int(host.run("nproc").stdout)
    kib = int(host.run("awk '/^MemTotal:/ {print $2}' /proc/meminfo").stdout)
    return SliceCaps(f"{nproc * 0.9:.6f}s", kib * 1024 * 90 // 100)


def structured_journal_lines(host: Host, unit: str = "convocate-agent.service") -> list[dict[str, object]]:
    """The unit's journal messages that are JSON objects (structlog's lines)."""
    out = host.sudo(f"journalctl -u {unit} -o cat --no-pager", timeout=60).stdout
    lines: list[dict[str, object]] = []
    for line in out.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            lines.append(parsed)
    return lines


def _client(host: Host, *args: str) -> object:
    argv = " ".join(shlex.quote(a) for a in args)
    r = host.sudo(f"cd / && sudo -u claude {HOST_PYTHON} -c {shlex.quote(CLIENT)} {argv}", timeout=90)
    return json.loads(r.stdout)


def create_session(host: Host, name: str) -> str:
    """Create and start a session through the agent's gRPC socket (as claude); its id."""
    created = _client(host, "create", name)
    assert isinstance(created, dict)
    return str(created["id"])


def kill_session(host: Host, session: str) -> None:
    """Stop a session as an operator does (KillSession)."""
    _client(host, "kill", session)


def restart_session(host: Host, session: str) -> None:
    """Start a stopped session again (RestartSession)."""
    _client(host, "restart", session)


def agent_sessions(host: Host) -> dict[str, bool]:
    """Session id -> running, as the agent lists them."""
    listed = _client(host, "list")
    assert isinstance(listed, list)
    return {str(s["id"]): bool(s["running"]) for s in listed}


def agent_allow_list(host: Host) -> str:
    """The agent's allow-list path, as ``convocate-agent install --dry-run`` reports it."""
    out = host.sudo(f"{AGENT_BIN} install --dry-run", timeout=60).stdout
    for line in out.splitlines():
        if line.startswith("authorized keys:"):
            return line.split(":", 1)[1].split()[0]
    raise AssertionError(f"no 'authorized keys:' line in the install plan:\n{out}")


def authorize_on_agent(host: Host, public_key: str) -> None:
    """Add ``public_key`` to the agent's allow-list, as ``init-agent`` does for the shell's key."""
    path, key = shlex.quote(agent_allow_list(host)), shlex.quote(public_key)
    host.sudo(f"grep -qxF {key} {path} || printf '%s\\n' {key} >> {path}")


def agent_host_key(host: Host) -> str:
    """The agent's SSH host public key (derived from its private key on the host)."""
    return host.sudo("ssh-keygen -y -f /etc/convocate-agent/ssh_host_ed25519_key").stdout.strip()


def attach_and_see(host: Host, session: str, typed: str, want: str) -> str:
    """Attach to ``session`` on the host (as claude, on the agent's socket), type ``typed``, wait
    until the screen shows ``want``, detach; the client's output. Raises if it never shows."""
    args = " ".join(shlex.quote(a) for a in (session, typed, want))
    r = host.sudo(f"cd / && sudo -u claude {HOST_PYTHON} -c {shlex.quote(ATTACH_CLIENT)} {args}",
                  timeout=90, check=False)
    if r.returncode != 0:
        raise RemoteError(f"attach to {session} never showed {want!r}: {r.stdout[-2000:]} {r.stderr[-2000:]}")
    return r.stdout
