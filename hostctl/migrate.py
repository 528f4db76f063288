"""`convocate-host migrate-session` and `drain`: a session's directory from one host to another.

A session is ``<root>/<uuid>/`` (``session.json`` beside ``home/`` and the agent's other
files; see the agent's store), and an agent lists its sessions from disk, so moving the
directory to the same path on the target *is* registering it there. Steps:

1. **check**: where the session is (a re-run after a partial move finishes it), whether
   it runs, that the target has no session on its port or DNS name, and room for it;
2. **stop** it on the source if it runs (the source agent's Kill);
3. **copy**: ``tar`` on the source streamed over the two SSH connections into
   ``<root>/.staging-<uuid>.copy/`` on the target, hashed on both ends; a mismatch or a
   cut stream stops here (the agent removes ``.staging-`` leftovers at its start);
4. **import**: unpacked into ``<root>/.staging-<uuid>`` (a pre-v2 directory is put in the
   new layout on the way) and renamed to ``<root>/<uuid>``: the target agent sees all of
   it or nothing (and removes a ``.staging-`` leftover at its start);
5. **register**: the target agent serves the session (a bounded wait);
6. **remove** it from the source (the source agent's Delete, which also removes its
   stopped container; the shell host's orphan directory is removed), only now that the
   target has it;
7. **start** it on the target if it ran (after the removal, so no engine ever holds two
   containers of one session).

A failure in steps 2-5 removes what the target got and starts the session again on the
source if it ran: the session is whole on one side. A failure in step 6 leaves it on the
target and a stopped copy on the source: re-running removes the copy (and nothing is
started until then). A failure in step 7 leaves it whole, stopped, on the target.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from common.errors import (
    AlreadyExistsError,
    ConvocateError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
)
from common.registry import AgentRecord
from common.session_rules import is_session_id
from hostctl.agent_link import agent_calls
from hostctl.remote import Runner
from hostctl.remote_files import read_file, run_checked
from hostctl.report import Report

__all__ = ["Side", "drain_agent", "migrate_session"]

RECORD = "session.json"
STAGING = ".staging-"
SLACK_KIB = 1024          # room the target must have beyond the session's size


@dataclass(frozen=True)
class Side:
    """One end of a move: the host (for files), its sessions root, its agent (None: the shell host)."""

    runner: Runner
    sessions_root: str
    agent: AgentRecord | None

    @property
    def name(self) -> str:
        """The agent id, or the shell host for pre-v2 orphans."""
        return self.agent.agent_id if self.agent else f"the shell host ({self.runner.name})"


async def _has(side: Side, sid: str) -> bool:
    probe = await side.runner.run(["test", "-f", f"{side.sessions_root}/{sid}/{RECORD}"], root=True)
    return probe.status == 0


async def _home_digest(side: Side, sid: str, home: str) -> str:
    """A digest of a session home's files (names and contents), to compare two copies."""
    script = 'cd "$0" && find "$1" -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum | sha256sum'
    out = await run_checked(side.runner, ["sh", "-c", script, f"{side.sessions_root}/{sid}", home],
                            f"hashing session {sid} on {side.name}")
    return out.split()[0]


async def _running(side: Side, sid: str, timeout: float) -> bool:
    if side.agent is not None:
        async with agent_calls(side.agent, timeout) as calls:
            return (await calls.get(sid)).running
    probe = await side.runner.run(["docker", "inspect", "--format", "{{.State.Running}}",
                                   f"convocate-session-{sid}"], root=True)
    return probe.status == 0 and probe.text() == "true"


async def _layout_is_old(side: Side, sid: str) -> bool:
    """A pre-v2 directory: the record inside the home (no ``home/`` beside it)."""
    probe = await side.runner.run(["test", "-d", f"{side.sessions_root}/{sid}/home"], root=True)
    return probe.status != 0


