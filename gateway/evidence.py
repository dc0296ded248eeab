"""Evidence at the edge: appending to the audit chain, issuing receipts and checkpoints, verifying the chain
in the database, and exporting an evidence bundle. The rules are in :mod:`gateway.core.evidence`.

Appends are serialized: on PostgreSQL a transaction-scoped advisory lock is held from the append to the
commit (the chain head is read under it), on SQLite writers are serialized by ``BEGIN IMMEDIATE``; the
primary key on ``seq`` refuses a fork whatever happens.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import logging
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway import errors
from gateway.core import evidence as ev
from gateway.core.seal import DocumentSigner
from gateway.store.models import AuditCheckpoint, AuditEntry, Packet, Receipt
from gateway.store.raw import Raw

log = logging.getLogger("lienthong.audit")

#: pg_advisory_xact_lock key of the audit chain's head ("LTAUDIT" in ASCII)
AUDIT_LOCK = 0x4C5441554449
CHECKPOINT_EVERY = 1000


_HEAD = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
#: the lock, then the head read under it, in one round trip (a simple query without parameters): in READ
#: COMMITTED each statement of it takes its own snapshot, so the head is read after the lock is granted
_LOCK_THEN_HEAD = f"SELECT pg_advisory_xact_lock({AUDIT_LOCK}); {_HEAD}"
#: session.info keys: the transaction holding the lock; (that transaction, the head it read or wrote)
_LOCKED, _HELD_HEAD = "audit_locked", "audit_head"


def lock_chain(session: Session) -> None:
    """Hold the chain's head until the commit (PostgreSQL; SQLite's writers are serialized already). Taken
    once per transaction: a send takes it where it would otherwise take its recipients' queue locks, since
    holding the head orders every queue as well. On PostgreSQL the head is read in the same round trip and
    kept for :func:`head`: no one else can append while the lock is held, and :func:`append` keeps it
    current (a round trip costs the gateway ~50–70 µs of CPU beyond its statement)."""
    transaction = session.get_transaction()
    if transaction is not None and session.info.get(_LOCKED) is transaction:
        return  # held already, until this transaction ends
    raw = Raw.of(session)
    if raw.pg:
        row = raw.last_row(_LOCK_THEN_HEAD)
        if transaction is not None:
            session.info[_HELD_HEAD] = (transaction, _head_of(row))
    session.info[_LOCKED] = transaction


def _head_of(row: tuple | None) -> tuple[int, bytes]:
    return (row[0], bytes.fromhex(row[1])) if row else (0, ev.GENESIS)


def head(session: Session) -> tuple[int, bytes]:
    """(seq, hash) of the newest entry ((0, genesis) for an empty chain), as this transaction sees it (the
    head kept by :func:`lock_chain` is the transaction's; a savepoint rolled back after an append would
    leave it stale, and none is used around one)."""
    held = session.info.get(_HELD_HEAD)
    if held is not None and held[0] is session.get_transaction():
        return held[1]
    return _head_of(Raw.of(session).one(_HEAD))


def append(session: Session, kind: str, now: dt.datetime, **content: Any) -> int:
    """Append one entry in the caller's transaction (it becomes part of the chain when that commits);
    returns its seq. ``content`` holds the event's facts (None values are left out)."""
    lock_chain(session)
    seq, previous = head(session)
    seq += 1
    data = ev.canonical({"seq": seq, "event": kind, "at": ev.iso(now), **content})
    digest = ev.chain(previous, ev.content_digest(data))
    Raw.of(session).execute(
        "INSERT INTO audit_log (seq, kind, doc_id, content, hash) VALUES (?, ?, ?, ?, ?)",
        (seq, kind, content.get("docId"), data, digest.hex()),
    )
    held = session.info.get(_HELD_HEAD)
    if held is not None and held[0] is session.get_transaction():
        session.info[_HELD_HEAD] = (held[0], (seq, digest))
    return seq


class ChainBroken(errors.LienthongError):
    """The entries since the last checkpoint do not chain: the gateway will not sign such a head."""

    code = "Audit.ChainBroken"


