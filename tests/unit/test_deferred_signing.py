"""The gateway signs the answers it builds itself (``EnvelopeSigner.sign_deferred``: digests and the
SignedInfo signature computed by hand, a fetched packet's base64 written in place of a placeholder). Those
signatures must verify exactly as xmlsec's own do: checked here with the gateway's xmlsec verifier and
the ``xmlsec1`` command line, for ECDSA and RSA keys, with and without deferred text, and must fail when
the text sent is not the text signed."""

from __future__ import annotations

import base64
import datetime as dt
import os
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from gateway import errors
from gateway.core.wssec import WSU, Deferred, EnvelopeSigner, verify_envelope

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
TNS = "urn:lienthong:axis:1"
NOW = dt.datetime.now(dt.timezone.utc)


def _signer(kind: str) -> EnvelopeSigner:
    key = (
        ec.generate_private_key(ec.SECP256R1()) if kind == "ecdsa" else rsa.generate_private_key(65537, 2048)
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"test gateway ({kind})")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return EnvelopeSigner(pem, cert.public_bytes(serialization.Encoding.PEM), must_understand=False)


def _answer(text: str) -> etree._Element:
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"soap11env": SOAP, "tns": TNS})
    body = etree.SubElement(env, f"{{{SOAP}}}Body")
    result = etree.SubElement(etree.SubElement(body, f"{{{TNS}}}getEdocResponse"), f"{{{TNS}}}getEdocResult")
    etree.SubElement(result, f"{{{TNS}}}docId").text = "d&<1>"  # escaped by c14n
    etree.SubElement(result, f"{{{TNS}}}packet").text = text
    return env


def _written(kind: str, data: bytes | None) -> bytes:
    """An answer signed and written as the guard writes it (placeholder replaced by the data)."""
    signer = _signer(kind)
    deferred = Deferred.of(data) if data is not None else None
    env = _answer(deferred.placeholder if deferred else "QUJD")
    signer.sign_deferred(env, NOW, deferred)
    out = etree.tostring(env, xml_declaration=True, encoding="UTF-8")
    if deferred is None:
        return out
    head, found, tail = out.partition(deferred.placeholder.encode())
    assert found and deferred.placeholder.encode() not in tail
    return head + deferred.data + tail


def _verify(data: bytes) -> None:
    verify_envelope(etree.fromstring(data, etree.XMLParser(huge_tree=True)), at=NOW)


@pytest.mark.parametrize("kind", ["ecdsa", "rsa"])
@pytest.mark.parametrize("size", [None, 0, 3, 4_000, 3_000_000])
def test_hand_made_signatures_verify_with_xmlsec(kind, size):
    data = None if size is None else base64.b64encode(os.urandom(size))
    written = _written(kind, data)
    _verify(written)
    if data:
        assert data in written


@pytest.mark.parametrize("kind", ["ecdsa", "rsa"])
def test_text_other_than_the_signed_text_fails(kind):
    written = _written(kind, base64.b64encode(b"the packet the gateway signed"))
    forged = written.replace(
        base64.b64encode(b"the packet the gateway signed"), base64.b64encode(b"another packet")
    )
    with pytest.raises(errors.SecurityError):
        _verify(forged)


def _xmlsec1(path, cert) -> subprocess.CompletedProcess:
    # xmlsec1 resolves wsu:Id only when told which attributes are ids; the key is the token's certificate
    return subprocess.run(
        [
            "xmlsec1",
            "--verify",
            "--id-attr:Id",
            f"{SOAP}:Body",
            "--id-attr:Id",
            f"{WSU}:Timestamp",
            "--pubkey-cert-pem",
            str(cert),
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="the xmlsec1 command line is not installed")
@pytest.mark.parametrize("kind", ["ecdsa", "rsa"])
def test_the_xmlsec1_command_line_verifies_them(tmp_path, kind):
    signer = _signer(kind)
    data = base64.b64encode(os.urandom(10_000))
    deferred = Deferred.of(data)
    env = _answer(deferred.placeholder)
    signer.sign_deferred(env, NOW, deferred)
    head, _found, tail = etree.tostring(env).partition(deferred.placeholder.encode())
    (tmp_path / "cert.pem").write_bytes(signer.cert_pem)
    (tmp_path / "answer.xml").write_bytes(head + data + tail)
    result = _xmlsec1(tmp_path / "answer.xml", tmp_path / "cert.pem")
    assert result.returncode == 0, result.stderr
    (tmp_path / "forged.xml").write_bytes(head + base64.b64encode(os.urandom(10_000)) + tail)
    assert _xmlsec1(tmp_path / "forged.xml", tmp_path / "cert.pem").returncode != 0
