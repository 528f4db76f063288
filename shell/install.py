"""``convocate install``: prepare a shell host (run as root, idempotent).

Steps (inventory §1.1, with v2.0.0's bugs fixed: the user gets uid 1337, the agent
registry is readable by it, dnsmasq is reloaded):

1. platform check (Linux);
2. the ``claude`` user (uid 1337; never in the docker group: the console needs no Docker);
3. the login shell (``/etc/shells`` + ``usermod --shell``);
4. directories: ``/etc/convocate/agent-keys`` (0700, claude), ``/var/lib/convocate``;
5. ``convocate-status.service`` (rendered here; ``deploy/systemd`` holds the same text);
6. dnsmasq: the hosts file and the ``addn-hosts`` drop-in, then reload dnsmasq if it runs;
7. the sshd drop-in: ``Match User claude``, no forwarding, ``ForceCommand`` the console,
   validated with ``sshd -t``;
8. the session image: ``--base offline`` builds the offline test image, any other
   value is the base image of the production Dockerfile.

Files in directories the user owns are written atomically and chowned without
following links, so a re-run cannot be turned against root.

``--root`` prefixes every file path (tests, image building); commands are not run
under ``--root`` unless they only touch files. ``--dry-run`` prints the plan.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common.defaults import AGENT_KEYS_DIR, DNSMASQ_HOSTS_FILE, SHELL_STATE_DIR, SSHD_DROPIN
from common.errors import FailedPreconditionError, PermissionDeniedError
from common.install_options import exec_start, read_options, unit_setting, write_options
from common.paths import atomic_write, private_dir, user_ids
from common.sshd_dropin import SHELL_ROLE, DropIn, install_dropin, reload_sshd
from common.version import VERSION

__all__ = ["ENABLE", "START", "InstallOptions", "Step", "UnitOptions", "installed_unit_options",
           "plan_install", "render_status_unit", "render_units", "run_install", "with_base"]

STATUS_UNIT = "convocate-status.service"
ENABLE = (STATUS_UNIT,)     # install enables these ...
START = (STATUS_UNIT,)      # ... and starts these with them (--now)
OPTIONS_FILE = Path("/etc/convocate/install-options.json")
ROLE = "shell"
DEFAULT_EXEC = "/usr/local/bin/convocate"

DNSMASQ_HEADER = "# Managed by convocate.\n"


def render_status_unit(exec_path: str = DEFAULT_EXEC, user: str = "claude") -> str:
    """The systemd unit of the status service (``deploy/systemd/convocate-status.service``)."""
    return f"""[Unit]
Description=convocate status service: agent events and heartbeats (SSH :223)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User={user}
Group={user}
ExecStart={exec_path} status serve
Restart=on-failure
RestartSec=2s
RuntimeDirectory=convocate
RuntimeDirectoryMode=0700
StateDirectory=convocate
StateDirectoryMode=0755
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes
ProtectSystem=strict
PrivateTmp=yes
# Bounds the SSH server's connections (it caps unauthenticated ones well below this).
LimitNOFILE=8192
Environment=PYTHONUNBUFFERED=1
TimeoutStopSec=15s

[Install]
WantedBy=multi-user.target
"""


def render_units(exec_path: str = DEFAULT_EXEC, user: str = "claude") -> dict[str, str]:
    """Every systemd file the shell role installs: its name under ``/etc/systemd/system`` -> text.

    The one rendering: ``install`` writes them, and ``convocate units`` prints them for
    ``convocate-host update`` (which applies a new release's units).
    """
    return {STATUS_UNIT: render_status_unit(exec_path, user)}


@dataclass(frozen=True)
class UnitOptions:
    """The install options that end up in the shell's unit files (recorded in ``OPTIONS_FILE``)."""

    exec_path: str = DEFAULT_EXEC
    user: str = "claude"

    def as_record(self) -> dict[str, str]:
        """The record's options."""
        return {"exec_path": self.exec_path, "user": self.user}


def installed_unit_options(root: Path = Path("/")) -> UnitOptions:
    """How the shell role on the host under ``root`` was installed: its record, else its installed unit.

    A host installed before the record existed gets them from its status unit
    (``ExecStart=<exec_path> status serve``, ``User=<user>``).

    Raises:
        FailedPreconditionError: a bad record, or neither a record nor such a unit (nothing is guessed).
    """
    record = root / OPTIONS_FILE.relative_to("/")
    recorded = read_options(record, ROLE)
    if recorded is not None:
        exec_path, user = recorded.get("exec_path", ""), recorded.get("user", "")
        if not exec_path.startswith("/") or not user:
            raise FailedPreconditionError(f"{record} names no absolute exec_path and user")
        return UnitOptions(exec_path, user)
    unit = root / "etc" / "systemd" / "system" / STATUS_UNIT
    try:
        text: str | None = unit.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = None
    words, unit_user = exec_start(text or ""), unit_setting(text or "", "User")
    if words[1:] != ["status", "serve"] or not words[0].startswith("/") or not unit_user:
        found = "there is none" if text is None else "no 'ExecStart=<path> status serve' and User="
        raise FailedPreconditionError(
            f"cannot tell how the shell role was installed: no {record}, and from {unit} neither "
            f"({found}); re-run `convocate install` with its options to record them")
    return UnitOptions(words[0], unit_user)


def with_base(dockerfile: str, base: str) -> str:
    """``dockerfile`` with its first ``FROM`` replaced by ``FROM <base>``."""
    lines = dockerfile.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip().upper().startswith("FROM "):
            lines[i] = f"FROM {base}\n"
            break
    return "".join(lines)


def build_offline_image(run_input: Callable[[list[str], bytes], None]) -> str:
    """Build the offline session image from the agent's build context; return its tag."""
    from agent.public import offline_image_context  # noqa: PLC0415 - heavy, rare

    context, tag = offline_image_context()
    probe = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False)
    if probe.returncode != 0:      # the tag is a hash of the context: same tag, same image
        run_input(["docker", "build", "-q", "-t", tag, "-"], context)
    return tag


