"""`convocate-host update --host`: a new release (and image) on a host, with the old one as fallback.

1. **release**: the bundle installed as a new release *beside* the running one
   (:func:`hostctl.bundle.install_release`; nothing running is touched);
2. **units**: the new release renders the systemd files of each role the host has
   (:mod:`hostctl.units`: the installers' own rendering, with the options the role was
   installed with), and this module's firewall boot unit and script are rendered with
   the ports the host's unit names (:func:`hostctl.firewall.plan_refresh`); they are
   compared with the host's; nothing is written yet;
3. **sessions**: the agent's sessions listed (when the host is a registered agent);
4. **switch**: ``current`` renamed to the new release (``previous`` keeps the old), then
   the unit files that differ written atomically, ``systemctl daemon-reload``, and the
   files the release adds enabled as install enables them (``--now`` where it starts them);
5. **restart**: the roles' services restarted (``systemctl try-restart`` of the ones that run).
   The agent's unit has ``KillMode=mixed`` and its containers live in
   ``convocate-sessions.slice`` under dockerd, so running sessions keep running on their
   image; the new agent adopts them;
6. **check**: the agent answers ``Ping`` with the new version within the wait;
   otherwise ``current`` goes back to the previous release, the files it enabled are
   disabled, the unit files get back what they held (daemon-reload), the services that ran
   before are restarted on it (the firewall's boot unit too, if it changed), and the
   command fails with :class:`RolledBackError` (exit 4);
7. **image**: the session image pushed and the pointer rewritten (used from each
   session's next restart: sessions roll forward one by one);
8. **sessions** listed again: every session that ran before still runs.

A host already on this release (its units as the release renders them, and the image)
changes nothing and says so; a host on this release whose units differ (an earlier
update left them) gets them written and its services restarted, with the same fallback.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from common.errors import ConvocateError
from common.registry import AgentRecord
from hostctl import bundle as bundles
from hostctl import firewall, units
from hostctl.agent_link import agent_calls
from hostctl.agent_setup import AgentSetup, image_step
from hostctl.remote import Runner
from hostctl.remote_files import run_checked
from hostctl.report import Report

__all__ = ["RolledBackError", "UpdateSpec", "update_host"]

RELOAD = ("systemctl", "daemon-reload")
RUNNING = frozenset({"active", "activating", "reloading"})   # states a rollback brings back


class RolledBackError(ConvocateError):
    """The new release did not come up; the previous one was restored and runs."""


@dataclass(frozen=True)
class UpdateSpec:
    """What ``update`` rolls out and how it restarts and checks the host."""

    bundle: bundles.Bundle
    prefix: Path = bundles.DEFAULT_PREFIX
    bin_dir: Path = bundles.DEFAULT_BIN_DIR
    python: str = "python3"
    restart_argv: tuple[str, ...] | None = None      # None: `systemctl try-restart` of the roles' services
    reload_argv: tuple[str, ...] = RELOAD            # after unit files were written or put back
    rollback_argv: tuple[str, ...] | None = None     # None: `systemctl restart` of the services that ran
    systemd_dir: Path = units.SYSTEMD_DIR
    host_root: Path = Path("/")                  # where the host's files are (tests: a prefix)
    systemctl: tuple[str, ...] = ("systemctl",)  # enables (and a rollback disables) new unit files
    agent: AgentRecord | None = None             # the host's agent, if it is one (checked and listed)
    image: AgentSetup | None = None              # the image step's settings (None: no image push)
    wait_timeout: float = 60.0


async def _sessions(record: AgentRecord, timeout: float) -> dict[str, bool]:
    async with agent_calls(record, timeout) as calls:
        return {s.id: s.running for s in await calls.list_sessions()}


async def _check(record: AgentRecord, version: str | None, timeout: float) -> str:
    """'' once the agent answers Ping with ``version`` (None: any); else what was seen last."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = "no answer"
    for _ in range(10_000):
        left = deadline - loop.time()
        if left <= 0:
            break
        try:
            async with agent_calls(record, min(5.0, max(left, 0.5))) as calls:
                info = await calls.ping()
            if version is None or info.version == version:
                return ""
            seen = f"it answers with version {info.version}"
        except ConvocateError as e:
            seen = str(e)
        await asyncio.sleep(min(0.5, max(deadline - loop.time(), 0)))
    return seen


