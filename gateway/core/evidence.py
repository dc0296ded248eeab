"""Evidence an auditor can check years later without trusting the gateway's operator: receipts, the audit
hash chain and its signed checkpoints, and the offline check of an evidence bundle.

Everything here is pure: documents are built as lxml trees for :class:`gateway.core.seal.DocumentSigner`
to sign, and checked from bytes. Namespace ``urn:lienthong:evidence:1`` (schema:
``xsd/lienthong-evidence.xsd``).

**Receipts** (``Receipt/@kind``): ``submission`` (the gateway accepted a packet: its docId, sender agency
and system, recipients, the SHA-256 of the exact bytes, the packet's signer, the time), ``delivery`` (a
recipient acknowledged ``done``), ``status`` (a recipient's business status about the document, naming the
status packet and its digest). The audit entry that records the same event names the receipt's id.

**The audit chain**: entry *n* holds its canonical content (JSON, sorted keys, no spaces, UTF-8) and
``hash(n) = SHA-256(hash(n-1) ‖ SHA-256(content(n)))`` with ``hash(0)`` 32 zero bytes. A proof that an
entry is in the chain needs the contents of the entries it is about and only the *digests* of the others,
so a bundle reveals nothing of other documents. A **checkpoint** is a signed statement of ``(seq, hash)``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lxml import etree

EVIDENCE_NS = "urn:lienthong:evidence:1"
GENESIS = bytes(32)
RECEIPT_KINDS = ("submission", "delivery", "status")


def _q(name: str) -> str:
    return f"{{{EVIDENCE_NS}}}{name}"


def iso(at: dt.datetime) -> str:
    """UTC, microseconds, ``Z``: one spelling of a time everywhere in the evidence."""
    return at.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_iso(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)


# --- the audit chain ----------------------------------------------------------------------------------------


def canonical(content: Mapping[str, Any]) -> bytes:
    """The bytes an audit entry's content is hashed as (None values left out)."""
    clean = {k: v for k, v in content.items() if v is not None}
    return json.dumps(clean, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def content_digest(content: bytes) -> bytes:
    return hashlib.sha256(content).digest()


def chain(previous: bytes, digest: bytes) -> bytes:
    """The hash of an entry from the previous entry's hash and its content's digest."""
    return hashlib.sha256(previous + digest).digest()


@dataclasses.dataclass(frozen=True)
class ChainBreak:
    """Where a chain stops being what was recorded, and why."""

    seq: int
    reason: str


def verify_chain(
    entries: Iterable[tuple[int, bytes, str]], *, start_seq: int = 0, start_hash: bytes = GENESIS
) -> tuple[int, bytes, ChainBreak | None]:
    """Recompute a chain from ``(seq, content, recorded hash hex)`` in seq order, starting after entry
    ``start_seq`` whose hash is ``start_hash``. Returns the last good seq and hash, and the first break (an
    entry changed, one missing, one inserted or the order changed all show as a break)."""
    expected, previous = start_seq + 1, start_hash
    for seq, content, recorded in entries:
        if seq != expected:
            what = "missing" if seq > expected else "out of order or repeated"
            return (
                expected - 1,
                previous,
                ChainBreak(expected, f"entry {expected} is {what} (found {seq} next)"),
            )
        current = chain(previous, content_digest(content))
        if current.hex() != recorded:
            return (
                seq - 1,
                previous,
                ChainBreak(
                    seq, f"entry {seq} does not follow from entry {seq - 1}: its content or hash was changed"
                ),
            )
        # (the content names its seq as well; the chain already fixes every entry's place: not parsed here)
        expected, previous = seq + 1, current
    return expected - 1, previous, None


# --- documents ------------------------------------------------------------------------------------------------


def _el(parent: etree._Element, tag: str, text: str | None = None, **attrs: str | None) -> etree._Element:
    el = etree.SubElement(parent, _q(tag))
    if text is not None:
        el.text = text
    for key, value in attrs.items():
        if value is not None:
            el.set(key, value)
    return el


@dataclasses.dataclass(frozen=True)
class ReceiptFacts:
    kind: str
    receipt_id: str
    doc_id: str
    message_type: str
    sender: str
    sender_system: str
    recipients: Sequence[str]
    packet_sha256: str
    at: dt.datetime
    signer_fingerprint: str | None = None
    signer_subject: str | None = None
    #: for a status receipt: the status, its packet and who sent it
    status_code: str | None = None
    status_doc_id: str | None = None
    status_sha256: str | None = None
    by_system: str | None = None


def receipt_tree(f: ReceiptFacts) -> etree._Element:
    root = etree.Element(_q("Receipt"), nsmap={None: EVIDENCE_NS})
    root.set("kind", f.kind)
    root.set("version", "1")
    _el(root, "ReceiptId", f.receipt_id)
    _el(root, "DocId", f.doc_id)
    _el(root, "MessageType", f.message_type)
    _el(root, "Sender", agency=f.sender, system=f.sender_system)
    for r in f.recipients:
        _el(root, "Recipient", r)
    _el(root, "PacketSha256", f.packet_sha256)
    if f.signer_fingerprint:
        _el(root, "PacketSigner", f.signer_subject or "", fingerprint=f.signer_fingerprint)
    if f.status_code:
        _el(root, "Status", code=f.status_code, docId=f.status_doc_id, sha256=f.status_sha256)
    if f.by_system:
        _el(root, "By", system=f.by_system)
    _el(root, "Time", iso(f.at))
    return root


def read_receipt(root: etree._Element) -> ReceiptFacts:
    """The facts of a verified receipt (ValueError if it is not one)."""
    if root.tag != _q("Receipt") or root.get("kind") not in RECEIPT_KINDS:
        raise ValueError("not a lienthong receipt")

    def text(name: str) -> str:
        el = root.find(_q(name))
        if el is None or el.text is None:
            raise ValueError(f"the receipt has no {name}")
        return el.text

    sender = root.find(_q("Sender"))
    signer = root.find(_q("PacketSigner"))
    status = root.find(_q("Status"))
    by = root.find(_q("By"))
    return ReceiptFacts(
        kind=root.get("kind") or "",
        receipt_id=text("ReceiptId"),
        doc_id=text("DocId"),
        message_type=text("MessageType"),
        sender=sender.get("agency", "") if sender is not None else "",
        sender_system=sender.get("system", "") if sender is not None else "",
        recipients=tuple(el.text or "" for el in root.findall(_q("Recipient"))),
        packet_sha256=text("PacketSha256"),
        at=parse_iso(text("Time")),
        signer_fingerprint=signer.get("fingerprint") if signer is not None else None,
        signer_subject=signer.text if signer is not None else None,
        status_code=status.get("code") if status is not None else None,
        status_doc_id=status.get("docId") if status is not None else None,
        status_sha256=status.get("sha256") if status is not None else None,
        by_system=by.get("system") if by is not None else None,
    )


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A signed statement: entry ``seq`` has hash ``chain_hash``; the checkpoint before it was at
    ``previous_seq`` with ``previous_hash`` (0 and 32 zero bytes for the first), so checkpoints form a chain
    of their own and a deleted one is missed."""

    seq: int
    chain_hash: bytes
    at: dt.datetime
    previous_seq: int = 0
    previous_hash: bytes = GENESIS


def checkpoint_tree(cp: Checkpoint) -> etree._Element:
    root = etree.Element(_q("AuditCheckpoint"), nsmap={None: EVIDENCE_NS})
    root.set("version", "1")
    _el(root, "Seq", str(cp.seq))
    _el(root, "ChainHash", cp.chain_hash.hex())
    _el(root, "Previous", seq=str(cp.previous_seq), hash=cp.previous_hash.hex())
    _el(root, "Time", iso(cp.at))
    return root


def read_checkpoint(root: etree._Element) -> Checkpoint:
    if root.tag != _q("AuditCheckpoint"):
        raise ValueError("not an audit checkpoint")
    previous = root.find(_q("Previous"))
    if previous is None:
        raise ValueError("the checkpoint names no previous checkpoint")
    return Checkpoint(
        seq=int(root.findtext(_q("Seq")) or "-1"),
        chain_hash=bytes.fromhex(root.findtext(_q("ChainHash")) or ""),
        at=parse_iso(root.findtext(_q("Time")) or ""),
        previous_seq=int(previous.get("seq", "-1")),
        previous_hash=bytes.fromhex(previous.get("hash", "")),
    )


def manifest_tree(doc_id: str, files: Mapping[str, bytes], at: dt.datetime) -> etree._Element:
    root = etree.Element(_q("EvidenceManifest"), nsmap={None: EVIDENCE_NS})
    root.set("version", "1")
    _el(root, "DocId", doc_id)
    _el(root, "Time", iso(at))
    for name in sorted(files):
        _el(
            root,
            "File",
            name=name,
            sha256=hashlib.sha256(files[name]).hexdigest(),
            size=str(len(files[name])),
        )
    return root


def read_manifest(root: etree._Element) -> tuple[str, dict[str, str]]:
    if root.tag != _q("EvidenceManifest"):
        raise ValueError("not an evidence manifest")
    return root.findtext(_q("DocId")) or "", {
        el.get("name", ""): el.get("sha256", "") for el in root.findall(_q("File"))
    }
