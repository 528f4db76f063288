"""Warm ``Router.refresh`` rounds in a child process, so one run can time two revisions' console code.

``python benchmarks/refresh_child.py CONFIG_JSON`` (run as a file, with ``PYTHONSAFEPATH=1``
and the revision's code first on ``PYTHONPATH``: it imports only ``common`` and ``shell``,
whatever revision they come from) starts the console's Router over the fleet's registry
and another over its first agent alone, waits until every agent is reachable, then
alternates warm refreshes of both. Around each refresh of the fleet it reads the CPU of
the agents and of dockerd (``/proc/PID/schedstat``), outside the timed window. It prints
one JSON object: wall and CPU ms per refresh, the first agent's wall and CPU, and the
agents' and dockerd's CPU ms per refresh of the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from common.logging import configure_logging
from shell.fleet.router import Router, RouterConfig

READY_TIMEOUT = 180.0


def _cpu_ns(pids: list[int]) -> int:
    """CPU time (ns) of every thread of ``pids`` so far."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):   # a process or thread that ended meanwhile
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    total += int((task / "schedstat").read_text().split()[0])
    return total


async def _reachable(config: RouterConfig, n: int) -> Router:
    router = Router(config)
    await router.start()
    deadline = time.monotonic() + READY_TIMEOUT
    while not (len(router.clients) == n and all(c.reachable for c in router.clients.values())):
        if time.monotonic() > deadline:
            await router.close()
            raise RuntimeError(f"not all {n} agents reachable within {READY_TIMEOUT} s")
        await asyncio.sleep(0.005)
    return router


async def _timed(router: Router, listed: int) -> tuple[float, float] | None:
    """One refresh: (wall ms, CPU ms of this process), or None if it did not list every session."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    rows = await router.refresh()
    wall, cpu = (time.perf_counter() - t0) * 1000, (time.process_time() - cpu0) * 1000
    if sum(1 for r in rows if not r.placeholder and not r.unknown) != listed:
        return None
    return wall, cpu


async def _main(c: dict[str, Any]) -> dict[str, object]:
    configure_logging("cli", level="ERROR")
    n, sessions, agent_pids, docker_pids = c["n"], c["sessions"], c["agent_pids"], c["docker_pids"]

    def config(registry: str, name: str) -> RouterConfig:
        return RouterConfig(registry_dir=Path(registry), runtime_dir=Path(c["runtime_dir"]) / name,
                            status_socket=Path(c["status_socket"]), client_id="bench-refresh")

    series: dict[str, list[float]] = {k: [] for k in ("wall", "cpu", "one_wall", "one_cpu", "agents_cpu",
                                                      "docker_cpu")}
    incomplete = 0
    fleet = await _reachable(config(c["registry"], "all"), n)
    try:
        one = await _reachable(config(c["registry_one"], "one"), 1)
        try:
            for i in range(c["warmup"] + c["runs"]):
                a0, d0 = _cpu_ns(agent_pids), _cpu_ns(docker_pids)
                mine = await _timed(fleet, n * sessions)
                a1, d1 = _cpu_ns(agent_pids), _cpu_ns(docker_pids)
                base = await _timed(one, sessions)
                if mine is None or base is None:   # an agent dropped out (a loaded machine)
                    incomplete += 1
                elif i >= c["warmup"]:
                    for key, value in (("wall", mine[0]), ("cpu", mine[1]), ("one_wall", base[0]),
                                       ("one_cpu", base[1]), ("agents_cpu", (a1 - a0) / 1e6),
                                       ("docker_cpu", (d1 - d0) / 1e6)):
                        series[key].append(value)
        finally:
            await one.close()
    finally:
        await fleet.close()
    return {**series, "incomplete": incomplete}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_main(json.loads(sys.argv[1])))))
