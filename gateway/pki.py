"""TEST certificate material: a test CA, agency signing certificates, CRLs — never for production.

Everything this module makes is marked as test material (the CA is "lienthong TEST CA — NOT FOR
PRODUCTION", organisation "lienthong test material"; agency certificates carry OU "TEST — NOT FOR
PRODUCTION"). It exists so that the tests, the demo and ``lienthong pki`` can try the seal checks out
without the government CA. In production, agencies sign with certificates issued by the government CA and
the operator configures that CA as the trust anchor (:class:`gateway.core.trust.TrustStore`).

Keys: ``"rsa"`` is RSA 2048 (quick to generate for tests; a production CA would use RSA 3072 or more),
``"ec"`` is ECDSA on P-256. Every signature uses SHA-256. Serial numbers are random unless given.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TEST_CA_NAME = "lienthong TEST CA — NOT FOR PRODUCTION"
TEST_ORGANIZATION = "lienthong test material"
TEST_UNIT = "TEST — NOT FOR PRODUCTION"
#: Microsoft "Document Signing" extended key usage.
DOCUMENT_SIGNING_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.12")
KEY_TYPES = ("rsa", "ec")
#: Certificates are back-dated this much so that a verifier whose clock is a little behind accepts them.
_BACKDATE = dt.timedelta(minutes=5)
#: Agency codes become file names in :func:`write_test_pki` (codes such as ``000.00.00.G01`` have dots).
_SAFE_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

README_TEXT = """\
THIS DIRECTORY HOLDS TEST MATERIAL. NEVER USE IT IN PRODUCTION.

These keys and certificates were made by "lienthong pki" (gateway.pki) for trying lienthong out.
The certificate authority in ca.pem is a TEST CA that anyone could have made: its private key (ca.key)
sits in this directory, unencrypted. A packet sealed with one of these keys proves nothing about who
sent it.

- ca.pem, ca.key         the TEST CA certificate and its private key
- crl.pem                an empty revocation list signed by the TEST CA
- <code>.pem, <code>.key an agency's TEST signing certificate and private key
- <code>.p12             the same key and certificate (with the CA) in a PKCS#12 file
- <code>.p12.password    the password of <code>.p12 (the exact bytes, no line break)

In production, agencies sign with certificates issued by the government certificate authority, and
the gateway's trust anchors are that authority's certificates, never ca.pem from here.
Delete this directory when you are done trying things out.
"""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime")
    return value


def _new_key(key_type: str) -> PrivateKey:
    if key_type == "rsa":
        # 2048 bits keeps test runs fast; production keys would be RSA 3072 or more.
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key type {key_type!r}; use one of {', '.join(KEY_TYPES)}")


@dataclasses.dataclass(frozen=True)
class Issued:
    """A private key and its certificate."""

    key: PrivateKey = dataclasses.field(repr=False)
    cert: x509.Certificate

    @property
    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def pkcs12(self, password: bytes, ca: Issued | None = None) -> bytes:
        """The key and certificate (and ``ca``'s certificate, if given) in a password-protected PKCS#12."""
        if not password:
            raise ValueError("a PKCS#12 file needs a password")
        names = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        friendly = str(names[0].value).encode("utf-8") if names else None
        return pkcs12.serialize_key_and_certificates(
            friendly,
            self.key,
            self.cert,
            [ca.cert] if ca is not None else None,
            serialization.BestAvailableEncryption(password),
        )


def _ski(key: PrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def _aki(issuer: Issued) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def make_ca(
    name: str = TEST_CA_NAME,
    *,
    key_type: str = "rsa",
    now: dt.datetime | None = None,
    days: int = 3650,
    parent: Issued | None = None,
) -> Issued:
    """A TEST certificate authority: self-signed, or an intermediate CA issued by ``parent``."""
    now = _aware(now, "now") if now is not None else _utcnow()
    key = _new_key(key_type)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, TEST_ORGANIZATION),
        ]
    )
    issuer_name = parent.cert.subject if parent is not None else subject
    signing_key = parent.key if parent is not None else key
    aki = (
        _aki(parent)
        if parent is not None
        else x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(_ski(key), critical=False)
        .add_extension(aki, critical=False)
        .sign(signing_key, hashes.SHA256())
    )
    return Issued(key=key, cert=cert)


def _agency_name(agency_code: str, agency_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, agency_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, TEST_UNIT),
            x509.NameAttribute(NameOID.USER_ID, agency_code),
            x509.NameAttribute(NameOID.COMMON_NAME, agency_name),
        ]
    )


def _signing_extensions(builder: x509.CertificateBuilder, key: PrivateKey) -> x509.CertificateBuilder:
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING_OID]),
            critical=False,
        )
        .add_extension(_ski(key), critical=False)
    )


