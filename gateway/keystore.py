"""The gateway's own key: the one module that opens it. It signs the gateway's SOAP responses, receipts,
audit checkpoints and evidence manifests. The key is never logged; only the certificate's subject and fingerprint are.

``lienthong init`` makes a TEST key and self-signed certificate in the data directory when none exists;
an operator configures a real one with ``gateway_key`` / ``gateway_cert``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.config import Config
from gateway.core.seal import DocumentSigner
from gateway.core.wssec import EnvelopeSigner

log = logging.getLogger("lienthong.keystore")


def key_paths(config: Config) -> tuple[Path, Path]:
    return (
        config.gateway_key or config.data_dir / "gateway-key.pem",
        config.gateway_cert or config.data_dir / "gateway-cert.pem",
    )


def load_signer(config: Config) -> EnvelopeSigner | None:
    """The gateway's response signer, or None (with a warning) when no key is configured or present."""
    key_path, cert_path = key_paths(config)
    if not key_path.is_file() or not cert_path.is_file():
        log.warning("no gateway key (%s): responses are not signed; run `lienthong init`", key_path)
        return None
    cert_pem = cert_path.read_bytes()
    cert = x509.load_pem_x509_certificate(cert_pem)
    signer = EnvelopeSigner(key_pem=key_path.read_bytes(), cert_pem=cert_pem, must_understand=False)
    fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    log.info("gateway key loaded: %s (SHA-256 %s…)", cert.subject.rfc4514_string(), fingerprint[:16])
    return signer


def load_document_signer(config: Config) -> DocumentSigner | None:
    """The gateway's key for receipts, audit checkpoints and evidence manifests (None without a key)."""
    key_path, cert_path = key_paths(config)
    if not key_path.is_file() or not cert_path.is_file():
        return None
    return DocumentSigner(key_path.read_bytes(), cert_path.read_bytes())


def make_test_key(config: Config) -> tuple[Path, Path] | None:
    """A TEST key and self-signed certificate for the gateway, if none exists yet."""
    from gateway import pki

    key_path, cert_path = key_paths(config)
    if key_path.exists() or cert_path.exists():
        return None
    # ECDSA P-256: signing every answer costs a fraction of what RSA would
    issued = pki.make_self_signed(
        "gateway",
        "lienthong gateway — TEST KEY, NOT FOR PRODUCTION",
        key_type="ec",
        now=dt.datetime.now(dt.timezone.utc),
    )
    key_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(issued.key_pem)
    cert_path.write_bytes(issued.cert_pem)
    return key_path, cert_path
