"""How an attach ended, and the words the console uses to say so."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from convocate.v1 import attach_pb2

__all__ = ["AttachOutcome", "Mode", "outcome_from_end"]

Mode: TypeAlias = "attach_pb2.AttachMode.ValueType"   # DRIVE, OBSERVE or TAKE_OVER

_REASONS = {
    attach_pb2.END_REASON_DETACHED: "detached",
    attach_pb2.END_REASON_SESSION_ENDED: "session_ended",
    attach_pb2.END_REASON_TAKEN_OVER: "taken_over",
    attach_pb2.END_REASON_AGENT_SHUTDOWN: "agent_shutdown",
    attach_pb2.END_REASON_BACKGROUNDED: "backgrounded",
    attach_pb2.END_REASON_ERROR: "error",
}
_SUMMARY = {
    "detached": 'Detached from "{name}" (it keeps running).',
    "session_ended": 'Session "{name}" ended.',
    "taken_over": 'Another operator took over "{name}".',
    "backgrounded": 'Session "{name}" was backgrounded by another operator.',
    "agent_shutdown": 'The agent of "{name}" is shutting down.',
    "error": 'Attach to "{name}" failed.',
    "broken": 'The connection to the agent of "{name}" was lost.',
}


@dataclass(frozen=True)
class AttachOutcome:
    """``reason`` is one of the keys above; ``broken`` asks for a dialog, not a status line."""

    reason: str
    message: str = ""
    broken: bool = False

    def summary(self, name: str) -> str:
        """One line for the status line."""
        text = _SUMMARY.get(self.reason, "Attach ended: {name}").format(name=name)
        return f"{text} {self.message}".strip() if self.message and self.reason != "detached" else text

    def lines(self, name: str) -> list[str]:
        """Dialog lines: what happened, then the detail."""
        out = [_SUMMARY.get(self.reason, "Attach ended: {name}").format(name=name)]
        if self.message:
            out.append(self.message[:200])
        out.append("The terminal was restored.")
        return out


def outcome_from_end(end: attach_pb2.AttachEnd) -> AttachOutcome:
    """Map the agent's end frame to an outcome (errors become a dialog)."""
    reason = _REASONS.get(end.reason, "error")
    return AttachOutcome(reason, end.message, broken=reason in ("error", "agent_shutdown"))