def issue_agency_cert(
    ca: Issued,
    agency_code: str,
    agency_name: str,
    *,
    key_type: str = "rsa",
    now: dt.datetime | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    days: int = 730,
    serial: int | None = None,
) -> Issued:
    """A TEST agency signing certificate issued by ``ca`` (CN and O the agency's name, UID its code)."""
    now = _aware(now, "now") if now is not None else _utcnow()
    start = _aware(not_before, "not_before") if not_before is not None else now - _BACKDATE
    end = _aware(not_after, "not_after") if not_after is not None else now + dt.timedelta(days=days)
    key = _new_key(key_type)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_agency_name(agency_code, agency_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )
    cert = (
        _signing_extensions(builder, key)
        .add_extension(_aki(ca), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(key=key, cert=cert)


def issue_tls_cert(
    ca: Issued,
    name: str,
    *,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    client: bool = False,
    days: int = 365,
) -> Issued:
    """A TEST TLS certificate from ``ca``: a server's (SANs for ``hosts``) or, with ``client``, a system's
    client certificate for mutual TLS."""
    import ipaddress

    now = _utcnow()
    key = _new_key("rsa")
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "TEST — NOT FOR PRODUCTION"),
                ]
            )
        )
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(_aki(ca), critical=False)
    )
    if not client:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(key=key, cert=builder.sign(ca.key, hashes.SHA256()))


def make_self_signed(
    agency_code: str, agency_name: str, *, key_type: str = "rsa", now: dt.datetime | None = None
) -> Issued:
    """A self-signed agency certificate: what the gateway must refuse as a seal."""
    now = _aware(now, "now") if now is not None else _utcnow()
    key = _new_key(key_type)
    name = _agency_name(agency_code, agency_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=730))
    )
    cert = _signing_extensions(builder, key).sign(key, hashes.SHA256())
    return Issued(key=key, cert=cert)


def make_crl(
    ca: Issued, revoked: Sequence[tuple[int, dt.datetime]], *, now: dt.datetime | None = None, days: int = 7
) -> bytes:
    """A CRL (PEM) signed by ``ca`` listing ``(serial, revocation date)`` pairs."""
    now = _aware(now, "now") if now is not None else _utcnow()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=days))
        .add_extension(_aki(ca), critical=False)
        .add_extension(x509.CRLNumber(x509.random_serial_number()), critical=False)
    )
    for serial, when in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(_aware(when, "revocation date"))
            .build()
        )
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, *, private: bool = False) -> Path:
    """Write ``data``; private files are created (or reset to) mode 0600 before any byte is written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        if private:  # an existing file keeps its mode through O_CREAT: reset it
            os.fchmod(fh.fileno(), 0o600)
        fh.write(data)
    return path


def write_test_pki(
    out_dir: Path,
    agencies: Sequence[tuple[str, str]],
    *,
    key_type: str = "rsa",
    p12_password: bytes | None = None,
) -> dict[str, Path]:
    """Write a TEST CA, one signing certificate per ``(code, name)`` agency, an empty CRL and a README.

    Files already there are overwritten. Returns logical names (``"ca"``, ``"ca_key"``, ``"crl"``,
    ``"readme"``, ``"<code>.cert"``, ``"<code>.key"``, ``"<code>.p12"``, ``"<code>.p12.password"``)
    mapped to the paths written.
    """
    for code, _name in agencies:
        if not _SAFE_CODE.match(code) or ".." in code:
            raise ValueError(f"agency code {code!r} cannot be used as a file name")
    if p12_password is not None and not p12_password:
        raise ValueError("the PKCS#12 password must not be empty")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ca = make_ca(key_type=key_type)
    paths = {
        "readme": _write(out_dir / "README-TEST-MATERIAL.txt", README_TEXT.encode("utf-8")),
        "ca": _write(out_dir / "ca.pem", ca.cert_pem),
        "ca_key": _write(out_dir / "ca.key", ca.key_pem, private=True),
        "crl": _write(out_dir / "crl.pem", make_crl(ca, [])),
    }
    for code, name in agencies:
        issued = issue_agency_cert(ca, code, name, key_type=key_type)
        password = p12_password if p12_password is not None else secrets.token_urlsafe(24).encode("ascii")
        paths[f"{code}.cert"] = _write(out_dir / f"{code}.pem", issued.cert_pem)
        paths[f"{code}.key"] = _write(out_dir / f"{code}.key", issued.key_pem, private=True)
        paths[f"{code}.p12"] = _write(out_dir / f"{code}.p12", issued.pkcs12(password, ca), private=True)
        paths[f"{code}.p12.password"] = _write(out_dir / f"{code}.p12.password", password, private=True)
    return paths
