"""How an attach ended, and the words the console uses to say so."""

from __future__ import annotations

from dataclasses import dataclass

from common.domain import AttachEnded, EndReason
from common.errors import ConvocateError, UnavailableError

__all__ = ["AttachOutcome", "error_outcome", "outcome_from_end"]

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
    """``reason`` is one of the keys above (an :class:`EndReason` value or "broken");
    ``broken`` asks for a dialog, not a status line."""

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


def outcome_from_end(end: AttachEnded) -> AttachOutcome:
    """Map the agent's end frame to an outcome (errors become a dialog)."""
    broken = end.reason in (EndReason.ERROR, EndReason.AGENT_SHUTDOWN)
    return AttachOutcome(end.reason.value, end.message, broken=broken)


def error_outcome(err: ConvocateError) -> AttachOutcome:
    """A failed call: "broken" when the agent is unreachable, else the agent's refusal."""
    return AttachOutcome("broken" if isinstance(err, UnavailableError) else "error", str(err), broken=True)
