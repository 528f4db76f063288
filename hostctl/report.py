"""What a provisioning command did, step by step, for people (lines) and scripts (JSON).

Every step says whether it changed anything, so a second run of an idempotent command
reports ``changed: false`` throughout and says so in one line. Exit codes of
``convocate-host`` are defined here, once (the README and ``--help`` list them).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from common.text import safe_display

__all__ = [
    "EXIT_CODES", "EXIT_FAILED", "EXIT_HELP", "EXIT_PARTIAL", "EXIT_ROLLED_BACK", "Report", "StepResult",
    "say_err",
]

EXIT_FAILED = 1        # a step failed; the one line on stderr says what to do
EXIT_PARTIAL = 3       # some agents (or sessions) did not answer / could not be moved
EXIT_ROLLED_BACK = 4   # update failed and the previous release is running again
EXIT_CODES = {
    0: "done (or nothing to change)",
    EXIT_FAILED: "failed: the line on stderr says what to do",
    2: "usage error (bad option)",
    EXIT_PARTIAL: "partial: some agents or sessions did not answer or were not moved",
    EXIT_ROLLED_BACK: "update failed; the previous release was restored and runs",
    130: "interrupted",
}
EXIT_HELP = "Exit status: " + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items()) + "."


def say_err(line: str) -> None:
    """Progress for people goes to stderr, so stdout stays the command's result."""
    print(safe_display(line), file=sys.stderr)


@dataclass(frozen=True)
class StepResult:
    """One step: its name, whether it changed anything (or would, in a dry run), details."""

    step: str
    changed: bool
    detail: str = ""


@dataclass
class Report:
    """The steps of one command on one host."""

    command: str
    host: str
    dry_run: bool = False
    steps: list[StepResult] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    say: Callable[[str], None] | None = None   # progress lines as steps finish (people, not --json)

    def add(self, step: str, changed: bool, detail: str = "") -> None:
        """Record a finished (or, in a dry run, planned) step."""
        self.steps.append(StepResult(step, changed, detail))
        if self.say is not None:
            mark = ("would change" if self.dry_run else "changed") if changed else "unchanged"
            self.say(f"[convocate-host] {step}: {mark}" + (f" ({detail})" if detail else ""))

    @property
    def changed(self) -> bool:
        """True if any step changed something (or would)."""
        return any(s.changed for s in self.steps)

    def summary(self) -> str:
        """One closing line."""
        if self.dry_run:
            return f"{self.command} on {self.host}: dry run, nothing was changed"
        if not self.changed:
            return f"{self.command} on {self.host}: already in place, nothing changed"
        n = sum(s.changed for s in self.steps)
        return f"{self.command} on {self.host}: done ({n} of {len(self.steps)} steps changed something)"

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``--json``)."""
        return {"command": self.command, "host": self.host, "dry_run": self.dry_run, "changed": self.changed,
                **self.data, "steps": [asdict(s) for s in self.steps]}

    def emit(self, as_json: bool) -> None:
        """Print the result: JSON on stdout, or the summary line."""
        if as_json:
            print(json.dumps(self.as_dict()))
        else:
            print(safe_display(self.summary()))
