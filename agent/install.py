"""``convocate-agent install``: the agent host's state layout, units and adoption report.

Idempotent; each step prints ``[convocate-agent] <step>... <result>``. Every absolute
path is placed under ``root`` (``/`` in production), so tests install into a temporary
directory; ``dry_run`` prints the plan and changes nothing. User management and
``systemctl`` run only for a real install (root ``/``).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from agent.config import AgentConfig
from agent.identity import load_or_create_agent_id
from common.defaults import SSHD_DROPIN
from common.deploy_files import deploy_dir
from common.errors import FailedPreconditionError, PermissionDeniedError
from common.install_options import exec_start, read_options, write_options
from common.paths import atomic_write, chown_tree, private_dir, user_ids
from common.ssh_keys import load_or_create_host_key
from common.sshd_dropin import AGENT_ROLE, KEY_OPTIONS, DropIn, install_dropin, reload_sshd

__all__ = ["ENABLE", "START", "UNITS", "InstallOptions", "UnitOptions", "host_slice_values", "install_agent",
           "installed_unit_options", "render_slice", "render_units", "slice_values"]

UNITS = ("convocate-agent.service", "convocate-image-prune.service", "convocate-image-prune.timer")
MAIN_UNIT = "convocate-agent.service"
ENABLE = ("convocate-image-prune.timer", MAIN_UNIT)   # install enables these ...
START = ("convocate-image-prune.timer",)              # ... and starts these with them (--now)
SLICE = "convocate-sessions.slice"
DEFAULT_BINARY = "/usr/local/bin/convocate-agent"
OPTIONS_FILE = "install-options.json"                 # in the agent's config directory
ROLE = "agent"
NO_LOGIN = "/usr/sbin/nologin"
SHELL_KEY_TAG = "convocate:shell-to-agent:"   # the comment init-agent puts on the shell's key
MAX_KEYS_FILE = 1 << 20
SKEL_README = """# This container

You run inside a convocate session container: an isolated workspace whose home
directory (/home/claude) persists across restarts. Shared, read-only Claude settings,
credentials and plugins are under ~/.claude-shared/ and linked into ~/.claude/.
"""


@dataclass(frozen=True)
class InstallOptions:
    """How to install."""

    root: Path = Path("/")
    dry_run: bool = False
    units_dir: Path = field(default_factory=lambda: deploy_dir() / "systemd")
    binary: str = DEFAULT_BINARY
    required_euid: int = 0
    systemctl: bool = True
    user: str = "claude"      # the service user: no login shell, no docker group, no forwarding


@dataclass(frozen=True)
class UnitOptions:
    """The install options that end up in the agent's unit files (recorded in ``OPTIONS_FILE``)."""

    binary: str = DEFAULT_BINARY
    units_dir: Path | None = None     # templates given to install (None: the release's own)

    def as_record(self) -> dict[str, str]:
        """The record's options (``units_dir`` only when one was given)."""
        return {"binary": self.binary, **({"units_dir": str(self.units_dir)} if self.units_dir else {})}


def installed_unit_options(config_dir: Path, systemd_dir: Path) -> UnitOptions:
    """How the agent on this host was installed: its record in ``config_dir``, else its installed unit.

    A host installed before the record existed gets the binary from its unit's
    ``ExecStart=<binary> serve`` (the templates: this release's own).

    Raises:
        FailedPreconditionError: a bad record, or neither a record nor such a unit (nothing is guessed).
    """
    recorded = read_options(config_dir / OPTIONS_FILE, ROLE)
    if recorded is not None:
        binary, units_dir = recorded.get("binary", ""), recorded.get("units_dir")
        if not binary.startswith("/"):
            raise FailedPreconditionError(f"{config_dir / OPTIONS_FILE} names no absolute binary")
        return UnitOptions(binary, Path(units_dir) if units_dir else None)
    unit = systemd_dir / MAIN_UNIT
    text = _read_regular(unit)
    words = exec_start(text or "")
    if len(words) != 2 or words[1] != "serve" or not words[0].startswith("/"):
        found = "there is none" if text is None else "its ExecStart is not '<binary> serve'"
        raise FailedPreconditionError(
            f"cannot tell how the agent was installed: no {config_dir / OPTIONS_FILE}, and from {unit} "
            f"neither ({found}); re-run `convocate-agent install` with its options to record them")
    return UnitOptions(words[0])


