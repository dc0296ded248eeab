"""The gateway's receipts, as the reference client checks and keeps them.

A receipt is accepted only if its XML signature verifies, it was signed by the gateway's pinned
certificate, and it names the exact bytes the client sent (their SHA-256). Kept beside the sent packet:
``DIR/yyyy/m/DOCID.edxml`` and ``DIR/yyyy/m/DOCID.receipt.xml`` (more receipts, fetched later with
``getReceipts``, as ``DOCID.<kind>-<n>.xml``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway import errors
from gateway.core import evidence as ev
from gateway.core.seal import verify_document
from lienthong_client.sync import write_durably


class ReceiptRejected(Exception):
    """A receipt that is not the gateway's, or not about the packet it should be about."""


def check_receipt(
    data: bytes,
    gateway_cert_pem: bytes,
    packet: bytes | None = None,
    *,
    doc_id: str | None = None,
    kind: str | None = None,
) -> ev.ReceiptFacts:
    """The facts of a receipt signed by the pinned gateway certificate (and, given them, naming the exact
    bytes of ``packet``, the packet ``doc_id`` and being of ``kind``); ReceiptRejected otherwise."""
    pinned = x509.load_pem_x509_certificate(gateway_cert_pem)
    fingerprint = hashlib.sha256(pinned.public_bytes(serialization.Encoding.DER)).hexdigest()
    try:
        doc = verify_document(data)
        facts = ev.read_receipt(doc.root)
    except (errors.LienthongError, ValueError) as exc:
        raise ReceiptRejected(f"not a valid receipt: {getattr(exc, 'message', exc)}") from None
    if doc.fingerprint != fingerprint:
        raise ReceiptRejected(
            f"the receipt is signed by another key (SHA-256 {doc.fingerprint[:16]}…) than the gateway's "
            f"({fingerprint[:16]}…)"
        )
    if packet is not None and facts.packet_sha256 != hashlib.sha256(packet).hexdigest():
        raise ReceiptRejected("the receipt's digest does not match the packet that was sent")
    if doc_id is not None and facts.doc_id != doc_id:
        raise ReceiptRejected(f"the receipt is about packet {facts.doc_id}, not {doc_id}")
    if kind is not None and facts.kind != kind:
        raise ReceiptRejected(f"a {facts.kind} receipt where a {kind} receipt was expected")
    return facts


def store_sent(
    out_dir: Path, doc_id: str, packet: bytes, receipt: bytes | None, facts: ev.ReceiptFacts | None
) -> Path:
    """Keep a sent packet and its submission receipt: DIR/yyyy/m/DOCID.edxml and DOCID.receipt.xml."""
    at = facts.at if facts is not None else None
    folder = out_dir / (f"{at:%Y}/{at.month}" if at else "undated")
    path = folder / f"{doc_id}.edxml"
    write_durably(path, packet)
    if receipt is not None:
        write_durably(folder / f"{doc_id}.receipt.xml", receipt)
    return path
