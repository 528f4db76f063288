"""Session rules: names, DNS names, protocols and ports, with the v2.0.0 messages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.sessions import (
    SessionRecord,
    check_dns_unique,
    container_hostname,
    container_name,
    is_session_id,
    new_session_id,
    resolve_port,
    validate_dns_name,
    validate_name,
    validate_protocol,
)
from common.errors import AlreadyExistsError, InvalidArgumentError, ResourceExhaustedError

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def rec(port: int = 0, protocol: str = "tcp", dns: str = "") -> SessionRecord:
    return SessionRecord(new_session_id(), "s", NOW, NOW, port, protocol, dns)


def test_names_are_trimmed_and_checked() -> None:
    """Valid names are trimmed; empty, long and odd-character names get the v2.0.0 messages."""
    assert validate_name("  my session_1.-x ") == "my session_1.-x"
    with pytest.raises(InvalidArgumentError, match=r"^session name cannot be empty$"):
        validate_name("   ")
    with pytest.raises(InvalidArgumentError, match=r"^session name cannot exceed 64 characters$"):
        validate_name("a" * 65)
    assert validate_name("a" * 64) == "a" * 64
    with pytest.raises(InvalidArgumentError) as e:
        validate_name("hé")
    assert str(e.value) == ("session name contains invalid character: 'é' "
                            "(only letters, digits, spaces, _, -, . allowed)")


def test_dns_names_are_lowercased_and_checked() -> None:
    """DNS names are trimmed and lowercased; bad lengths, dashes and characters are refused."""
    assert validate_dns_name(" My-Host.Example ") == "my-host.example"
    assert validate_dns_name("") == ""
    cases = {
        "a" * 254: "DNS name too long (max 253 chars)",
        "a..b": "DNS label length must be 1-63 chars",
        "x" * 64: "DNS label length must be 1-63 chars",
        "-a": "DNS label cannot start or end with '-'",
        "a_b": "DNS name contains invalid character '_'",
    }
    for value, message in cases.items():
        with pytest.raises(InvalidArgumentError) as e:
            validate_dns_name(value)
        assert str(e.value) == message


def test_protocols() -> None:
    """Empty means tcp; tcp and udp in any case; anything else is refused."""
    assert validate_protocol("") == "tcp"
    assert validate_protocol(" UDP ") == "udp"
    with pytest.raises(InvalidArgumentError, match=r'^protocol must be "tcp" or "udp", got "icmp"$'):
        validate_protocol("icmp")


def test_ports_auto_explicit_and_clashes() -> None:
    """Auto picks the lowest free port >= 1001 (any protocol); explicit ports clash per protocol."""
    others = [rec(1001, "udp"), rec(1002), rec(53, "udp")]
    assert resolve_port(0, "tcp", others) == 0
    assert resolve_port(-1, "tcp", others) == 1003
    assert resolve_port(53, "tcp", others) == 53
    with pytest.raises(AlreadyExistsError, match=r"^port 53/udp is already assigned to another session$"):
        resolve_port(53, "udp", others)
    for bad in (-2, 65536):
        with pytest.raises(InvalidArgumentError, match=f"^invalid port: {bad}$"):
            resolve_port(bad, "tcp", others)
    full = [rec(p) for p in range(1001, 65536)]
    with pytest.raises(ResourceExhaustedError, match="no available port at or above 1001"):
        resolve_port(-1, "tcp", full)


def test_dns_uniqueness_and_names() -> None:
    """A DNS name may be used once per agent; container names and hostnames follow v2.0.0."""
    check_dns_unique("", [rec(dns="")])
    with pytest.raises(AlreadyExistsError, match=r'^DNS name "web" is already assigned to another'):
        check_dns_unique("web", [rec(dns="Web")])
    sid = new_session_id()
    assert is_session_id(sid)
    assert not is_session_id(".skel")
    assert container_name(sid) == f"convocate-session-{sid}"
    assert container_hostname(sid) == f"convocate-{sid[:8]}"


def test_control_characters_in_echoed_input_are_escaped() -> None:
    """A NUL or escape in a name, DNS name or protocol is shown escaped in the message."""
    with pytest.raises(InvalidArgumentError) as name_err:
        validate_name("bad\x00name")
    assert str(name_err.value).startswith("session name contains invalid character: '\\x00' ")
    with pytest.raises(InvalidArgumentError) as dns_err:
        validate_dns_name("a\x1bb")
    assert str(dns_err.value) == "DNS name contains invalid character '\\x1b'"
    with pytest.raises(InvalidArgumentError) as proto_err:
        validate_protocol("tc\x07p")
    assert str(proto_err.value) == 'protocol must be "tcp" or "udp", got "tc\\x07p"'
    for err in (name_err, dns_err, proto_err):
        assert all(ch.isprintable() for ch in str(err.value))


def test_dns_names_are_confined_to_the_session_zone() -> None:
    """With a zone, one label is placed in it, names below it pass, and any other name is refused."""
    zone = "convocate.internal"
    assert validate_dns_name(" Web ", zone) == "web.convocate.internal"
    assert validate_dns_name("api.team.convocate.internal", zone) == "api.team.convocate.internal"
    for outside in ("github.com", "1.2.3.4", "convocate.internal", "evilconvocate.internal"):
        with pytest.raises(InvalidArgumentError, match="outside the session zone"):
            validate_dns_name(outside, zone)
    assert validate_dns_name("github.com", "") == "github.com"  # "" turns the confinement off
