"""Scale on paper: from measured per-session and per-agent costs, what runs out first.

The per-session figures come from this run (idle_cpu: a session container's resident
memory and CPU, its containerd-shim; keystroke: the agent's resident memory with one and
with more sessions). The console's and status service's per-agent costs come from the
fleet-scale run recorded in the shared transport measurements (N real agents on
loopback addresses); they are quoted as constants below, with that source.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["scale_lines"]

# Fleet-scale run of the landed code (transport-measurements.md, last section): RSS of the
# console and the status service with 1 and 50 agents, client CPU per SSH handshake and
# per agent per warm Router.refresh().
CONSOLE_MIB = (84.5, 96.3)
STATUS_MIB = (64.8, 79.0)
HANDSHAKE_CPU_MS = 3.8
REFRESH_CPU_MS = 0.5
CONSOLE_TARGET_MIB = 150
STATUS_TARGET_MIB = 100
AGENT_TARGET_MIB = 150
CLI_MIB = 250   # assumed resident memory of one real Claude CLI (node) process; not measured here


def _mem_total_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _per_agent(pair: tuple[float, float]) -> float:
    return (pair[1] - pair[0]) / 49


def scale_lines(*, session_mib: float, shim_mib: float, agent_base_mib: float,
                agent_per_session_mib: float, session_cpu_pct: float) -> list[str]:
    """The markdown section."""
    mem = _mem_total_mib()
    cores = os.cpu_count() or 1
    per_session = session_mib + shim_mib + agent_per_session_mib
    by_memory_offline = mem * 0.8 / per_session
    by_memory_cli = mem * 0.8 / (per_session + CLI_MIB)
    by_agent_target = (AGENT_TARGET_MIB - agent_base_mib) / max(agent_per_session_mib, 1e-3)
    by_cpu = "unbounded" if session_cpu_pct <= 0.01 else f"{cores * 100 / session_cpu_pct:.0f}"
    c_slope, s_slope = _per_agent(CONSOLE_MIB), _per_agent(STATUS_MIB)
    console_n = (CONSOLE_TARGET_MIB - CONSOLE_MIB[0]) / c_slope
    status_n = (STATUS_TARGET_MIB - STATUS_MIB[0]) / s_slope
    refresh, handshake = REFRESH_CPU_MS, HANDSHAKE_CPU_MS
    return [
        "## Scale on paper", "",
        f"This host: {mem / 1024:.1f} GiB of memory, {cores} cores; 80 % of the memory counts as usable.",
        "",
        ("**One agent host.** Per idle session (measured in this run): "
        f"{session_mib:.1f} MiB in the container (tmux + the session's shell), {shim_mib:.1f} MiB for its "
        f"containerd-shim, {agent_per_session_mib:.2f} MiB in the agent; CPU {session_cpu_pct:.3f} % of a "
        "core per idle session (the entrypoint now blocks instead of polling)."),
        "",
        (f"- memory, offline image: ≈ {by_memory_offline:.0f} sessions; with a real Claude CLI "
        f"(assumed {CLI_MIB} MiB each, not measured here) ≈ {by_memory_cli:.0f} sessions: "
        "**memory runs out first, and the CLI is nearly all of it**;"),
        (f"- the agent's own memory target ({AGENT_TARGET_MIB} MiB) allows ≈ {by_agent_target:.0f} sessions "
        f"(it starts at {agent_base_mib:.0f} MiB);"),
        (f"- idle CPU allows {by_cpu} sessions; busy sessions are bounded by what their CLIs compute, "
        "and attached ones by dockerd's TTY copy (~30-40 MB/s per host, reference measurement)."),
        "",
        ("**One console and one status service** (per-agent costs from the fleet-scale run, N real "
        "agents on loopback):"),
        "",
        (f"- console memory grows ≈ {c_slope:.2f} MiB per agent: its {CONSOLE_TARGET_MIB} MiB target "
        f"holds ≈ {console_n:.0f} agents;"),
        (f"- status service memory grows ≈ {s_slope:.2f} MiB per agent: its {STATUS_TARGET_MIB} MiB target "
        f"holds ≈ {status_n:.0f} agents, **the first limit on the shell side**;"),
        (f"- CPU: a warm refresh costs ≈ {refresh} ms per agent, so one core refreshes ≈ "
        f"{1000 / refresh:.0f} agents per second; reconnecting all agents costs ≈ {handshake} ms of "
        f"CPU each (1,000 agents: {handshake:.1f} s of one core)."),
        "",
    ]
