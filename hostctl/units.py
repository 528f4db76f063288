"""A release's systemd files on a host: rendered by that release, compared, written, put back.

The role installers (``convocate-agent install``, ``convocate install``) are the one
rendering of their units; each release prints its own with ``convocate-agent units`` /
``convocate units`` (:func:`common.install_options.units_document`: the files by name
under the systemd directory, the ones install enables and of those the ones it starts),
rendered with the options the host's role was installed with (its install record, or
its installed unit; exit :data:`~common.install_options.OPTIONS_UNKNOWN` when neither
tells, and the role's units stay as they are). ``update`` runs the new release's command
for each role the host has (found by its main unit being installed), compares with the
files there, writes the ones that differ atomically, reloads systemd and enables the
files that are new and that install enables; on a rollback it disables those, and writes
back what each file held before (or removes a file that was new).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from common.errors import ConvocateError, FailedPreconditionError
from common.install_options import OPTIONS_UNKNOWN
from hostctl.remote import Runner
from hostctl.remote_files import read_file, run_checked, write_file

__all__ = [
    "ROLES",
    "SYSTEMD_DIR",
    "Rendered",
    "Role",
    "UnitChange",
    "UnitPlan",
    "apply_units",
    "changed_units",
    "host_roles",
    "parse_rendered",
    "plan_units",
    "restore_units",
]

SYSTEMD_DIR = Path("/etc/systemd/system")
# A unit or drop-in name: "x.service", "x.service.d/10-y.conf" (no "..", nothing absolute).
_NAME = re.compile(r"[A-Za-z0-9@_.:-]+\.(service|socket|timer|slice|target|path|mount)"
                   r"(\.d/[A-Za-z0-9_.-]+\.conf)?")
_NO_SUCH_COMMAND = 2  # typer's usage error: a release older than the units command


@dataclass(frozen=True)
class Role:
    """A role whose units update keeps current: found by ``marker`` (its main unit) being installed."""

    name: str
    marker: str       # the unit file whose presence says the host has the role
    command: str      # the release's command that prints the role's units
    service: str      # the service that runs the role (restarted after a rollback)


ROLES = (
    Role("agent", "convocate-agent.service", "convocate-agent", "convocate-agent.service"),
    Role("shell", "convocate-status.service", "convocate", "convocate-status.service"),
)


@dataclass(frozen=True)
class UnitChange:
    """One file the new release changes: its name, new text, what was there (None: nothing) and where.

    ``enable``/``start``: the file is new and install enables it (and starts it with
    ``--now``); update does the same, and a rollback disables it.
    """

    name: str
    text: str
    before: bytes | None
    path: Path
    mode: str = "644"
    enable: bool = False
    start: bool = False


@dataclass(frozen=True)
class UnitPlan:
    """The roles found and the files of theirs that differ from what the release renders."""

    roles: tuple[Role, ...]
    changes: tuple[UnitChange, ...]
    note: str = ""                       # why some units were left alone
    also_restart: tuple[str, ...] = ()   # other units whose files changed (restarted if they run)

    @property
    def names(self) -> list[str]:
        """The changed files' names."""
        return [c.name for c in self.changes]

    @property
    def enabled(self) -> list[str]:
        """The new files update enables."""
        return [c.name for c in self.changes if c.enable]

    @property
    def services(self) -> list[str]:
        """The roles' services, then the other units whose files changed."""
        return [r.service for r in self.roles] + [u for u in self.also_restart if u in self.names]


@dataclass(frozen=True)
class Rendered:
    """What a release's ``units`` command printed: the files, and those install enables (and starts)."""

    units: dict[str, str]
    enable: tuple[str, ...] = ()
    start: tuple[str, ...] = ()