async def update_host(runner: Runner, spec: UpdateSpec, report: Report) -> None:
    """Roll ``spec.bundle`` (and the image) out to the host behind ``runner``.

    Raises:
        RolledBackError: the new release did not answer; the previous one runs again.
        ConvocateError: a step failed before the switch (nothing running was touched).
    """
    b, dry = spec.bundle, report.dry_run
    current = await bundles.release_on_host(runner, spec.prefix)
    if not current and not await bundles.linked_release(runner, spec.prefix):
        raise ConvocateError(f"no convocate release on {runner.name} under {spec.prefix}: "
                             "run `convocate-host install` there first")
    rendered = True
    if current == b.digest:
        report.add("release", changed=False, detail=f"convocate {b.version} ({b.release}) is current")
    else:
        rendered = not await bundles.install_release(runner, b, report, prefix=spec.prefix,
                                                     python=spec.python) or not dry
        report.add("release", changed=True, detail=f"install convocate {b.version} ({b.release}) beside "
                   f"the running release")
    plan = await _units(runner, spec, rendered, report)
    before = await _sessions(spec.agent, spec.wait_timeout) if spec.agent and not dry else {}
    switching = current != b.digest
    if switching or plan.changes:
        previous = await bundles.linked_release(runner, spec.prefix) if switching else ""
        if switching:
            report.add("switch", changed=True,
                       detail=f"current -> releases/{b.release} (previous: {previous})")
        if dry:
            report.add("restart", changed=True, detail=" ".join(_restart_argv(spec, plan) or ("nothing",)))
        else:
            await _switch_restart_and_check(runner, spec, previous if switching else None, plan, report)
    if spec.image is not None:
        await image_step(runner, spec.image, report)
    if spec.agent is not None and not dry:
        after = await _sessions(spec.agent, spec.wait_timeout)
        lost = sorted(sid for sid, running in before.items() if running and not after.get(sid))
        report.data["sessions"] = {"before": before, "after": after}
        if lost:
            raise ConvocateError(f"{len(lost)} session(s) stopped during the update on {runner.name}: "
                                 f"{', '.join(lost)}; restart them from the console")
        report.add("sessions", changed=False,
                   detail=f"{sum(after.values())} running, {len(after) - sum(after.values())} stopped, "
                          "as before")


async def _units(runner: Runner, spec: UpdateSpec, rendered: bool, report: Report) -> units.UnitPlan:
    """The new release's units against the host's (``rendered`` False: a dry run before its install)."""
    roles = await units.host_roles(runner, spec.systemd_dir)
    names = ", ".join(r.name for r in roles)
    walls, wall_note = await firewall.plan_refresh(runner, spec.systemd_dir)
    if not roles and not walls:
        report.add("units", changed=False, detail="no role installed yet (init-agent/init-shell install "
                   "the units)" + (f"; {wall_note}" if wall_note else ""))
        return units.UnitPlan((), ())
    if not rendered and roles:
        report.add("units", changed=True, detail=f"the {names} units as the new release renders them "
                   "(known once it is installed)" + "".join(f", {c.name}" for c in walls) +
                   ", then systemctl daemon-reload")
        return units.UnitPlan(roles, walls, also_restart=(firewall.FIREWALL_UNIT,))
    release_bin = spec.prefix / "releases" / spec.bundle.release / "venv" / "bin"
    plan = await units.plan_units(runner, release_bin, roles, spec.systemd_dir, spec.host_root)
    plan = units.UnitPlan(plan.roles, plan.changes + walls, "; ".join(n for n in (plan.note, wall_note) if n),
                          also_restart=(firewall.FIREWALL_UNIT,))
    report.data["units"] = {"roles": [r.name for r in roles], "changed": plan.names, "enabled": plan.enabled}
    said = []
    if plan.changes:
        enable = f"; enable {', '.join(plan.enabled)}" if plan.enabled else ""
        said.append(f"write {', '.join(plan.names)}, then {' '.join(spec.reload_argv)}{enable}")
    elif roles and not plan.note:
        said.append(f"the {names} units are as this release renders them")
    said += [plan.note] if plan.note else []
    report.add("units", changed=bool(plan.changes), detail="; ".join(said) or "nothing to change")
    return plan