async def _check_target(src: Side, tgt: Side, sid: str, timeout: float) -> None:
    found = await read_file(src.runner, Path(_path(src, sid, RECORD)))
    if found is None:
        raise NotFoundError(f"session {sid} has no {RECORD} on {src.name}")
    try:
        record = json.loads(found[2])
    except ValueError:
        raise InvalidArgumentError(
            f"session {sid}'s {RECORD} on {src.name} is not JSON: fix or delete it") from None
    port, protocol, dns = record.get("port", 0), record.get("protocol", ""), record.get("dns_name", "")
    if tgt.agent is not None:
        async with agent_calls(tgt.agent, timeout) as calls:
            others = await calls.list_sessions()
        for s in others:
            if (port and s.port == port and s.protocol == protocol) or (dns and s.dns_name == dns):
                raise AlreadyExistsError(
                    f"{tgt.name} already has session {s.id} on port {port}/{protocol} or DNS name {dns!r}: "
                    f"change one of the two (edit in the console) and re-run")
    size = await run_checked(src.runner, ["du", "-sk", _path(src, sid)], "measuring the session")
    free = await run_checked(tgt.runner, ["df", "-Pk", tgt.sessions_root], "checking the target's room")
    need = int(size.split()[0]) + SLACK_KIB
    have = int(free.splitlines()[-1].split()[3])
    if have < need:
        raise ResourceExhaustedError(
            f"{tgt.name} has {have} KiB free under {tgt.sessions_root}, session {sid} needs {need}: "
            "make room there and re-run")


def _path(side: Side, sid: str, *rest: str) -> str:
    return "/".join([side.sessions_root, sid, *rest])


async def _copy(src: Side, tgt: Side, sid: str) -> None:
    """Stream ``tar`` of the session from the source into a file on the target; compare hashes."""
    landing = f"{tgt.sessions_root}/{STAGING}{sid}.copy"
    sent = hashlib.sha256()
    argv = ["tar", "-C", src.sessions_root, "-cf", "-", sid]
    async with src.runner.output(argv, root=True) as out:

        async def hashed() -> AsyncIterator[bytes]:
            async for chunk in out.chunks:
                sent.update(chunk)
                yield chunk

        receive = ["bash", "-c", 'set -o pipefail; umask 077; mkdir -p "$0"; tee "$0/stream.tar" | sha256sum',
                   landing]
        got = await tgt.runner.run(receive, root=True, stdin=hashed(), timeout=3600)
        made = await out.result()
    if made.status != 0:
        raise ConvocateError(f"tar of session {sid} on {src.name} failed: "
                             f"{made.stderr.decode(errors='replace').strip()}")
    if got.status != 0:
        raise ConvocateError(f"receiving session {sid} on {tgt.name} failed: "
                             f"{got.stderr.decode(errors='replace').strip()}")
    if got.text().split()[0] != sent.hexdigest():
        raise FailedPreconditionError(f"session {sid} arrived damaged on {tgt.name} (sha256 mismatch); "
                                      "nothing was imported: re-run")


# $0 sessions root, $1 session id, $2 "old" for a pre-v2 directory: unpack, then one rename.
_IMPORT = """
set -e
cd "$0"
s=".staging-$1"
trap 'rc=$?; rm -rf "$s.copy"; [ $rc -eq 0 ] || rm -rf "$s"' EXIT
[ ! -e "$1" ] || { echo "$0/$1 exists already" >&2; exit 3; }
rm -rf "$s"
mkdir -m 700 "$s"
chown --reference=. "$s"
if [ "$2" = old ]; then
  mkdir -m 750 "$s/home"
  tar -xpf "$s.copy/stream.tar" --numeric-owner -C "$s/home" --strip-components=1
  chown --reference="$s/home/session.json" "$s/home"
  mv "$s/home/session.json" "$s/session.json"
else
  tar -xpf "$s.copy/stream.tar" --numeric-owner -C "$s" --strip-components=1
fi
mv -T "$s" "$1"
"""


async def _import(tgt: Side, sid: str, old_layout: bool) -> None:
    argv = ["sh", "-c", _IMPORT, tgt.sessions_root, sid, "old" if old_layout else "new"]
    await run_checked(tgt.runner, argv,
                      f"importing session {sid} on {tgt.name}", timeout=3600)


