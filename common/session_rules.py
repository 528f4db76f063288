"""The v2.0.0 session rules shared by the agent (which enforces them) and the console
(which checks forms before sending): name, DNS name and protocol, with v2.0.0's messages
word for word (inventory §2.3).
"""

from __future__ import annotations

import re

from common.errors import InvalidArgumentError

__all__ = ["MAX_DNS_NAME", "MAX_NAME_BYTES", "PORT_AUTO", "printable", "validate_dns_name", "validate_name",
           "validate_protocol"]

PORT_AUTO = -1
MAX_NAME_BYTES = 64
MAX_DNS_NAME = 253
_NAME_OK = re.compile(r"[A-Za-z0-9 _.\-]")
_LABEL_OK = re.compile(r"[a-z0-9-]")


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


def validate_dns_name(dns_name: str) -> str:
    """Return the trimmed, lowercased DNS name ("" allowed), or raise the v2.0.0 message.

    Raises:
        InvalidArgumentError: too long, a bad label length, a label starting or ending
            with ``-``, or a character outside ``a-z 0-9 -``.
    """
    name = dns_name.strip().lower()
    if not name:
        return ""
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
    return name


def validate_protocol(protocol: str) -> str:
    """Return ``tcp`` or ``udp`` ("" means tcp), or raise the v2.0.0 message."""
    p = protocol.strip().lower()
    if p in ("", "tcp"):
        return "tcp"
    if p == "udp":
        return "udp"
    raise InvalidArgumentError(f'protocol must be "tcp" or "udp", got "{printable(protocol.strip())}"')