def slice_values(nproc: int, meminfo: str) -> tuple[int, int]:
    """(CPUQuota percent, MemoryMax bytes) = 90 % of the host's CPUs and memory.

    Raises:
        FailedPreconditionError: nproc < 1 or no MemTotal line.
    """
    if nproc < 1:
        raise FailedPreconditionError(f"nproc must be at least 1, got {nproc}")
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            kib = int(line.split()[1])
            return nproc * 90, kib * 1024 * 90 // 100
    raise FailedPreconditionError("no MemTotal in /proc/meminfo")


def render_slice(template: str, cpu_quota: int, memory_max: int) -> str:
    """The slice unit from its template."""
    return template.replace("@CPU_QUOTA@", str(cpu_quota)).replace("@MEMORY_MAX@", str(memory_max))


def host_slice_values() -> tuple[int, int]:
    """:func:`slice_values` of the host this runs on."""
    return slice_values(os.cpu_count() or 1, Path("/proc/meminfo").read_text())


def render_units(units_dir: Path, binary: str, cpu_quota: int, memory_max: int) -> dict[str, str]:
    """Every systemd file the agent role installs: its name under ``/etc/systemd/system`` -> text.

    The one rendering of the agent's units: ``install`` writes them, and ``convocate-agent
    units`` prints them for ``convocate-host update`` (which applies a new release's units).

    Raises:
        FailedPreconditionError: a unit template is missing from ``units_dir``.
    """
    for name in (*UNITS, f"{SLICE}.in"):
        if not (units_dir / name).is_file():
            raise FailedPreconditionError(f"unit template {units_dir / name} is missing")
    slice_text = render_slice((units_dir / f"{SLICE}.in").read_text(), cpu_quota, memory_max)
    return {SLICE: slice_text,
            **{name: (units_dir / name).read_text().replace(DEFAULT_BINARY, binary) for name in UNITS}}


class _Steps:
    """Prints each step; in a dry run prints the plan only."""

    def __init__(self, opts: InstallOptions, out: Callable[[str], None]) -> None:
        self.opts, self.out = opts, out

    def p(self, path: Path) -> Path:
        """``path`` under the install root."""
        return self.opts.root / path.relative_to("/") if path.is_absolute() else self.opts.root / path

    def run(self, what: str, action: Callable[[], str | None]) -> None:
        if self.opts.dry_run:
            self.out(f"[convocate-agent] {what}... (dry run: not done)")
            return
        result = action()
        self.out(f"[convocate-agent] {what}... {result or 'done'}")


def _write_if_absent(path: Path, text: str, mode: int, gid: int = -1) -> str:
    if path.exists() or path.is_symlink():
        return "kept (exists)"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text, mode=mode, gid=gid)
    return "done"


