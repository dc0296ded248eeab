"""Sealing packets before sending and checking the seal of every packet received.

The signing and verification code is the gateway's own (:mod:`gateway.core.seal`), so a packet the client
accepts is one the gateway would accept, and the other way round. Keys are loaded once, when the
:class:`Signer` is made, not on every packet.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from gateway import errors
from gateway.core.packet import packet_fields
from gateway.core.seal import SealPolicy, VerifiedSeal, is_sealed, sign_packet, verify_seal
from gateway.core.trust import TrustStore, subject_attribute
from gateway.core.xmlparse import parse_xml


class SealRejected(Exception):
    """A received packet whose seal is missing, invalid, untrusted or not its sender's."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Signer:
    """An agency's seal: its private key and certificate (and the chain to send along)."""

    key_pem: bytes = dataclasses.field(repr=False)
    cert_pem: bytes
    chain_pem: tuple[bytes, ...] = ()

    @classmethod
    def from_pem(cls, key_path: str | Path, cert_path: str | Path) -> Signer:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cls(key_pem=pem, cert_pem=Path(cert_path).read_bytes())

    @classmethod
    def from_pkcs12(cls, path: str | Path, password: bytes | None) -> Signer:
        key, cert, extra = pkcs12.load_key_and_certificates(Path(path).read_bytes(), password)
        if key is None or cert is None:
            raise ValueError(f"{path} holds no private key and certificate")
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        chain = tuple(c.public_bytes(serialization.Encoding.PEM) for c in extra or ())
        return cls(key_pem=pem, cert_pem=cert.public_bytes(serialization.Encoding.PEM), chain_pem=chain)

    def sign(self, packet: bytes) -> bytes:
        return sign_packet(packet, self.key_pem, self.cert_pem, chain_pem=self.chain_pem)


def is_signed(packet: bytes) -> bool:
    return is_sealed(parse_xml(packet, max_bytes=len(packet) + 1))


@dataclasses.dataclass(frozen=True)
class SealChecker:
    """The receiving side's check: the seal is valid, chains to our trust anchors, and (when the
    certificate carries an agency code in ``agency_attribute``) belongs to the packet's sender."""

    trust: TrustStore
    agency_attribute: str | None = "UID"
    allow_sha1: bool = False

    @classmethod
    def from_files(cls, trust_pem: str | Path, crls: tuple[str | Path, ...] = ()) -> SealChecker:
        return cls(TrustStore.from_pem(Path(trust_pem).read_bytes(), [Path(c).read_bytes() for c in crls]))

    def check(self, packet: bytes, at: dt.datetime | None = None) -> VerifiedSeal:
        try:
            tree = parse_xml(packet, max_bytes=len(packet) + 1)
            seal = verify_seal(
                tree,
                policy=SealPolicy(allow_sha1=self.allow_sha1),
                trust=self.trust,
                at=at or dt.datetime.now(dt.timezone.utc),
            )
            sender = packet_fields(seal.root, packet).from_organ
        except errors.LienthongError as exc:
            raise SealRejected(exc.code, exc.message) from None
        if self.agency_attribute:
            codes = subject_attribute(seal.signer, self.agency_attribute)
            if codes and sender not in codes:
                raise SealRejected(
                    "Client.Seal.WrongAgency",
                    f"the packet from {sender} is sealed by {seal.subject}, a seal of {', '.join(codes)}",
                )
        return seal