def _names(value: object, source: str, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FailedPreconditionError(f"{source} printed no list of names as {what!r}")
    return tuple(value)


def parse_rendered(text: str, source: str) -> Rendered:
    """The JSON a release's ``units`` command printed, checked.

    Either ``{"units": {name: text}, "enable": [...], "start": [...]}`` or, from a
    release before the install record, the bare ``{name: text}`` (nothing enabled).

    Raises:
        FailedPreconditionError: not such an object, a name outside the systemd directory,
            or one to enable that is not among the files.
    """
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    enable: tuple[str, ...] = ()
    start: tuple[str, ...] = ()
    if isinstance(parsed, dict) and isinstance(parsed.get("units"), dict):
        enable = _names(parsed.get("enable", []), source, "enable")
        start = _names(parsed.get("start", []), source, "start")
        parsed = parsed["units"]
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise FailedPreconditionError(f"{source} printed no JSON object of unit texts: {text[:200]!r}")
    bad = sorted(k for k in parsed if not _NAME.fullmatch(k) or ".." in k)
    if bad:
        raise FailedPreconditionError(f"{source} names files that are no unit or drop-in: {', '.join(bad)}")
    stray = sorted(set(enable + start) - set(parsed))
    if stray:
        raise FailedPreconditionError(f"{source} enables files it does not print: {', '.join(stray)}")
    return Rendered(dict(parsed), enable, start)


def changed_units(rendered: Rendered, current: dict[str, bytes | None],
                  systemd_dir: Path = SYSTEMD_DIR) -> list[UnitChange]:
    """The rendered files whose text differs from ``current`` (None: absent), in name order.

    A file that is new and that install enables is marked to be enabled (and started).
    """
    changes = []
    for name, text in sorted(rendered.units.items()):
        before = current.get(name)
        if before == text.encode():
            continue
        new = before is None and name in rendered.enable
        changes.append(UnitChange(name, text, before, systemd_dir / name, enable=new,
                                  start=new and name in rendered.start))
    return changes


async def host_roles(runner: Runner, systemd_dir: Path = SYSTEMD_DIR) -> tuple[Role, ...]:
    """The roles whose main unit is installed on the host."""
    tests = [await runner.run(["test", "-f", str(systemd_dir / r.marker)], root=True) for r in ROLES]
    return tuple(role for role, test in zip(ROLES, tests, strict=True) if test.status == 0)


async def plan_units(runner: Runner, release_bin: Path, roles: tuple[Role, ...],
                     systemd_dir: Path = SYSTEMD_DIR, root: Path = Path("/")) -> UnitPlan:
    """What the release whose commands are in ``release_bin`` renders for ``roles``, against the host's files.

    ``root``: where the host's files are (``/``; tests: a prefix, passed as ``--root``).
    A role whose release cannot print its units (older than the ``units`` command), or
    cannot tell the options its role was installed with, keeps its files as they are;
    the plan's note says so.

    Raises:
        ConvocateError: the release's command failed or printed something else.
    """
    changes: list[UnitChange] = []
    notes: list[str] = []
    for role in roles:
        under = ["--root", str(root)] if root != Path("/") else []
        argv = [str(release_bin / role.command), "units", *under]
        result = await runner.run(argv)
        if result.status == _NO_SUCH_COMMAND and b"No such command" in result.stderr:
            notes.append(f"this release's {role.command} cannot print its units: they stay as they are "
                         "(init-agent/init-shell write them)")
            continue
        if result.status == OPTIONS_UNKNOWN:
            said = result.stderr.decode(errors="replace").strip().removeprefix("error: ")
            notes.append(f"the {role.name} units stay as they are: {said}")
            continue
        if result.status != 0:
            await run_checked(runner, argv, f"rendering the {role.name} units", root=False)
        rendered = parse_rendered(result.stdout.decode(errors="replace"), f"{role.command} units")
        current: dict[str, bytes | None] = {}
        for name in rendered.units:
            found = await read_file(runner, systemd_dir / name)
            current[name] = None if found is None else found[2]
        changes += changed_units(rendered, current, systemd_dir)
    return UnitPlan(roles, tuple(changes), note="; ".join(notes))


async def apply_units(runner: Runner, changes: tuple[UnitChange, ...], reload_argv: tuple[str, ...],
                      systemctl: tuple[str, ...] = ("systemctl",)) -> None:
    """Write each changed file atomically (root's), reload systemd, enable the new ones install enables."""
    if not changes:
        return
    for change in changes:
        await write_file(runner, change.path, change.text, change.mode)
    await run_checked(runner, list(reload_argv), "reloading systemd")
    for change in changes:
        if change.enable:
            argv = [*systemctl, "enable", *(["--now"] if change.start else []), change.name]
            await run_checked(runner, argv, f"enabling {change.name}")


async def restore_units(runner: Runner, changes: tuple[UnitChange, ...], reload_argv: tuple[str, ...],
                        systemctl: tuple[str, ...] = ("systemctl",)) -> None:
    """Disable the files :func:`apply_units` enabled, put back what each file held before (remove the
    ones that were new), then reload systemd.

    Every step is tried even if one fails; the first failure is raised at the end.
    """
    if not changes:
        return
    failed: list[str] = []
    for change in changes:
        if change.enable:
            result = await runner.run([*systemctl, "disable", "--now", change.name], root=True)
            if result.status != 0:
                failed.append(f"disabling {change.name}: {result.stderr.decode(errors='replace').strip()}")
    for change in changes:
        try:
            if change.before is None:
                await run_checked(runner, ["rm", "-f", str(change.path)], f"removing {change.path}")
            else:
                await write_file(runner, change.path, change.before, change.mode)
        except ConvocateError as e:
            failed.append(str(e))
    await run_checked(runner, list(reload_argv), "reloading systemd")
    if failed:
        raise ConvocateError("; ".join(failed))