def _newest_checkpoint(session: Session, signer_fingerprints: set[str]) -> ev.Checkpoint:
    row = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc()).limit(1)).first()
    if row is None:
        return ev.Checkpoint(0, ev.GENESIS, dt.datetime.min.replace(tzinfo=dt.timezone.utc))
    from gateway.core.seal import verify_document

    doc = verify_document(bytes(row.content))
    cp = ev.read_checkpoint(doc.root)
    if doc.fingerprint not in signer_fingerprints or cp.seq != row.seq or cp.chain_hash.hex() != row.hash:
        raise ChainBroken(
            f"the newest checkpoint (entry {row.seq}) does not verify; run `lienthong audit verify`"
        )
    return cp


def make_checkpoint(session: Session, signer: DocumentSigner, now: dt.datetime) -> AuditCheckpoint | None:
    """Sign the chain head (the caller commits); None if it is checkpointed already. The entries since the
    newest checkpoint are checked first — a head the chain does not lead to is never signed (ChainBroken)
    — and the new checkpoint names the one before it, so checkpoints form a chain of their own."""
    lock_chain(session)  # one signer at a time, and no append in between
    seq, chain_hash = head(session)
    last = _newest_checkpoint(session, {signer.fingerprint})
    if seq == 0 or seq <= last.seq:
        return None
    reached, reached_hash, broken = ev.verify_chain(
        ((s, c, h) for s, c, h, _k, _d in _entries(session, last.seq)),
        start_seq=last.seq,
        start_hash=last.chain_hash,
    )
    if broken is not None or reached != seq or reached_hash != chain_hash:
        raise ChainBroken(
            f"the audit chain is broken after checkpoint {last.seq}"
            + (f" at entry {broken.seq}: {broken.reason}" if broken else "")
            + "; run `lienthong audit verify`"
        )
    cp = ev.Checkpoint(seq, chain_hash, now, last.seq, last.chain_hash)
    checkpoint = AuditCheckpoint(
        seq=seq, hash=chain_hash.hex(), created_at=now, content=signer.sign(ev.checkpoint_tree(cp))
    )
    session.add(checkpoint)
    session.flush()
    return checkpoint


def last_checkpoint_seq(session: Session) -> int:
    return session.scalar(select(func.max(AuditCheckpoint.seq))) or 0


@dataclasses.dataclass(frozen=True)
class SignedReceipt:
    facts: ev.ReceiptFacts
    content: bytes
    #: the packet it is about (None: the packet being stored) and the recipient it concerns
    packet_id: int | None
    recipient: str | None


def sign_receipt(
    signer: DocumentSigner, facts: ev.ReceiptFacts, packet_id: int | None, recipient: str | None
) -> SignedReceipt:
    """Sign a receipt (no database work: done before any lock is taken)."""
    return SignedReceipt(facts, signer.sign(ev.receipt_tree(facts)), packet_id, recipient)


def store_receipts(session: Session, receipts: list[SignedReceipt], new_packet_id: int) -> None:
    if receipts:
        raw = Raw.of(session)
        raw.many(
            "INSERT INTO receipts (receipt_id, packet_id, kind, recipient_code, created_at, content) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    r.facts.receipt_id,
                    r.packet_id if r.packet_id is not None else new_packet_id,
                    r.facts.kind,
                    r.recipient,
                    raw.time(r.facts.at),
                    r.content,
                )
                for r in receipts
            ],
        )


def new_receipt_id() -> str:
    return str(uuid.uuid4())


# --- verifying the chain in the database ------------------------------------------------------------------


@dataclasses.dataclass
class ChainReport:
    entries: int = 0
    checkpoints: int = 0
    last_seq: int = 0
    first_break: ev.ChainBreak | None = None
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_break is None and not self.problems


