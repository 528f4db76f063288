"""The log-forwarding certificates and drop-ins: fields, checks, rendering, the CLI."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from hostctl import log_pki, logforward


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_ca_server_and_client_certificates_have_the_right_fields() -> None:
    ca = log_pki.make_ca()
    ca_cert = _cert(ca.cert_pem)
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    server = _cert(log_pki.issue_server(ca.cert_pem, ca.key_pem, ["shell.example", "10.0.0.2"]).cert_pem)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["shell.example"]
    assert [str(a) for a in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.2"]
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    client = _cert(log_pki.issue_client(ca.cert_pem, ca.key_pem, "agent7abc").cert_pem)
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "agent7abc"
    assert client.issuer == ca_cert.subject
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    client.verify_directly_issued_by(ca_cert)
    assert (client.not_valid_after_utc - client.not_valid_before_utc).days == log_pki.LEAF_DAYS


def test_a_key_from_another_ca_is_refused() -> None:
    a, b = log_pki.make_ca(), log_pki.make_ca()
    with pytest.raises(InvalidArgumentError, match="does not belong"):
        log_pki.issue_client(a.cert_pem, b.key_pem, "agent7abc")
    with pytest.raises(InvalidArgumentError, match="not a PEM"):
        log_pki.load_ca(b"junk", a.key_pem)


def test_init_ca_is_idempotent_and_keeps_keys_private(tmp_path: Path) -> None:
    assert logforward.init_ca(tmp_path / "ca")
    first = (tmp_path / "ca" / "ca.crt").read_bytes()
    assert not logforward.init_ca(tmp_path / "ca")
    assert (tmp_path / "ca" / "ca.crt").read_bytes() == first
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "ca.crt").write_bytes(first)
    with pytest.raises(AlreadyExistsError, match="only one of"):
        logforward.init_ca(tmp_path / "half")
    with pytest.raises(NotFoundError, match="logs init-ca"):
        logforward.issue_agent_cert(tmp_path / "no.crt", tmp_path / "no.key", "agent7abc", tmp_path / "o")


def test_drop_ins_name_their_files_and_modes() -> None:
    listener = logforward.render_listener(logforward.Listener())
    assert 'streamDriver.authMode="x509/certvalid"' in listener
    assert 'port="514"' in listener
    assert "/var/log/convocate-agent/%hostname:::secpath-replace%.log" in listener
    assert "@" not in listener
    forwarder = logforward.render_forwarder(logforward.Forwarder("agent7abc", "10.0.0.2", "shell.example"))
    assert 'streamDriverPermittedPeers="shell.example"' in forwarder
    assert "/etc/convocate-agent/rsyslog-tls/client.key" in forwarder
    assert 'queue.filename="convocate-fwd"' in forwarder
    assert ">1 %TIMESTAMP:::date-rfc3339% agent7abc " in forwarder
    rotate = logforward.render_logrotate(logforward.Listener())
    assert rotate.startswith("# Managed")
    assert "/var/log/convocate-agent/*.log /var/log/convocate.log {" in rotate