def _restart_argv(spec: UpdateSpec, plan: units.UnitPlan) -> tuple[str, ...] | None:
    """How the services restart on the new release (None: the host runs none of ours yet)."""
    if spec.restart_argv is not None:
        return spec.restart_argv
    services = plan.services
    return ("systemctl", "try-restart", *services) if services else None


async def _active_services(runner: Runner, services: list[str]) -> list[str]:
    """The ``services`` that run now (they run again after a rollback)."""
    if not services:
        return []
    states = (await runner.run(["systemctl", "is-active", *services])).text().splitlines()
    return [svc for svc, state in zip(services, states, strict=False) if state.strip() in RUNNING]


async def _switch_restart_and_check(runner: Runner, spec: UpdateSpec, previous: str | None,
                                    plan: units.UnitPlan, report: Report) -> None:
    """Switch (``previous`` None: the host is on this release already), write the units, restart, check;
    on a failure put back the release, the units and the services that ran, and raise."""
    rollback = spec.rollback_argv
    if rollback is None:
        active = await _active_services(runner, plan.services)
        rollback = ("systemctl", "restart", *active) if active else None
    restart, failure = _restart_argv(spec, plan), ""
    try:
        if previous is not None:
            await bundles.switch_release(runner, spec.bundle.release, prefix=spec.prefix,
                                         bin_dir=spec.bin_dir)
        await units.apply_units(runner, plan.changes, spec.reload_argv, spec.systemctl)
        if restart is not None:
            await run_checked(runner, list(restart), "restarting the services")
    except ConvocateError as e:
        failure = str(e)
    if not failure and spec.agent is not None:
        seen = await _check(spec.agent, spec.bundle.version, spec.wait_timeout)
        failure = f"the agent did not come back on {spec.bundle.version} ({seen})" if seen else ""
    if not failure:
        said = " ".join(restart or ("nothing to restart",))
        report.add("restart", changed=restart is not None, detail=said +
                   (f"; {spec.agent.agent_id} answers" if spec.agent else ""))
        return
    try:
        await units.restore_units(runner, plan.changes, spec.reload_argv, spec.systemctl)
        units_back = f" with its units ({', '.join(plan.names)}) as they were" if plan.changes else ""
    except ConvocateError as e:     # the release goes back all the same; the message says what is not
        units_back = f" but its units are not all as they were ({e})"
    if previous == "":
        raise ConvocateError(f"update on {runner.name}: {failure}; there is no previous release "
                             "to go back to")
    if previous is not None:
        await bundles.switch_release(runner, previous, prefix=spec.prefix, bin_dir=spec.bin_dir)
    if rollback is not None:
        await run_checked(runner, list(rollback), "restarting the services on the previous release")
    back = "" if spec.agent is None else await _check(spec.agent, None, spec.wait_timeout)
    release = previous or spec.bundle.release
    raise RolledBackError(
        f"update on {runner.name} failed: {failure}; release {release} is current again{units_back}"
        + (" and answers" if not back else f" but the agent does not answer ({back})")
        + ": fix the cause (see the service's journal) and re-run update"
    )
