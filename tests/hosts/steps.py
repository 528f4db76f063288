"""Timed steps of the throwaway-hosts run, for the summary printed at its end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["RUN_LOG", "RunLog", "StepName", "StepRecord"]


@dataclass(frozen=True)
class StepRecord:
    """One step: what, where, how long, and whether it finished."""

    name: str
    host: str
    seconds: float
    ok: bool


@dataclass
class StepName:
    """The name a step is recorded under (a block may refine it, e.g. "built" or "cached")."""

    text: str


@dataclass
class RunLog:
    """Every host started and every step timed in this pytest session."""

    hosts: list[str] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)

    @contextmanager
    def step(self, name: str, host: str = "-") -> Iterator[StepName]:
        """Time the block as step ``name`` on ``host`` (recorded as failed if it raises).

        The block may rename the step through the yielded :class:`StepName`.
        """
        start = time.monotonic()
        label = StepName(name)
        ok = False
        try:
            yield label
            ok = True
        finally:
            self.steps.append(StepRecord(label.text, host, time.monotonic() - start, ok))

    def summary_lines(self) -> list[str]:
        """The summary table: hosts, then one line per step with its seconds."""
        total = sum(s.seconds for s in self.steps)
        lines = [f"hosts started: {len(self.hosts)} ({', '.join(self.hosts) or 'none'})",
                 f"steps: {len(self.steps)}, {total:.1f} s in steps"]
        width = max((len(s.name) for s in self.steps), default=4)
        hwidth = max((len(s.host) for s in self.steps), default=4)
        lines += [f"  {s.name:<{width}}  {s.host:<{hwidth}}  {s.seconds:7.1f} s"
                  f"{'' if s.ok else '  FAILED'}" for s in self.steps]
        return lines


RUN_LOG = RunLog()
