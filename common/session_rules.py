"""The v2.0.0 session rules shared by the agent (which enforces them) and the console
(which checks forms before sending): name, DNS name and protocol, with v2.0.0's messages
word for word (inventory §2.3).
"""

from __future__ import annotations

import re
import uuid

from common.errors import InvalidArgumentError

__all__ = ["DEFAULT_DNS_ZONE", "MAX_DNS_NAME", "MAX_NAME_BYTES", "PORT_AUTO", "in_dns_zone", "is_session_id",
           "printable", "validate_dns_name", "validate_name", "validate_protocol"]

PORT_AUTO = -1
# Session DNS names live under this zone, so a session cannot shadow localhost,
# github.com or the shell's own names in dnsmasq. "" turns the confinement off.
DEFAULT_DNS_ZONE = "convocate.internal"
MAX_NAME_BYTES = 64
MAX_DNS_NAME = 253
_NAME_OK = re.compile(r"[A-Za-z0-9 _.\-]")
_LABEL_OK = re.compile(r"[a-z0-9-]")


def is_session_id(text: str) -> bool:
    """True if ``text`` is a canonical UUID string (lowercase, hyphenated): a session id."""
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def printable(text: str) -> str:
    """``text`` with control and other unprintable characters escaped (NUL -> ``\\x00``).

    Everything a request carries that an error message echoes back goes through this, so a
    message never holds a raw control character (a terminal would act on it).
    """
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def validate_name(name: str) -> str:
    """Return the trimmed name, or raise with the v2.0.0 message.

    Raises:
        InvalidArgumentError: empty, longer than 64 bytes, or a character outside
            letters, digits, space, ``_``, ``-``, ``.``.
    """
    trimmed = name.strip()
    if not trimmed:
        raise InvalidArgumentError("session name cannot be empty")
    if len(trimmed.encode()) > MAX_NAME_BYTES:
        raise InvalidArgumentError("session name cannot exceed 64 characters")
    for ch in trimmed:
        if not _NAME_OK.fullmatch(ch):
            raise InvalidArgumentError(
                f"session name contains invalid character: '{printable(ch)}' "
                "(only letters, digits, spaces, _, -, . allowed)"
            )
    return trimmed


def in_dns_zone(name: str, zone: str) -> bool:
    """True if ``name`` is a name strictly below ``zone`` (or ``zone`` is "", no confinement)."""
    return not zone or name.endswith("." + zone.strip(".").lower())


def validate_dns_name(dns_name: str, zone: str | None = None) -> str:
    """Return the trimmed, lowercased DNS name ("" allowed), or raise the v2.0.0 message.

    Args:
        dns_name: what the user typed (or what a record says).
        zone: the session DNS zone (None or "": any name, as v2.0.0). Given, a single
            label is placed in the zone (``web`` -> ``web.<zone>``) and any other name
            must end in ``.<zone>``.

    Raises:
        InvalidArgumentError: too long, a bad label length, a label starting or ending
            with ``-``, a character outside ``a-z 0-9 -``, or outside the zone.
    """
    name = dns_name.strip().lower()
    if not name:
        return ""
    if zone and "." not in name:
        name = f"{name}.{zone.strip('.').lower()}"
    if len(name) > 253:
        raise InvalidArgumentError("DNS name too long (max 253 chars)")
    for label in name.split("."):
        if not 1 <= len(label) <= 63:
            raise InvalidArgumentError("DNS label length must be 1-63 chars")
        if label.startswith("-") or label.endswith("-"):
            raise InvalidArgumentError("DNS label cannot start or end with '-'")
        for ch in label:
            if not _LABEL_OK.fullmatch(ch):
                raise InvalidArgumentError(f"DNS name contains invalid character '{printable(ch)}'")
    if zone and not in_dns_zone(name, zone):
        raise InvalidArgumentError(
            f'DNS name "{name}" is outside the session zone "{zone}": use one label '
            f'(it becomes "<label>.{zone}") or a name ending in ".{zone}"')
    return name


def validate_protocol(protocol: str) -> str:
    """Return ``tcp`` or ``udp`` ("" means tcp), or raise the v2.0.0 message."""
    p = protocol.strip().lower()
    if p in ("", "tcp"):
        return "tcp"
    if p == "udp":
        return "udp"
    raise InvalidArgumentError(f'protocol must be "tcp" or "udp", got "{printable(protocol.strip())}"')
