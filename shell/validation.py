"""The form rules of v2.0.0: session name, protocol, port field and DNS name.

Messages match v2.0.0 word for word (inventory §2.3-2.4), so operators see the same
text; each rule raises :class:`InvalidArgumentError` with that message.
"""

from __future__ import annotations

import re

from common.errors import InvalidArgumentError

__all__ = [
    "MAX_DNS",
    "MAX_NAME",
    "PORT_AUTO",
    "validate_dns_name",
    "validate_name",
    "validate_port_field",
    "validate_protocol",
]

MAX_NAME = 64
MAX_DNS = 253
PORT_AUTO = -1
_NAME_OK = re.compile(r"[A-Za-z0-9 _.\-]")
_LABEL_OK = re.compile(r"[a-z0-9-]")


def validate_name(raw: str) -> str:
    """Return the trimmed session name.

    Args:
        raw: the text typed in the Name field.

    Returns:
        The name without surrounding spaces.

    Raises:
        InvalidArgumentError: empty, longer than 64 characters, or a forbidden character.
    """
    name = raw.strip()
    if not name:
        raise InvalidArgumentError("session name cannot be empty")
    if len(name.encode()) > MAX_NAME:
        raise InvalidArgumentError(f"session name cannot exceed {MAX_NAME} characters")
    for ch in name:
        if not _NAME_OK.fullmatch(ch):
            raise InvalidArgumentError(
                f"session name contains invalid character: {ch!r} "
                "(only letters, digits, spaces, _, -, . allowed)"
            )
    return name


def validate_protocol(raw: str) -> str:
    """Return ``tcp`` or ``udp`` (blank means tcp).

    Raises:
        InvalidArgumentError: any other value.
    """
    proto = raw.strip().lower()
    if proto in ("", "tcp"):
        return "tcp"
    if proto == "udp":
        return "udp"
    raise InvalidArgumentError(f'protocol must be "tcp" or "udp", got "{proto}"')


def validate_port_field(raw: str) -> int:
    """Turn the Port field into the request value: blank=0 (none), 0=auto, else 1-65535.

    Returns:
        0 for no port, :data:`PORT_AUTO` for automatic, or the explicit port.

    Raises:
        InvalidArgumentError: not a number, or out of range.
    """
    text = raw.strip()
    if not text:
        return 0
    if not text.isdigit():
        raise InvalidArgumentError("port must be a number")
    value = int(text)
    if value == 0:
        return PORT_AUTO
    if value > 65535:
        raise InvalidArgumentError("port must be between 0 and 65535")
    return value


def validate_dns_name(raw: str) -> str:
    """Return the lower-cased DNS name ("" clears it).

    Raises:
        InvalidArgumentError: too long, a bad label, or a forbidden character.
    """
    name = raw.strip().lower()
    if not name:
        return ""
    if len(name) > MAX_DNS:
        raise InvalidArgumentError(f"DNS name too long (max {MAX_DNS} chars)")
    for label in name.split("."):
        if not 1 <= len(label) <= 63:
            raise InvalidArgumentError("DNS label length must be 1-63 chars")
        if label.startswith("-") or label.endswith("-"):
            raise InvalidArgumentError("DNS label cannot start or end with '-'")
        for ch in label:
            if not _LABEL_OK.fullmatch(ch):
                raise InvalidArgumentError(f"DNS name contains invalid character {ch!r}")
    return name
