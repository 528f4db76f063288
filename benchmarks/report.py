"""Markdown tables of benchmark results, written to benchmarks/results/."""

from __future__ import annotations

import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["median", "percentile", "write_table"]

RESULTS = Path(__file__).resolve().parent / "results"


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