def _entries(
    session: Session, start: int, batch: int = 20000
) -> Iterator[tuple[int, bytes, str, str, str | None]]:
    """(seq, content, hash, kind, doc_id) of the entries after ``start``, in order."""
    after = start
    while True:
        rows = session.execute(
            select(AuditEntry.seq, AuditEntry.content, AuditEntry.hash, AuditEntry.kind, AuditEntry.doc_id)
            .where(AuditEntry.seq > after)
            .order_by(AuditEntry.seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        for seq, content, hash_hex, kind, doc_id in rows:
            yield seq, bytes(content), hash_hex, kind, doc_id
        after = rows[-1][0]


def verify_database(session: Session, gateway_fingerprints: set[str], start: int = 0) -> ChainReport:
    """Recompute the chain from entry ``start`` + 1 (anchored at the newest checkpoint at or before ``start``;
    the whole chain for 0) and check every checkpoint's signature and hash against it."""
    from gateway.core.seal import verify_document

    report = ChainReport()
    checkpoints = {
        cp.seq: cp for cp in session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq))
    }
    anchor_seq, anchor_hash = 0, ev.GENESIS
    if start > 0:
        earlier = [s for s in checkpoints if s <= start]
        if earlier:
            anchor_seq = max(earlier)
    verified_hashes: dict[int, bytes] = {}
    previous = (0, ev.GENESIS)
    for seq, row in checkpoints.items():
        try:
            doc = verify_document(bytes(row.content))
            cp = ev.read_checkpoint(doc.root)
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            report.problems.append(f"checkpoint {seq}: the signature does not verify ({exc})")
            continue
        if doc.fingerprint not in gateway_fingerprints:
            report.problems.append(
                f"checkpoint {seq}: signed by another key (SHA-256 {doc.fingerprint[:16]}…)"
            )
            continue
        if cp.seq != seq or cp.chain_hash.hex() != row.hash:
            report.problems.append(f"checkpoint {seq}: its row does not match what was signed")
            continue
        if (cp.previous_seq, cp.previous_hash) != previous:
            report.problems.append(
                f"checkpoint {seq} follows checkpoint {cp.previous_seq}, but the one before it here is "
                f"{previous[0]}: a checkpoint was deleted or replaced"
            )
        previous = (seq, cp.chain_hash)
        verified_hashes[seq] = cp.chain_hash
    if anchor_seq:
        if anchor_seq not in verified_hashes:
            report.problems.append(f"checkpoint {anchor_seq}, the starting point, does not verify")
            return report
        anchor_hash = verified_hashes[anchor_seq]
    report.checkpoints = len(verified_hashes)

    def watched() -> Iterator[tuple[int, bytes, str]]:
        for seq, content, hash_hex, kind, doc_id in _entries(session, anchor_seq):
            report.entries += 1
            # the query columns are not hashed: they must say what the hashed content says
            if f'"event":"{kind}"'.encode() not in content or (
                doc_id is not None and f'"docId":"{doc_id}"'.encode() not in content
            ):
                report.problems.append(f"entry {seq}: its kind or docId column differs from its content")
            yield seq, content, hash_hex

    # walk the chain, checking each checkpoint as the walk passes it
    last_seq, last_hash = anchor_seq, anchor_hash
    pending = sorted(s for s in verified_hashes if s > anchor_seq)
    stream = watched()
    for seq in [*pending, None]:

        def upto(limit: int | None = seq) -> Iterator[tuple[int, bytes, str]]:
            for entry in stream:
                yield entry
                if limit is not None and entry[0] >= limit:
                    return

        last_seq, last_hash, broken = ev.verify_chain(upto(), start_seq=last_seq, start_hash=last_hash)
        if broken is not None:
            report.first_break = broken
            break
        if seq is not None:
            if last_seq != seq:
                report.first_break = ev.ChainBreak(last_seq + 1, f"the chain ends before checkpoint {seq}")
                break
            if last_hash != verified_hashes[seq]:
                report.first_break = ev.ChainBreak(
                    seq, f"checkpoint {seq} signed another chain than this one"
                )
                break
    report.last_seq = last_seq
    return report


# --- evidence bundles ---------------------------------------------------------------------------------------