def _read_regular(path: Path) -> str | None:
    """``path``'s text if it is a regular file (not a link, FIFO or device) of bounded size."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_KEYS_FILE:
            return None
        return os.read(fd, MAX_KEYS_FILE).decode(errors="replace")
    finally:
        os.close(fd)


def _move_legacy_keys(legacy: Path, allow_list: Path) -> str:
    """Move init-agent's lines from OpenSSH's own file to the agent's allow-list, restricted."""
    text = _read_regular(legacy)
    lines = text.splitlines() if text is not None else []
    moved = [ln for ln in lines if len(ln.split()) >= 3 and ln.split()[-1].startswith(SHELL_KEY_TAG)]
    if not moved:
        return "nothing to move"
    current = _read_regular(allow_list) or ""
    added = [f"{KEY_OPTIONS} {' '.join(ln.split()[-3:])}" for ln in moved if ln.split()[-2] not in current]
    allow = os.stat(allow_list)
    atomic_write(allow_list, current + "".join(f"{ln}\n" for ln in added), mode=0o640,
                 uid=allow.st_uid, gid=allow.st_gid)
    kept = [ln for ln in lines if ln not in moved]
    old = os.lstat(legacy)
    atomic_write(legacy, "".join(f"{ln}\n" for ln in kept), mode=stat.S_IMODE(old.st_mode),
                 uid=old.st_uid, gid=old.st_gid)
    return f"moved {len(moved)} line(s)"


def _ensure_user(user: str) -> str:
    """The service user: uid 1337, no login shell and not in the docker group.

    Only the agent's unit reaches Docker (``SupplementaryGroups=docker``); a login as
    this user over OpenSSH gets neither a shell nor the Docker socket.
    """
    if shutil.which("useradd") is None:
        return "skipped (no useradd)"
    if subprocess.run(["id", user], capture_output=True, check=False).returncode == 0:
        subprocess.run(["usermod", "-s", NO_LOGIN, user], check=True, capture_output=True)
        left = subprocess.run(["gpasswd", "-d", user, "docker"], capture_output=True, check=False)
        return "exists (login shell removed" + (", left group docker)" if left.returncode == 0 else ")")
    subprocess.run(["useradd", "-u", "1337", "-m", "-s", NO_LOGIN, user], check=True)
    return "created (uid 1337, no login shell)"


def _systemctl() -> str:
    if shutil.which("systemctl") is None or not Path("/run/systemd/system").is_dir():
        return "skipped (systemd is not running)"
    enable = [["enable", *(["--now"] if name in START else []), name] for name in ENABLE]
    for argv in (["daemon-reload"], *enable, ["restart", MAIN_UNIT]):
        subprocess.run(["systemctl", *argv], check=True)
    return "done"


def _count_sessions(sessions_root: Path) -> int:
    if not sessions_root.is_dir():
        return 0
    return sum(1 for d in sessions_root.iterdir() if (d / "session.json").is_file())


