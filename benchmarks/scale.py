"""Scale on paper: from costs measured in this run, how far one host goes and what runs out first.

Every input is measured in the same benchmark run: the per-session figures by the
summary's own suites (idle_cpu: a session container's resident memory and CPU, its
containerd-shim; keystroke: the agent's resident memory with one and with more
sessions), the shell side's per-agent costs by :mod:`benchmarks.fleet` (real agents on
loopback addresses: the console's and the status service's memory and open files at 1
and at N agents, CPU per warm refresh per agent, per reconnect handshake, and idle).
Limits that are settings, not measurements, are named as such below.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

__all__ = ["CliCosts", "ShellCosts", "scale_lines"]

C = TypeVar("C")

CONSOLE_TARGET_MIB = 150
STATUS_TARGET_MIB = 100
AGENT_TARGET_MIB = 150
CLI_MIB = 250        # assumed memory of one real Claude CLI (node) when benchmarks.real_cli did not run
# The console raises its soft RLIMIT_NOFILE to the hard limit (common.open_files): a login
# session's hard limit, systemd's DefaultLimitNOFILE=1024:524288 (a setting).
CONSOLE_NOFILE = 524288
STATUS_NOFILE = 8192    # LimitNOFILE of convocate-status.service (deploy/systemd; a setting)
REFRESH_BUDGET_MS = 1000   # a refresh an operator waits on
RECONNECT_BUDGET_S = 10    # every agent back after the shell host restarts


@dataclass(frozen=True)
class CliCosts:
    """One session's costs with the real Claude CLI at its welcome screen (:mod:`benchmarks.real_cli`)."""

    cli_uss_mib: float          # what one more session's container adds (private pages)
    cli_pss_mib: float
    cli_idle_cpu_pct: float     # % of one core
    cli_shim_mib: float         # its containerd-shim's resident memory

    @classmethod
    def from_inputs(cls, inputs: dict[str, float]) -> CliCosts | None:
        """Rebuild from :class:`benchmarks.report.Figures` inputs; None if the suite did not run."""
        return _from_inputs(cls, inputs)

    def inputs(self) -> dict[str, float]:
        """The figures by name, as :meth:`from_inputs` reads them."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ShellCosts:
    """The console's and the status service's costs, at 1 agent and per further agent (one run)."""

    agents: float                      # the largest fleet measured
    console_base_mib: float
    console_per_agent_mib: float
    status_base_mib: float
    status_per_agent_mib: float
    console_base_fds: float
    console_fds_per_agent: float
    status_base_fds: float
    status_fds_per_agent: float
    refresh_cpu_ms_per_agent: float    # a warm Router.refresh (standing tunnels)
    refresh_ms: float                  # its wall time at the largest fleet
    handshake_cpu_ms: float            # client CPU per agent to reach it (SSH, forward, first Ping)
    console_idle_pct_per_agent: float  # % of one core, keepalives and heartbeats
    status_idle_pct_per_agent: float

    @classmethod
    def from_inputs(cls, inputs: dict[str, float]) -> ShellCosts | None:
        """Rebuild from :class:`benchmarks.report.Figures` inputs; None if the fleet suite did not run."""
        return _from_inputs(cls, inputs)


def _from_inputs(cls: type[C], inputs: dict[str, float]) -> C | None:
    """``cls`` (a dataclass of floats) from the inputs named as its fields; None if one is missing."""
    names = [f.name for f in dataclasses.fields(cls)]   # type: ignore[arg-type]
    if not all(n in inputs for n in names):
        return None
    return cls(**{n: inputs[n] for n in names})


def _mem_total_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _until(budget: float, base: float, slope: float) -> float:
    """How many agents fit in ``budget`` at ``base`` plus ``slope`` each (inf: no growth measured)."""
    return float("inf") if slope <= 1e-9 else max(0.0, (budget - base) / slope) + 1


def _n(value: float) -> str:
    return "unbounded (no growth measured)" if value == float("inf") else f"≈ {value:,.0f}"


def _agent_host(mem: float, cores: int, *, session_mib: float, shim_mib: float, agent_base_mib: float,
                agent_per_session_mib: float, session_cpu_pct: float, cli: CliCosts | None) -> list[str]:
    per_session = session_mib + shim_mib + agent_per_session_mib
    if cli is not None:
        with_cli = cli.cli_uss_mib + cli.cli_shim_mib + agent_per_session_mib
        cli_memory = ("host memory with the real Claude CLI at its welcome screen in each (measured: "
                      f"{cli.cli_uss_mib:.0f} MiB private to its container, {cli.cli_shim_mib:.1f} MiB its "
                      "containerd-shim)")
    else:
        with_cli = per_session + CLI_MIB
        cli_memory = f"host memory with a real Claude CLI in each (assumed {CLI_MIB} MiB, not measured here)"
    limits = {
        cli_memory: mem * 0.8 / with_cli,
        f"the agent's own memory target ({AGENT_TARGET_MIB} MiB)":
            _until(AGENT_TARGET_MIB, agent_base_mib, agent_per_session_mib) - 1,
        "CPU of idle sessions (tmux and a shell)":
            float("inf") if session_cpu_pct <= 0.01 else cores * 100 / session_cpu_pct,
    }
    if cli is not None:
        limits["CPU of the real CLIs waiting at their prompts"] = (
            float("inf") if cli.cli_idle_cpu_pct <= 0.01 else cores * 100 / cli.cli_idle_cpu_pct)
    first = min(limits, key=lambda k: limits[k])
    return [
        ("**One agent host.** Per idle session (measured in this run): "
         f"{session_mib:.1f} MiB in the container (tmux + the session's shell), {shim_mib:.1f} MiB for its "
         f"containerd-shim, {agent_per_session_mib:.2f} MiB in the agent; CPU {session_cpu_pct:.3f} % of a "
         "core per idle session."
         + ("" if cli is None else f" With the real Claude CLI at its welcome screen: {cli.cli_uss_mib:.0f} "
            f"MiB private to the container (PSS {cli.cli_pss_mib:.0f} MiB), CPU {cli.cli_idle_cpu_pct:.3f} "
            "% of a core (benchmarks/results/real_cli.md).")),
        "",
        *(f"- {what}: {_n(n)} sessions;" for what, n in limits.items()),
        f"- with the offline image (no CLI), memory alone: {_n(mem * 0.8 / per_session)} sessions.",
        "",
        (f"**First to run out on an agent host: {first}** ({_n(limits[first])} sessions"
         + ("" if cli is None else "; a CLI working on a conversation holds more than one at its prompt")
         + "). Busy sessions are bounded by what their CLIs compute, attached ones by dockerd's TTY copy "
         "(~30-40 MB/s per host, reference measurement)."),
        "",
    ]


def _shell_side(c: ShellCosts, cores: int) -> list[str]:
    console_cpu = c.console_idle_pct_per_agent
    status_cpu = c.status_idle_pct_per_agent
    limits = {
        f"console memory (its {CONSOLE_TARGET_MIB} MB target)":
            _until(CONSOLE_TARGET_MIB, c.console_base_mib, c.console_per_agent_mib),
        f"status service memory (its {STATUS_TARGET_MIB} MB target)":
            _until(STATUS_TARGET_MIB, c.status_base_mib, c.status_per_agent_mib),
        f"console open files (hard limit {CONSOLE_NOFILE} of a login session, a setting)":
            _until(CONSOLE_NOFILE, c.console_base_fds, c.console_fds_per_agent),
        f"status service open files (LimitNOFILE={STATUS_NOFILE}, a setting)":
            _until(STATUS_NOFILE, c.status_base_fds, c.status_fds_per_agent),
        "console idle CPU (one event loop: one core)": _until(100, 0, console_cpu),
        "status service idle CPU (one core)": _until(100, 0, status_cpu),
    }
    first = min(limits, key=lambda k: limits[k])
    refresh_n = REFRESH_BUDGET_MS / max(c.refresh_cpu_ms_per_agent, 1e-6)
    reconnect_n = RECONNECT_BUDGET_S * 1000 * cores / max(c.handshake_cpu_ms, 1e-6)
    return [
        (f"**One console and one status service** (per-agent costs measured in this run from 1 to "
         f"{c.agents:.0f} real agents): console {c.console_base_mib:.0f} MiB + "
         f"{c.console_per_agent_mib:.2f} MiB and {c.console_fds_per_agent:.1f} open files per agent; status "
         f"service {c.status_base_mib:.0f} MiB + {c.status_per_agent_mib:.2f} MiB and "
         f"{c.status_fds_per_agent:.1f} open files per agent; idle CPU per agent {console_cpu:.3f} % "
         f"(console) and {status_cpu:.3f} % (status service) of a core; a warm refresh "
         f"{c.refresh_cpu_ms_per_agent:.2f} ms of CPU per agent ({c.refresh_ms:.0f} ms wall at "
         f"{c.agents:.0f}); reaching an agent {c.handshake_cpu_ms:.1f} ms of client CPU."),
        "",
        *(f"- {what}: {_n(n)} agents;" for what, n in limits.items()),
        (f"- not a hard limit, but felt: a warm refresh stays under {REFRESH_BUDGET_MS / 1000:g} s of CPU "
         f"up to {_n(refresh_n)} agents, and after the shell host restarts every agent is back within "
         f"{RECONNECT_BUDGET_S} s (handshakes on all {cores} cores) up to {_n(reconnect_n)} agents."),
        "",
        f"**First to run out on the shell side: {first}** ({_n(limits[first])} agents).",
        "",
    ]


def scale_lines(*, session_mib: float, shim_mib: float, agent_base_mib: float,
                agent_per_session_mib: float, session_cpu_pct: float,
                shell: ShellCosts | None = None, cli: CliCosts | None = None) -> list[str]:
    """The markdown section (``shell``: the fleet suite's measurements, ``cli``: the real CLI's;
    None where that suite did not run)."""
    mem = _mem_total_mib()
    cores = os.cpu_count() or 1
    return [
        "## Scale on paper", "",
        f"This host: {mem / 1024:.1f} GiB of memory, {cores} cores; 80 % of the memory counts as usable.",
        "",
        *_agent_host(mem, cores, session_mib=session_mib, shim_mib=shim_mib, agent_base_mib=agent_base_mib,
                     agent_per_session_mib=agent_per_session_mib, session_cpu_pct=session_cpu_pct, cli=cli),
        *(_shell_side(shell, cores) if shell is not None else [
            "**One console and one status service**: not measured in this run (the fleet suite did not run).",
            ""]),
    ]
