"""WS-Security for the reference client: every request signed with the system's key (X.509 token
profile, SHA-256), every answer's signature checked against the gateway's pinned certificate.

zeep calls :meth:`SignedRequests.verify` on an answer *before* it looks for a fault, so an unsigned or
wrongly signed answer is refused even when it is a fault: the client never acts on an answer the gateway
did not sign. The keys are loaded once, when the object is made.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from gateway import errors
from gateway.core.seal import KeyCache
from gateway.core.wssec import EnvelopeSigner, TimestampPolicy, verify_envelope


class UntrustedAnswer(Exception):
    """The gateway's answer is unsigned, or not signed by the gateway's pinned certificate."""


class SignedRequests:
    """A zeep ``wsse`` plugin: ``apply`` signs requests, ``verify`` checks answers."""

    def __init__(
        self,
        key_pem: bytes,
        cert_pem: bytes,
        gateway_cert_pem: bytes | None,
        *,
        lifetime: dt.timedelta = dt.timedelta(minutes=5),
        clock_skew: dt.timedelta = dt.timedelta(minutes=5),
    ) -> None:
        self.signer = (
            EnvelopeSigner(key_pem=key_pem, cert_pem=cert_pem, lifetime=lifetime) if key_pem else None
        )
        self.gateway_fingerprint = None
        if gateway_cert_pem is not None:
            cert = x509.load_pem_x509_certificate(gateway_cert_pem)
            self.gateway_fingerprint = hashlib.sha256(
                cert.public_bytes(serialization.Encoding.DER)
            ).hexdigest()
        self.policy = TimestampPolicy(clock_skew=clock_skew)
        self.keys = KeyCache(size=8)

    def apply(self, envelope: etree._Element, headers: dict) -> tuple[etree._Element, dict]:
        if self.signer is not None:
            self.signer.sign(envelope, dt.datetime.now(dt.timezone.utc))
        return envelope, headers

    def verify(self, envelope: etree._Element) -> etree._Element:
        if self.gateway_fingerprint is None:
            return envelope
        try:
            verified = verify_envelope(
                envelope, at=dt.datetime.now(dt.timezone.utc), policy=self.policy, keys=self.keys
            )
        except errors.LienthongError as exc:
            raise UntrustedAnswer(f"the gateway's answer is not properly signed: {exc.message}") from None
        if verified.fingerprint != self.gateway_fingerprint:
            raise UntrustedAnswer(
                f"the answer is signed by {verified.subject}, not by the gateway certificate this client trusts"
            )
        return envelope