async def _registered(tgt: Side, sid: str, timeout: float) -> None:
    if tgt.agent is None:
        return
    deadline = time.monotonic() + timeout
    last = "not asked"
    for _ in range(10_000):
        try:
            async with agent_calls(tgt.agent, max(1.0, min(5.0, deadline - time.monotonic()))) as calls:
                await calls.get(sid)
        except ConvocateError as e:
            last = str(e)
        else:
            return
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    raise ConvocateError(f"{tgt.name} does not serve session {sid} after the import ({last})")


async def _undo(src: Side, tgt: Side, sid: str, was_running: bool, imported: bool, timeout: float) -> str:
    """Remove what the target got; start the session on the source again if it ran. Returns a note."""
    notes: list[str] = []
    if imported and tgt.agent is not None:
        try:
            async with agent_calls(tgt.agent, timeout) as calls:
                await calls.delete(sid)
        except ConvocateError as e:
            notes.append(f"the target agent did not delete its copy ({e})")
    script = 'cd "$0" && rm -rf ".staging-$1" ".staging-$1.copy" && { [ "$2" = keep ] || rm -rf "$1"; }'
    cleanup = ["sh", "-c", script, tgt.sessions_root, sid, "drop" if imported else "keep"]
    done = await tgt.runner.run(cleanup, root=True)
    if done.status != 0:
        notes.append(f"cleaning {tgt.sessions_root}/{sid} on {tgt.name} failed")
    if was_running and src.agent is not None:
        try:
            async with agent_calls(src.agent, timeout) as calls:
                await calls.restart(sid)
        except ConvocateError as e:
            notes.append(f"restarting it on {src.name} failed ({e}): restart it from the console")
    return "; ".join(notes)


async def _remove_source(src: Side, sid: str, timeout: float) -> None:
    if src.agent is not None:
        async with agent_calls(src.agent, timeout) as calls:
            await calls.delete(sid)
        return
    await run_checked(src.runner, ["rm", "-rf", "--one-file-system", _path(src, sid)],
                      f"removing session {sid} from {src.name}")


async def _finish_partial(src: Side, tgt: Side, sid: str, report: Report, timeout: float) -> None:
    """Both sides have it (an earlier run failed at its last step): remove the source's copy."""
    old = await _layout_is_old(src, sid)
    same = await _home_digest(src, sid, "." if old else "home") == await _home_digest(tgt, sid, "home")
    if not same:
        raise FailedPreconditionError(
            f"session {sid} is on {src.name} and on {tgt.name} with different files: keep one "
            f"(delete the other from the console) and re-run")
    if await _running(src, sid, timeout):
        raise FailedPreconditionError(f"session {sid} is on both {src.name} and {tgt.name} and runs on "
                                      f"{src.name}: stop it there and re-run")
    report.add("check", changed=False, detail=f"{tgt.name} has an identical copy (an earlier run stopped "
               "before its last step)")
    if not report.dry_run:
        await _remove_source(src, sid, timeout)
    report.add("remove", changed=True, detail=f"removed from {src.name}")