def _pem(der: bytes) -> bytes:
    from cryptography import x509

    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def export_bundle(session: Session, signer: DocumentSigner, doc_id: str, now: dt.datetime) -> bytes:
    """A self-contained zip about one packet: its bytes, the statuses about it, every receipt, the audit
    entries concerning it with the chain proof between two signed checkpoints, and the certificates. The
    caller commits (a checkpoint may be made to close the proof)."""
    packet = session.scalars(select(Packet).where(Packet.doc_id == doc_id)).first()
    if packet is None:
        raise LookupError(doc_id)
    files: dict[str, bytes] = {"packet.edxml": bytes(packet.content)}
    statuses = session.scalars(
        select(Packet)
        .where(Packet.answers_packet_id == packet.id, Packet.message_type == "status")
        .order_by(Packet.id)
    ).all()
    for status in statuses:
        files[f"statuses/{status.doc_id}.edxml"] = bytes(status.content)
    for receipt in session.scalars(
        select(Receipt).where(Receipt.packet_id == packet.id).order_by(Receipt.id)
    ):
        files[f"receipts/{receipt.kind}-{receipt.receipt_id}.xml"] = bytes(receipt.content)
    concerned_ids = [doc_id, *(s.doc_id for s in statuses)]
    concerned = set(session.scalars(select(AuditEntry.seq).where(AuditEntry.doc_id.in_(concerned_ids))))
    lines: list[str] = []
    if concerned:
        low, high = min(concerned), max(concerned)
        start = session.scalar(select(func.max(AuditCheckpoint.seq)).where(AuditCheckpoint.seq < low)) or 0
        end = session.scalar(select(func.min(AuditCheckpoint.seq)).where(AuditCheckpoint.seq >= high))
        if end is None:
            made = make_checkpoint(session, signer, now)
            end = made.seq if made is not None else head(session)[0]
        if start:
            files["audit/checkpoint-start.xml"] = bytes(session.get(AuditCheckpoint, start).content)
        files["audit/checkpoint-end.xml"] = bytes(session.get(AuditCheckpoint, end).content)
        for seq, content, _hash, _kind, _doc in _entries(session, start):
            if seq > end:
                break
            if seq in concerned:
                # ASCII only: a line separator inside a text (U+2028) must not split the line
                lines.append(json.dumps({"seq": seq, "content": content.decode("utf-8")}))
            else:
                lines.append(json.dumps({"seq": seq, "digest": ev.content_digest(content).hex()}))
        files["audit/entries.jsonl"] = ("\n".join(lines) + "\n").encode("utf-8")
    files["certs/gateway.pem"] = signer.certificate.public_bytes(serialization.Encoding.PEM)
    files["README.txt"] = BUNDLE_README.format(doc_id=doc_id).encode("utf-8")
    manifest = signer.sign(ev.manifest_tree(doc_id, files, now))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.xml", manifest)
        for name in sorted(files):
            z.writestr(name, files[name])
    return out.getvalue()


BUNDLE_README = """Evidence bundle for packet {doc_id}, made by a lienthong gateway.

Check it with:  lienthong evidence verify THIS.zip --trust GATEWAY-CERT.pem [--seal-trust AGENCY-CA.pem]

or, signature by signature, with the xmlsec1 command line alone (unzip first):

  xmlsec1 --verify --trusted-pem gateway-ca.pem manifest.xml       # the list of files and their SHA-256
  sha256sum packet.edxml statuses/* receipts/* audit/* certs/*       # compare with manifest.xml
  xmlsec1 --verify --trusted-pem agency-ca.pem packet.edxml         # the sending agency's seal
  xmlsec1 --verify --trusted-pem gateway-ca.pem receipts/*.xml      # one file per call
  xmlsec1 --verify --trusted-pem gateway-ca.pem audit/checkpoint-end.xml

(With the gateway's self-signed test key, pass certs/gateway.pem itself as --trusted-pem after comparing
its fingerprint with the one the operator publishes.)
"""