def install_agent(config: AgentConfig, opts: InstallOptions, out: Callable[[str], None],
                  euid: int | None = None) -> int:
    """Install the agent host; return the number of adopted sessions.

    Args:
        config: the agent configuration (paths are placed under ``opts.root``).
        opts: root prefix, dry run, unit sources, binary path.
        out: where progress lines go (the command prints them).
        euid: the effective uid to check (default: the process's).

    Raises:
        PermissionDeniedError: not running as the required uid (root).
        FailedPreconditionError: the Claude CLI is missing or a unit template is missing.
    """
    current = os.geteuid() if euid is None else euid
    if current != opts.required_euid:
        raise PermissionDeniedError(
            f"convocate-agent install must be run as root (uid {opts.required_euid}), "
            f"currently uid {current} — try: sudo convocate-agent install"
        )
    s = _Steps(opts, out)
    real = opts.root == Path("/")
    etc_systemd = s.p(Path("/etc/systemd/system"))
    cpu, mem = host_slice_values()
    units = render_units(opts.units_dir, opts.binary, cpu, mem)
    user = opts.user

    def ids() -> tuple[int, int]:
        return user_ids(user) if real else (os.geteuid(), os.getegid())

    s.run(f"ensure {user} user", partial(_ensure_user, user) if real else lambda: "skipped (--root)")
    s.run(f"create {config.config_dir}", lambda: _make_dir(s.p(config.config_dir), 0o755, os.geteuid()))
    s.run("generate or keep the agent id", lambda: load_or_create_agent_id(s.p(config.agent_id_path)))
    s.run("generate or keep the SSH host key", lambda: _host_key(s.p(config.host_key_path)))
    # The unit points CONVOCATE_CONFIG here; init-agent fills it in (status link, ports).
    s.run(f"create {config.config_dir}/agent.toml", lambda: _write_if_absent(
        s.p(config.config_dir / "agent.toml"),
        "# Settings of convocate-agent; `convocate-host init-agent` rewrites this file.\n[agent]\n",
        0o644))
    home = s.p(config.sessions_root)
    # The allow-list: root-owned, readable (not writable) by the service; OpenSSH never reads it.
    s.run(f"create {config.authorized_keys_path}", lambda: _write_if_absent(
        s.p(config.authorized_keys_path),
        "# populated by `convocate-host init-agent` (shell -> agent key)\n", 0o640, ids()[1]))
    legacy = config.sessions_root / ".ssh" / "authorized_keys"
    s.run(f"move the shell's key out of {legacy} (versions before 2.1 put it there)",
          lambda: _move_legacy_keys(s.p(legacy), s.p(config.authorized_keys_path)))
    s.run("create the session skeleton", lambda: _write_if_absent(s.p(config.skel_path) / "CLAUDE.md",
                                                                  SKEL_README, 0o644))
    s.run("create the shared Claude config directory",
          lambda: _make_dir(s.p(config.claude_config_path), 0o700, ids()[0]))
    cli = s.p(config.claude_cli)
    if not opts.dry_run and not cli.exists():
        raise FailedPreconditionError(
            f"claude CLI not found at {config.claude_cli}; install it before provisioning sessions"
        )
    checked = "(dry run: not checked)" if opts.dry_run else "ok"
    out(f"[convocate-agent] check claude CLI at {config.claude_cli}... {checked}")
    for name, text in units.items():
        title = f"install {name}" + (f" (CPUQuota={cpu}%, MemoryMax={mem})" if name == SLICE else "")
        s.run(title, partial(_install_file, etc_systemd / name, text))
    dropin = DropIn(user, "/bin/false", permit_tty=False, role=AGENT_ROLE)
    s.run(f"install {SSHD_DROPIN} (Match User {user}: no forwarding, ForceCommand /bin/false)",
          lambda: install_dropin(s.p(SSHD_DROPIN), dropin, system=real))
    options = UnitOptions(opts.binary, None if opts.units_dir == deploy_dir() / "systemd" else opts.units_dir)
    s.run(f"record the install options in {config.config_dir / OPTIONS_FILE}",
          lambda: write_options(s.p(config.config_dir / OPTIONS_FILE), ROLE, options.as_record()))
    s.run("reload sshd", reload_sshd if real and opts.systemctl else lambda: "skipped")
    owned = [config.host_key_path, config.skel_path, config.claude_config_path]
    s.run(f"hand the host key and session files to {user}",
          (lambda: _chown_all([s.p(p) for p in owned], *ids())) if real else lambda: "skipped (--root)")
    s.run("systemctl daemon-reload, enable and restart",
          _systemctl if real and opts.systemctl else lambda: "skipped")
    adopted = _count_sessions(home)
    if adopted:
        out(f"[convocate-agent] adopted {adopted} pre-existing session(s) from this host "
            "(running containers keep running)")
    out(f"host key: {config.host_key_path}")
    out(f"agent id: {config.agent_id_path}")
    out(f"authorized keys: {config.authorized_keys_path} (empty until init-agent populates)")
    return adopted


def _chown_all(paths: list[Path], uid: int, gid: int) -> str:
    """The agent must read its host key and own the session files; no link is followed."""
    for path in paths:
        if path.exists() or path.is_symlink():
            chown_tree(path, uid, gid)
    return "done"


def _make_dir(path: Path, mode: int, owner: int) -> str:
    private_dir(path, mode, owner=owner)
    return "done"


def _host_key(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    load_or_create_host_key(path, "convocate-agent")
    return "done"


def _install_file(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text, mode=0o644)
    return "done"
