"""The form rules of v2.0.0: session name, protocol, port field and DNS name.

Name, protocol and DNS rules are the agent's own (``common.session_rules``); only the
Port field's text-to-value rule lives here.

Messages match v2.0.0 word for word (inventory §2.3-2.4), so operators see the same
text; each rule raises :class:`InvalidArgumentError` with that message.
"""

from __future__ import annotations

from common.errors import InvalidArgumentError
from common.session_rules import (
    MAX_DNS_NAME,
    MAX_NAME_BYTES,
    PORT_AUTO,
    validate_dns_name,
    validate_name,
    validate_protocol,
)

__all__ = [
    "MAX_DNS",
    "MAX_NAME",
    "PORT_AUTO",
    "validate_dns_name",
    "validate_name",
    "validate_port_field",
    "validate_protocol",
]

MAX_NAME = MAX_NAME_BYTES
MAX_DNS = MAX_DNS_NAME


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