def run_with_input(argv: list[str], data: bytes) -> None:
    """Run ``argv`` with ``data`` on stdin; a failure raises with its stderr."""
    r = subprocess.run(argv, input=data, capture_output=True, check=False)
    if r.returncode != 0:
        err = (r.stderr or r.stdout).decode(errors="replace").strip()[:300]
        raise FailedPreconditionError(f"{' '.join(argv)} failed: {err}")


def run_command(argv: list[str]) -> None:
    """Run one install command; a failure raises with its stderr (the side-effect boundary)."""
    r = subprocess.run(argv, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise FailedPreconditionError(f"{' '.join(argv)} failed: {(r.stderr or r.stdout).strip()[:300]}")


@dataclass(frozen=True)
class InstallOptions:
    """What ``convocate install`` was asked to do."""

    root: Path = Path("/")
    dry_run: bool = False
    user: str = "claude"
    uid: int = 1337
    base: str = "ubuntu:24.04"
    exec_path: str = DEFAULT_EXEC
    build_image: bool = True
    start_service: bool = True


@dataclass
class Step:
    """One step: what it says, and what it does."""

    title: str
    action: Callable[[], None]
    details: list[str] = field(default_factory=list)


def _path(opts: InstallOptions, absolute: str) -> Path:
    return opts.root / absolute.lstrip("/")


def _write(path: Path, text: str, mode: int, owner: tuple[int, int] = (-1, -1)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text, mode=mode, uid=owner[0], gid=owner[1])


def _owner(opts: InstallOptions) -> tuple[int, int]:
    """The user's (uid, gid) on a live install as root; (-1, -1) (keep) otherwise."""
    if opts.root == Path("/") and os.geteuid() == 0:
        return user_ids(opts.user)
    return -1, -1


def _group_members(root: Path, group: str) -> list[str]:
    path = root / "etc" / "group"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    for line in lines:
        fields = line.split(":")
        if len(fields) == 4 and fields[0] == group:
            return [m for m in fields[3].split(",") if m]
    return []


def _user_exists(name: str, root: Path = Path("/")) -> bool:
    passwd = root / "etc" / "passwd"
    if not passwd.exists():
        return False
    return any(line.split(":", 1)[0] == name for line in passwd.read_text(encoding="utf-8").splitlines())


def plan_install(opts: InstallOptions, run: Callable[[list[str]], None] | None = None) -> list[Step]:
    """Build the steps for ``opts`` (nothing runs yet).

    Args:
        opts: the options.
        run: how to run a command (default :func:`run_command`).

    Returns:
        The steps in order.
    """
    run = run or run_command
    chroot = [] if opts.root == Path("/") else ["--root", str(opts.root)]
    user, live = opts.user, opts.root == Path("/")
    steps: list[Step] = []

    def check_platform() -> None:
        if not sys.platform.startswith("linux"):
            raise FailedPreconditionError(f"convocate install needs Linux, not {sys.platform}")

    steps.append(Step("Checking platform", check_platform))

    def link_command() -> None:
        target = _path(opts, opts.exec_path)
        if target.exists() or target.is_symlink():
            return
        source = Path(sys.executable).parent / "convocate"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source if source.exists() else Path(sys.argv[0]).resolve())

    steps.append(Step("Installing the convocate command", link_command,
                      [f"{opts.exec_path} -> {Path(sys.executable).parent / 'convocate'}"]))

    def make_user() -> None:
        if not _user_exists(user, opts.root):
            run(["useradd", *chroot, "--uid", str(opts.uid), "--create-home", "--shell", opts.exec_path,
                 user])
        if user in _group_members(opts.root, "docker"):   # v2.0 added it: the Docker socket is root
            run(["gpasswd", *chroot, "--delete", user, "docker"])

    steps.append(Step(f"Creating {user} user (uid {opts.uid})", make_user,
                      [f"useradd --uid {opts.uid} --create-home {user} (not in the docker group)"]))

    def login_shell() -> None:
        shells = _path(opts, "/etc/shells")
        text = shells.read_text(encoding="utf-8") if shells.exists() else ""
        if opts.exec_path not in text.split():
            _write(shells, text + ("" if not text or text.endswith("\n") else "\n") + opts.exec_path + "\n",
                   0o644)
        run(["usermod", *chroot, "--shell", opts.exec_path, user])

    steps.append(Step("Configuring login shell", login_shell, [f"{opts.exec_path} -> /etc/shells"]))

    def directories() -> None:
        uid = _owner(opts)[0]
        for absolute, mode in ((str(AGENT_KEYS_DIR), 0o700), (str(SHELL_STATE_DIR), 0o755)):
            private_dir(_path(opts, absolute), mode, owner=None if uid == -1 else uid)

    steps.append(Step("Creating directories", directories,
                      [f"{AGENT_KEYS_DIR} (0700)", f"{SHELL_STATE_DIR} (0755)"]))

    systemd_dir = _path(opts, "/etc/systemd/system")
    units = render_units(opts.exec_path, user)

    def status_unit() -> None:
        for name, text in units.items():
            _write(systemd_dir / name, text, 0o644)
        if live and opts.start_service and shutil.which("systemctl"):
            run(["systemctl", "daemon-reload"])
            for name in ENABLE:
                run(["systemctl", "enable", *(["--now"] if name in START else []), name])

    steps.append(Step(f"Installing {STATUS_UNIT}", status_unit, [str(systemd_dir / n) for n in units]))
    record = _path(opts, str(OPTIONS_FILE))

    def record_options() -> None:
        write_options(record, ROLE, UnitOptions(opts.exec_path, user).as_record())

    steps.append(Step("Recording the install options", record_options,
                      [f"{record}: exec_path {opts.exec_path}, user {user}"]))

    hosts = _path(opts, str(DNSMASQ_HOSTS_FILE))
    dropin = _path(opts, "/etc/dnsmasq.d/convocate.conf")

    def dnsmasq() -> None:
        if not hosts.exists() and not hosts.is_symlink():
            _write(hosts, DNSMASQ_HEADER, 0o644, _owner(opts))
        dropin_text = ("# Managed by convocate: session DNS names -> agent IPs.\n"
                       f"addn-hosts={DNSMASQ_HOSTS_FILE}\n")
        _write(dropin, dropin_text, 0o644)
        if live and shutil.which("systemctl"):
            probe = subprocess.run(["systemctl", "is-active", "--quiet", "dnsmasq"], check=False)
            if probe.returncode == 0:
                run(["systemctl", "restart", "dnsmasq"])

    steps.append(Step("Setting up dnsmasq integration", dnsmasq, [str(hosts), str(dropin)]))

    sshd_dropin = _path(opts, str(SSHD_DROPIN))

    def sshd() -> None:
        lock = DropIn(user, opts.exec_path, permit_tty=True, role=SHELL_ROLE)
        install_dropin(sshd_dropin, lock, system=live)
        if live:
            reload_sshd()

    steps.append(Step("Locking down OpenSSH for the console user", sshd,
                      [f"{sshd_dropin}: Match User {user}, no forwarding, ForceCommand {opts.exec_path}",
                       "validated with sshd -t"]))

    if opts.build_image:
        tag = f"convocate:{VERSION}"

        def image() -> None:
            run(["docker", "info", "--format", "{{.ServerVersion}}"])   # is an engine there?
            if opts.base == "offline":
                build_offline_image(run_with_input)
            else:
                source = Path(__file__).resolve().parents[1] / "deploy" / "docker"
                if not (source / "Dockerfile").exists():
                    raise FailedPreconditionError(
                        f"no Dockerfile at {source}: use --base offline for the offline image")
                with tempfile.TemporaryDirectory(prefix="convocate-build-") as ctx:
                    shutil.copytree(source, ctx, dirs_exist_ok=True)
                    dockerfile = Path(ctx) / "Dockerfile"
                    dockerfile.write_text(with_base(dockerfile.read_text(encoding="utf-8"), opts.base),
                                          encoding="utf-8")
                    run(["docker", "build", "-t", tag, ctx])

        steps.append(Step(f"Building session image (base {opts.base})", image))
    return steps


def run_install(opts: InstallOptions, say: Callable[[str], None],
                run: Callable[[list[str]], None] | None = None) -> None:
    """Run (or, with ``dry_run``, print) every step, saying ``[install] <step>...``.

    Raises:
        PermissionDeniedError: not root (for a live install).
        ConvocateError: the first step that fails.
    """
    if opts.root == Path("/") and not opts.dry_run and os.geteuid() != 0:
        raise PermissionDeniedError("convocate install must be run as root (use sudo)")
    for step in plan_install(opts, run):
        if opts.dry_run:
            say(f"[install] would: {step.title}" + "".join(f"\n    {d}" for d in step.details))
            continue
        say(f"[install] {step.title}...")
        step.action()
        say(f"[install] {step.title}... done")
    say("[install] Dry run: nothing was changed." if opts.dry_run else "[install] Installation complete.")
