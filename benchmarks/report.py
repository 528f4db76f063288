"""Markdown tables of benchmark results, written to benchmarks/results/."""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "QUICK", "Figures", "Row", "host_line", "load_average", "median", "percentile", "write_markdown",
    "write_table",
]

RESULTS = Path(__file__).resolve().parent / "results"


class _Quick:
    """``--quick``: a short smoke run (fewer samples); set once by ``python -m benchmarks``."""

    on = False


QUICK = _Quick()


@dataclasses.dataclass
class Row:
    """One figure of the summary table: what, against what, the two values, the ratio and the target."""

    figure: str
    baseline: str
    value: float
    base: float
    unit: str
    target: str
    met: Callable[[float], bool]
    why: str = ""
    higher_is_better: bool = False
    reference: bool = False            # a floor shown for context: no target, no verdict

    def cells(self) -> list[str]:
        """Markdown cells: figure, baseline, measured, baseline value, ratio, target, verdict."""
        ratio = self.value / self.base if self.base else float("nan")
        verdict = "reference" if self.reference else "met" if self.met(ratio) else "missed"
        shown = f"{ratio:.2f}x" if self.base else "n/a"
        return [self.figure, self.baseline, f"{self.value:.4g} {self.unit}", f"{self.base:.4g} {self.unit}",
                shown, self.target, verdict + (f": {self.why}" if self.why else "")]


@dataclasses.dataclass
class Figures:
    """What one suite adds to the summary: table rows, markdown lines after the table, and
    measured numbers other sections use, by name (``inputs``: the fleet suite's per-agent
    costs for the scale-on-paper section)."""

    rows: list[Row] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    inputs: dict[str, float] = dataclasses.field(default_factory=dict)


def load_average() -> str:
    """The 1/5/15-minute load averages, as ``uptime`` prints them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def host_line() -> str:
    """When and where: date, machine, CPUs, Python, load average (the machine is shared)."""
    return (f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node() or 'this machine'} "
            f"({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}), "
            f"load average {load_average()}{' (--quick)' if QUICK.on else ''}.")


def write_markdown(name: str, lines: list[str]) -> Path:
    """Write ``results/<name>.md`` from ``lines`` and print it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines).rstrip("\n") + "\n"
    out = RESULTS / f"{name}.md"
    out.write_text(text)
    print(text)
    return out


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values`` (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def write_table(name: str, title: str, header: list[str], rows: list[list[str]], notes: list[str]) -> Path:
    """Write ``results/<name>.md`` and return its path; also print it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# {title}",
        "",
        (
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on this machine "
            f"({platform.machine()}, Python {platform.python_version()})."
        ),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        *(f"- {n}" for n in notes),
        "",
    ]
    text = "\n".join(lines)
    out = RESULTS / f"{name}.md"
    out.write_text(text)
    print(text)
    return out


def median(values: list[float]) -> float:
    """Median, NaN when empty."""
    return statistics.median(values) if values else float("nan")