async def migrate_session(src: Side, tgt: Side, sid: str, report: Report, *, timeout: float = 30.0) -> None:
    """Move session ``sid`` from ``src`` to ``tgt`` (see the module docstring for the steps).

    Raises:
        InvalidArgumentError: not a session id, or the same agent on both ends.
        NotFoundError: neither side has it.
        AlreadyExistsError / ResourceExhaustedError / FailedPreconditionError: a check refused.
        ConvocateError: a step failed; the message says where the session is and what to do.
    """
    if not is_session_id(sid):
        raise InvalidArgumentError(f"{sid!r} is not a session id (a lowercase UUID)")
    if src.agent is not None and tgt.agent is not None and src.agent.agent_id == tgt.agent.agent_id:
        raise InvalidArgumentError(f"source and target are the same agent ({src.name})")
    report.data["session"] = sid
    on_src, on_tgt = await _has(src, sid), await _has(tgt, sid)
    if not on_src:
        if on_tgt:
            report.add("check", changed=False, detail=f"session {sid} is on {tgt.name} already")
            return
        raise NotFoundError(f"session {sid} is neither on {src.name} nor on {tgt.name}")
    if on_tgt:
        await _finish_partial(src, tgt, sid, report, timeout)
        return
    was_running = await _running(src, sid, timeout)
    if src.agent is None and was_running:
        raise FailedPreconditionError(f"container convocate-session-{sid} is still running on {src.name}: "
                                      f"docker stop convocate-session-{sid} there, then re-run")
    await _check_target(src, tgt, sid, timeout)
    old = await _layout_is_old(src, sid)
    report.data["was_running"] = was_running
    report.add("check", changed=False, detail=f"{'running' if was_running else 'stopped'} on {src.name}"
               + (", pre-v2 layout" if old else "") + f"; {tgt.name} has room and no clash")
    if report.dry_run:
        for step, detail in (("stop", f"kill it on {src.name}" if was_running else "already stopped"),
                             ("copy", f"tar | ssh | sha256 into {tgt.sessions_root}/{STAGING}{sid}.copy/"),
                             ("import", f"unpack and rename to {tgt.sessions_root}/{sid}"),
                             ("register", f"{tgt.name} serves it"),
                             ("remove", f"delete it from {src.name}"),
                             ("start", f"restart it on {tgt.name}" if was_running else "left stopped")):
            report.add(step, changed=step != "register" and (step != "start" or was_running), detail=detail)
        return
    imported = False
    try:
        if was_running:
            assert src.agent is not None  # noqa: S101 - orphans that run were refused above
            async with agent_calls(src.agent, timeout) as calls:
                await calls.kill(sid)
        report.add("stop", changed=was_running, detail=f"killed on {src.name}" if was_running else "stopped")
        await _copy(src, tgt, sid)
        report.add("copy", changed=True, detail=f"to {tgt.name}, sha256 matched")
        await _import(tgt, sid, old)
        imported = True
        report.add("import", changed=True, detail=f"{tgt.sessions_root}/{sid}")
        await _registered(tgt, sid, timeout)
        report.add("register", changed=False, detail=f"{tgt.name} serves it")
    except (ConvocateError, OSError) as e:
        note = await _undo(src, tgt, sid, was_running, imported, timeout)
        again = " (running again)" if was_running and not note else ""
        where = f"session {sid} stays on {src.name}{again}"
        raise ConvocateError(f"migrating {sid} to {tgt.name} failed: {e}; {where}"
                             + (f"; {note}" if note else "") + "; fix the cause and re-run") from None
    try:
        await _remove_source(src, sid, timeout)
    except ConvocateError as e:
        raise ConvocateError(f"session {sid} is on {tgt.name} now, but removing it from {src.name} failed "
                             f"({e}): re-run migrate-session to remove that copy") from None
    report.add("remove", changed=True, detail=f"removed from {src.name}")
    if was_running and tgt.agent is not None:
        try:
            async with agent_calls(tgt.agent, timeout) as calls:
                await calls.restart(sid)
        except ConvocateError as e:
            raise ConvocateError(f"session {sid} is on {tgt.name} now (stopped), but starting it there "
                                 f"failed ({e}): fix the cause and restart it from the console") from None
    report.add("start", changed=was_running, detail=f"running on {tgt.name}" if was_running else "stopped")


async def drain_agent(src: Side, tgt: Side, report: Report, *, timeout: float = 30.0) -> list[str]:
    """Move every session of ``src``'s agent to ``tgt``, one by one; return the ids that failed.

    Each session is one step in ``report`` (``migrate <id>``) with its outcome.
    """
    if src.agent is None:
        raise InvalidArgumentError("drain moves sessions off an agent: name one with --host")
    async with agent_calls(src.agent, timeout) as calls:
        sessions = [s.id for s in await calls.list_sessions()]
    failed: list[str] = []
    for sid in sessions:
        one = Report("migrate-session", src.name, dry_run=report.dry_run)
        try:
            await migrate_session(src, tgt, sid, one, timeout=timeout)
        except ConvocateError as e:
            failed.append(sid)
            report.add(f"migrate {sid}", changed=False, detail=f"FAILED: {e}")
            continue
        report.add(f"migrate {sid}", changed=one.changed, detail=f"to {tgt.name}")
    report.data["failed"] = failed
    report.data["moved"] = [sid for sid in sessions if sid not in failed]
    return failed
