"""A release's systemd files on a host: rendered by that release, compared, written, put back.

The role installers (``convocate-agent install``, ``convocate install``) are the one
rendering of their units; each release prints its own with ``convocate-agent units`` /
``convocate units`` (JSON: name under the systemd directory -> text). ``update`` runs the
new release's command for each role the host has (found by its main unit being installed),
compares with the files there, writes the ones that differ atomically and reloads systemd;
on a rollback it writes back what each file held before (or removes a file that was new).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from common.errors import ConvocateError, FailedPreconditionError
from hostctl.remote import Runner
from hostctl.remote_files import read_file, run_checked, write_file

__all__ = [
    "ROLES",
    "SYSTEMD_DIR",
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
    """One systemd file the new release changes: its name, new text and what was there (None: nothing)."""

    name: str
    text: str
    before: bytes | None


@dataclass(frozen=True)
class UnitPlan:
    """The roles found and the files of theirs that differ from what the release renders."""

    roles: tuple[Role, ...]
    changes: tuple[UnitChange, ...]
    note: str = ""    # why the units were left alone (a release that cannot print them)

    @property
    def names(self) -> list[str]:
        """The changed files' names."""
        return [c.name for c in self.changes]


def parse_rendered(text: str, source: str) -> dict[str, str]:
    """The JSON a release's ``units`` command printed, checked: names of units or drop-ins -> text.

    Raises:
        FailedPreconditionError: not such an object, or a name outside the systemd directory.
    """
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise FailedPreconditionError(f"{source} printed no JSON object of unit texts: {text[:200]!r}")
    bad = sorted(k for k in parsed if not _NAME.fullmatch(k) or ".." in k)
    if bad:
        raise FailedPreconditionError(f"{source} names files that are no unit or drop-in: {', '.join(bad)}")
    return dict(parsed)


def changed_units(rendered: dict[str, str], current: dict[str, bytes | None]) -> list[UnitChange]:
    """The rendered files whose text differs from ``current`` (None: absent), in name order."""
    return [UnitChange(name, text, current.get(name)) for name, text in sorted(rendered.items())
            if current.get(name) != text.encode()]


async def host_roles(runner: Runner, systemd_dir: Path = SYSTEMD_DIR) -> tuple[Role, ...]:
    """The roles whose main unit is installed on the host."""
    tests = [await runner.run(["test", "-f", str(systemd_dir / r.marker)], root=True) for r in ROLES]
    return tuple(role for role, test in zip(ROLES, tests, strict=True) if test.status == 0)


async def plan_units(runner: Runner, release_bin: Path, roles: tuple[Role, ...],
                     systemd_dir: Path = SYSTEMD_DIR) -> UnitPlan:
    """What the release whose commands are in ``release_bin`` renders for ``roles``, against the host's files.

    A release older than the ``units`` command renders nothing: the files stay as they
    are and the plan's note says so.

    Raises:
        ConvocateError: the release's command failed or printed something else.
    """
    changes: list[UnitChange] = []
    for role in roles:
        argv = [str(release_bin / role.command), "units"]
        result = await runner.run(argv)
        if result.status == _NO_SUCH_COMMAND and b"No such command" in result.stderr:
            return UnitPlan(roles, (), note=f"this release's {role.command} cannot print its units: "
                                            "they stay as they are (init-agent/init-shell write them)")
        if result.status != 0:
            await run_checked(runner, argv, f"rendering the {role.name} units", root=False)
        rendered = parse_rendered(result.stdout.decode(errors="replace"), f"{role.command} units")
        current: dict[str, bytes | None] = {}
        for name in rendered:
            found = await read_file(runner, systemd_dir / name)
            current[name] = None if found is None else found[2]
        changes += changed_units(rendered, current)
    return UnitPlan(roles, tuple(changes))


async def apply_units(runner: Runner, changes: tuple[UnitChange, ...], reload_argv: tuple[str, ...],
                      systemd_dir: Path = SYSTEMD_DIR) -> None:
    """Write each changed file atomically (0644, root's), then reload systemd (nothing if none changed)."""
    if not changes:
        return
    for change in changes:
        await write_file(runner, systemd_dir / change.name, change.text, "644")
    await run_checked(runner, list(reload_argv), "reloading systemd")


async def restore_units(runner: Runner, changes: tuple[UnitChange, ...], reload_argv: tuple[str, ...],
                        systemd_dir: Path = SYSTEMD_DIR) -> None:
    """Put back what each changed file held before (remove the ones that were new), then reload systemd.

    Every file is tried even if one fails; the first failure is raised at the end.
    """
    if not changes:
        return
    failed: list[str] = []
    for change in changes:
        path = systemd_dir / change.name
        try:
            if change.before is None:
                await run_checked(runner, ["rm", "-f", str(path)], f"removing {path}")
            else:
                await write_file(runner, path, change.before, "644")
        except ConvocateError as e:
            failed.append(str(e))
    await run_checked(runner, list(reload_argv), "reloading systemd")
    if failed:
        raise ConvocateError("; ".join(failed))
