"""The certificates of log forwarding: a CA, the shell's server certificate, one per agent.

ECDSA P-256 everywhere. The CA (10 years, path length 0) signs a server certificate
for the shell host (1 year, ServerAuth, its names as DNS SANs) and a client certificate
per agent (1 year, ClientAuth, CN and DNS SAN = the agent id). Keys are PKCS#8 PEM
without a passphrase; they are written 0600 by the callers (see hostctl.logforward).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from common.errors import InvalidArgumentError

__all__ = ["CA_NAME", "Issued", "check_name", "issue_client", "issue_server", "load_ca", "make_ca"]

CA_NAME = "convocate rsyslog CA"
ORGANIZATION = "convocate"
CA_DAYS = 3650
LEAF_DAYS = 365
_BACKDATE = dt.timedelta(minutes=5)  # tolerate clocks a little behind ours
# A DNS label sequence: what rsyslog can match and what is safe in a file name.
_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes


def check_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is a DNS-style name (letters, digits, '-', dots), else raise."""
    if not _NAME.match(name):
        raise InvalidArgumentError(
            f"{what} {name!r} is not a DNS-style name (letters, digits and '-', dot-separated)"
        )
    return name


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _subject(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=not cert_sign,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
        encipher_only=False, decipher_only=False,
    )


def make_ca(common_name: str = CA_NAME, *, now: dt.datetime | None = None) -> Issued:
    """A new self-signed CA."""
    key = _key()
    start = (now or dt.datetime.now(dt.UTC)) - _BACKDATE
    name = _subject(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def load_ca(cert_pem: bytes, key_pem: bytes) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Parse a CA made by :func:`make_ca` (or any EC CA whose key matches its certificate)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as e:
        raise InvalidArgumentError(f"not a PEM certificate and unencrypted private key: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidArgumentError("the CA key is not an EC key")
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        raise InvalidArgumentError("the CA key does not belong to the CA certificate")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise InvalidArgumentError("the CA certificate is not a CA (no basicConstraints CA:TRUE)")
    return cert, key


def _leaf(ca_cert_pem: bytes, ca_key_pem: bytes, common_name: str, sans: list[x509.GeneralName],
          usage: x509.ObjectIdentifier, now: dt.datetime | None) -> Issued:
    ca_cert, ca_key = load_ca(ca_cert_pem, ca_key_pem)
    key = _key()
    start = (now or dt.datetime.now(dt.UTC)) - _BACKDATE
    end = min(start + dt.timedelta(days=LEAF_DAYS), ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_subject(common_name)).issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue_server(ca_cert_pem: bytes, ca_key_pem: bytes, names: list[str], *,
                 now: dt.datetime | None = None) -> Issued:
    """The listener's certificate: CN = ``names[0]``, every name (or IP address) a SAN."""
    if not names:
        raise InvalidArgumentError("the server certificate needs at least one host name")
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(check_name(n, "host name")))
    return _leaf(ca_cert_pem, ca_key_pem, names[0], sans, ExtendedKeyUsageOID.SERVER_AUTH, now)


def issue_client(ca_cert_pem: bytes, ca_key_pem: bytes, agent_id: str, *,
                 now: dt.datetime | None = None) -> Issued:
    """An agent's certificate: CN and DNS SAN = the agent id."""
    check_name(agent_id, "agent id")
    return _leaf(ca_cert_pem, ca_key_pem, agent_id, [x509.DNSName(agent_id)],
                 ExtendedKeyUsageOID.CLIENT_AUTH, now)
