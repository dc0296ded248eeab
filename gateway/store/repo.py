"""Queries, each taking the session of the caller's unit of work. No commits here."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Row, Select, func, or_, select, update
from sqlalchemy.orm import Session, undefer

from gateway.core.lifecycle import Original
from gateway.core.routing import AgencyState
from gateway.store.models import (
    Agency,
    Delivery,
    Event,
    Packet,
    Receipt,
    System,
    SystemAgency,
)
from gateway.store.raw import Raw, Reader, placeholders, read_time

INBOX_STATES = ("pending", "fetched", "processing", "fail")


# --- directory ------------------------------------------------------------------------------------------


def get_agency(session: Session, code: str) -> Agency | None:
    return session.get(Agency, code)


def _agency_states_sql(n: int) -> str:
    return f"SELECT code, active FROM agencies WHERE code IN ({placeholders(n)})"


def agency_states(session: Session, codes: Iterable[str]) -> dict[str, AgencyState]:
    codes = list(codes)
    if not codes:
        return {}
    rows = Raw.of(session).all(_agency_states_sql(len(codes)), codes)
    return {code: AgencyState(code=code, active=bool(active)) for code, active in rows}


def list_agencies(session: Session, text_filter: str | None = None) -> Sequence[Agency]:
    stmt = select(Agency).order_by(Agency.code)
    if text_filter:
        pattern = f"%{text_filter.lower()}%"
        stmt = stmt.where(or_(func.lower(Agency.code).like(pattern), func.lower(Agency.name).like(pattern)))
    return session.scalars(stmt).all()


# --- systems --------------------------------------------------------------------------------------------


def get_system(session: Session, system_id: str) -> System | None:
    return session.get(System, system_id)


def list_systems(session: Session) -> Sequence[System]:
    return session.scalars(select(System).order_by(System.id)).all()


def add_system(session: Session, system: System, agency_codes: Iterable[str]) -> None:
    session.add(system)
    for code in agency_codes:
        system.agencies.append(SystemAgency(agency_code=code))


# --- packets and deliveries -----------------------------------------------------------------------------


def packet_by_doc_id(session: Session, doc_id: str, *, with_content: bool = False) -> Packet | None:
    stmt = select(Packet).where(Packet.doc_id == doc_id)
    if with_content:
        stmt = stmt.options(undefer(Packet.content))
    return session.scalars(stmt).first()


def delivery_of_document(
    session: Session, *, sender: str, document_id: str, recipient: str
) -> Delivery | None:
    """The delivery to ``recipient`` of the newest document ``document_id`` sent by ``sender``."""
    return session.scalars(
        select(Delivery)
        .join(Delivery.packet)
        .where(
            Packet.sender_code == sender,
            Packet.document_id == document_id,
            Packet.message_type == "edoc",
            Delivery.recipient_code == recipient,
        )
        .order_by(Packet.id.desc())
        .limit(1)
    ).first()


def recipients_of(session: Session, packet_id: int) -> list[str]:
    return Raw.of(session).scalars(
        "SELECT recipient_code FROM deliveries WHERE packet_id = ? ORDER BY id", (packet_id,)
    )


def deliveries_for(
    session: Session, packet_id: int, recipients: Iterable[str], *, lock: bool = False
) -> Sequence[Delivery]:
    """The packet's deliveries to ``recipients``; ``lock`` holds them (FOR UPDATE) until the commit, so two
    acknowledgements of the same delivery cannot interleave."""
    stmt = (
        select(Delivery)
        .where(Delivery.packet_id == packet_id, Delivery.recipient_code.in_(list(recipients)))
        .order_by(Delivery.id)
    )
    if lock:
        stmt = stmt.with_for_update(of=Delivery)
    return session.scalars(stmt).all()


def _date_range(stmt: Select, column, start: dt.datetime | None, end: dt.datetime | None) -> Select:  # type: ignore[no-untyped-def]
    if start is not None:
        stmt = stmt.where(column >= start)
    if end is not None:
        stmt = stmt.where(column < end)
    return stmt


def inbox(
    session: Session | Reader,
    recipients: Iterable[str],
    message_type: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    limit: int,
) -> list[tuple]:
    """Pending deliveries (not yet acknowledged done), oldest first: the order the gateway accepted them.
    Rows of (docId, message type, recipient, sender, DocumentId, subject, status code, created at, state,
    lifecycle, lifecycle docId)."""
    recipients = list(recipients)
    if not recipients:
        return []
    raw = Raw.of(session)
    sql = (
        "SELECT p.doc_id, d.message_type, d.recipient_code, p.sender_code, p.document_id, p.subject, "
        "p.status_code, d.created_at, d.state, d.lifecycle, d.lifecycle_doc_id "
        "FROM deliveries d JOIN packets p ON p.id = d.packet_id "
        f"WHERE d.recipient_code IN ({placeholders(len(recipients))}) AND d.message_type = ? "
        f"AND d.state IN ({placeholders(len(INBOX_STATES))})"
    )
    params: list = [*recipients, message_type, *INBOX_STATES]
    if start is not None:
        sql += " AND d.created_at >= ?"
        params.append(raw.time(start))
    if end is not None:
        sql += " AND d.created_at < ?"
        params.append(raw.time(end))
    rows = raw.all(sql + " ORDER BY d.id LIMIT ?", (*params, limit))
    return [(*r[:7], read_time(r[7]), *r[8:]) for r in rows]


#: what a sender's view shows of each delivery (getSentEdocList, getTrace): columns, no ORM objects
_SENT_COLUMNS = (
    Packet.doc_id,
    Packet.sender_code,
    Packet.document_id,
    Packet.subject,
    Packet.status_code,
    Delivery.message_type,
    Delivery.recipient_code,
    Delivery.created_at,
    Delivery.fetched_at,
    Delivery.acked_at,
    Delivery.state,
    Delivery.fail_reason,
    Delivery.business_status,
    Delivery.business_status_at,
    Delivery.business_status_staff,
    Delivery.lifecycle,
    Delivery.lifecycle_at,
    Delivery.lifecycle_doc_id,
    Delivery.due_at,
    Delivery.answered_at,
)


def sent(
    session: Session,
    senders: Iterable[str],
    *,
    doc_id: str | None,
    message_type: str | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
    limit: int,
    before: int | None = None,
) -> Sequence[Row]:
    """Deliveries of the newest ``limit`` packets sent by ``senders`` (before packet id ``before``), newest
    packet first, recipients in delivery order. Two index walks: the packet ids, then their deliveries."""
    ids = select(Packet.id).where(Packet.sender_code.in_(list(senders)))
    if doc_id is not None:
        ids = ids.where(Packet.doc_id == doc_id)
    if message_type is not None:
        ids = ids.where(Packet.message_type == message_type)
    if before is not None:
        ids = ids.where(Packet.id < before)
    ids = _date_range(ids, Packet.created_at, start, end)
    packet_ids = list(session.scalars(ids.order_by(Packet.id.desc()).limit(limit)))
    return delivery_rows(session, packet_ids)


def delivery_rows(
    session: Session, packet_ids: Sequence[int], recipients: Iterable[str] | None = None
) -> Sequence[Row]:
    """The sender's view of these packets' deliveries (to ``recipients`` only, if given)."""
    if not packet_ids:
        return []
    stmt = select(*_SENT_COLUMNS).join(Delivery.packet).where(Delivery.packet_id.in_(list(packet_ids)))
    if recipients is not None:
        stmt = stmt.where(Delivery.recipient_code.in_(list(recipients)))
    return session.execute(stmt.order_by(Delivery.packet_id.desc(), Delivery.id)).all()


def mark_fetched(session: Session, ids: Sequence[int], now: dt.datetime, due: dt.datetime) -> list[str]:
    """First fetch of these deliveries: record the time, pending becomes fetched, and a document's answer
    is now due at ``due`` (one statement). Returns the recipients whose copy this call marked."""
    if not ids:
        return []
    raw = Raw.of(session)
    return raw.scalars(
        "UPDATE deliveries SET fetched_at = ?, "
        "state = CASE WHEN state = 'pending' THEN 'fetched' ELSE state END, "
        "due_at = CASE WHEN due_at IS NOT NULL THEN ? ELSE NULL END "
        f"WHERE id IN ({placeholders(len(ids))}) AND fetched_at IS NULL RETURNING recipient_code",
        (raw.time(now), raw.time(due), *ids),
    )


@dataclasses.dataclass(frozen=True)
class PacketHead:
    """What getEdoc and updateStatus need of a packet (no ORM object: they run for every delivery)."""

    id: int
    doc_id: str
    message_type: str
    sender_code: str
    sender_system: str
    sha256: str
    content: bytes | None = None


@dataclasses.dataclass(frozen=True)
class DeliveryState:
    id: int
    recipient_code: str
    state: str
    fetched: bool


def packet_head(
    session: Session | Reader, doc_id: str, *, content_for: Iterable[str] | None = None
) -> PacketHead | None:
    """The packet's head; with ``content_for`` (agency codes) its bytes too, but only if it is addressed to
    one of them: a system that may not fetch a packet cannot make the gateway read tens of MB."""
    raw = Raw.of(session)
    agencies = list(content_for) if content_for is not None else None
    sql = "SELECT id, doc_id, message_type, sender_code, sender_system, sha256"
    params: list = []
    if agencies is not None:
        sql += (
            ", CASE WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.packet_id = packets.id AND "
            f"d.recipient_code IN ({placeholders(len(agencies))})) THEN content END"
            if agencies
            else ", NULL"
        )
        params += agencies
    row = raw.one(sql + " FROM packets WHERE doc_id = ?", (*params, doc_id), binary=agencies is not None)
    if row is None:
        return None
    if agencies is not None:
        content = row[6]
        if content is not None and not isinstance(content, bytes):
            content = bytes(content)
        if content is not None and len(content) >= KEEP_CONNECTION_BYTES:
            raw.discard_after_use()  # libpq's input buffer grew to the packet's size
        return PacketHead(*row[:6], content=content)
    return PacketHead(*row)


def addressed_deliveries(
    session: Session | Reader, packet_id: int, recipients: Iterable[str], *, lock: bool = False
) -> list[DeliveryState]:
    """The packet's deliveries to ``recipients``, in delivery order; ``lock`` holds them (FOR UPDATE on
    PostgreSQL; SQLite's writer already excludes others) until the commit, so two acknowledgements of the
    same delivery cannot interleave."""
    recipients = list(recipients)
    if not recipients:
        return []
    raw = Raw.of(session)
    rows = raw.all(
        "SELECT id, recipient_code, state, fetched_at IS NOT NULL FROM deliveries "
        f"WHERE packet_id = ? AND recipient_code IN ({placeholders(len(recipients))}) ORDER BY id"
        + (" FOR UPDATE" if lock and raw.pg else ""),
        (packet_id, *recipients),
    )
    return [DeliveryState(r[0], r[1], r[2], bool(r[3])) for r in rows]


def acknowledge(
    session: Session,
    ids: Sequence[int],
    status: str,
    now: dt.datetime,
    system: str,
    reason: str | None,
) -> None:
    """Set the transport state of these deliveries: done and fail record when and by whom, fail its reason
    (any other state clears the reason)."""
    if not ids:
        return
    raw = Raw.of(session)
    where = f" WHERE id IN ({placeholders(len(ids))})"
    if status in ("done", "fail"):
        raw.execute(
            "UPDATE deliveries SET state = ?, acked_at = ?, acked_by = ?, fail_reason = ?" + where,
            (status, raw.time(now), system, reason if status == "fail" else None, *ids),
        )
    else:
        raw.execute("UPDATE deliveries SET state = ?, fail_reason = NULL" + where, (status, *ids))


# --- the hot path: hand-written statements on the session's connection (gateway.store.raw) --------------


def system_login(session: Session | Reader, system_id: str) -> tuple[str, bool, bool, str, list[str]] | None:
    """(secret hash, active, admin, auth method, agency codes) of a system, in one statement."""
    rows = Raw.of(session).all(
        "SELECT s.secret_hash, s.active, s.is_admin, s.auth_method, a.agency_code FROM systems s "
        "LEFT OUTER JOIN system_agencies a ON a.system_id = s.id WHERE s.id = ? ORDER BY a.agency_code",
        (system_id,),
    )
    if not rows:
        return None
    row = rows[0]
    return row[0], bool(row[1]), bool(row[2]), row[3], [r[4] for r in rows if r[4] is not None]


def system_of_certificate(
    session: Session | Reader, fingerprint: str
) -> tuple[str, bool, bool, dt.datetime, dt.datetime, list[str]] | None:
    """(system id, active, admin, not before, not after, agency codes) of the system a request-signing or
    TLS certificate is registered for, in one statement."""
    rows = Raw.of(session).all(
        "SELECT s.id, s.active, s.is_admin, c.not_before, c.not_after, a.agency_code "
        "FROM system_certificates c JOIN systems s ON s.id = c.system_id "
        "LEFT OUTER JOIN system_agencies a ON a.system_id = s.id WHERE c.fingerprint = ? "
        "ORDER BY a.agency_code",
        (fingerprint,),
    )
    if not rows:
        return None
    row = rows[0]
    agencies = [r[5] for r in rows if r[5] is not None]
    return row[0], bool(row[1]), bool(row[2]), read_time(row[3]), read_time(row[4]), agencies


def add_replay_record(session: Session, digest: str, fingerprint: str, expires: dt.datetime) -> None:
    """Record a signed request's signature (the primary key refuses it a second time: IntegrityError)."""
    raw = Raw.of(session)
    raw.execute(
        "INSERT INTO replay_records (signature_digest, fingerprint, expires_at) VALUES (?, ?, ?)",
        (digest, fingerprint, raw.time(expires)),
    )


def prune_replay_records(session: Session, now: dt.datetime) -> None:
    raw = Raw.of(session)
    raw.execute("DELETE FROM replay_records WHERE expires_at < ?", (raw.time(now),))


def seal_policies(
    session: Session | Reader, codes: Iterable[str]
) -> dict[str, tuple[bool, bool, bool, set[str]]]:
    """agency code → (active, require_signature, allow_sha1, registered seal fingerprints), one query."""
    codes = list(codes)
    out: dict[str, tuple[bool, bool, bool, set[str]]] = {}
    if not codes:
        return out
    rows = Raw.of(session).all(
        "SELECT a.code, a.active, a.require_signature, a.allow_sha1, c.fingerprint FROM agencies a "
        "LEFT OUTER JOIN agency_certificates c ON c.agency_code = a.code "
        f"WHERE a.code IN ({placeholders(len(codes))})",
        codes,
    )
    for code, active, require, sha1, fingerprint in rows:
        entry = out.setdefault(code, (bool(active), bool(require), bool(sha1), set()))
        if fingerprint:
            entry[3].add(fingerprint)
    return out


_EARLIER_PACKET = "SELECT id, doc_id, message_type FROM packets WHERE sender_code = ? AND sha256 = ?"
_SAME_DOCUMENT_ID = (
    "SELECT doc_id, sha256, message_type FROM packets WHERE sender_code = ? AND document_id = ?"
)


def earlier_packet(session: Session, sender: str, sha256: str) -> tuple[int, str, str] | None:
    """(id, docId, message type) of the packet with these bytes from this sender, if any."""
    row = Raw.of(session).one(_EARLIER_PACKET, (sender, sha256))
    return (row[0], row[1], row[2]) if row else None


def prefetch_document_checks(
    session: Session | Reader, sender: str, sha256: str, recipients: Sequence[str], document_id: str | None
) -> None:
    """The reads a new document's checks make before its transaction — :func:`earlier_packet`,
    :func:`agency_states` of its recipients, :func:`other_document_digests` (with a DocumentId) — in one
    round trip on PostgreSQL (:meth:`gateway.store.raw.Raw.prefetch`); those functions then take them."""
    statements: list[tuple[str, Sequence[Any]]] = [(_EARLIER_PACKET, (sender, sha256))]
    if recipients:
        statements.append((_agency_states_sql(len(recipients)), list(recipients)))
    if document_id:
        statements.append((_SAME_DOCUMENT_ID, (sender, document_id)))
    Raw.of(session).prefetch(statements)


def other_document_digests(session: Session, sender: str, document_id: str) -> list[tuple[str, str]]:
    """(docId, SHA-256) of the sender's documents with this DocumentId.

    The message type is filtered here, not in SQL: with ``message_type = 'edoc'`` in the WHERE clause SQLite
    (which has no statistics) walks ``ix_packets_sender_type_created``, every document the sender ever
    sent, on each sendEdoc, instead of the few rows ``ix_packets_sender_document_id`` finds."""
    rows = Raw.of(session).all(_SAME_DOCUMENT_ID, (sender, document_id))
    return [(r[0], r[1]) for r in rows if r[2] == "edoc"]


#: the packet columns :func:`insert_packet_row` writes (all of them but ``id``)
PACKET_COLUMNS = (
    "doc_id",
    "message_type",
    "sender_code",
    "sender_system",
    "document_id",
    "business_doc_type",
    "subject",
    "code",
    "status_code",
    "description",
    "answers_packet_id",
    "origin_packet_id",
    "sha256",
    "size",
    "content",
    "created_at",
    "signer_fingerprint",
    "signer_subject",
    "signer_serial",
    "signature_algorithm",
    "digest_algorithm",
    "seal_verified_at",
    "legacy_sha1",
)
_PACKET_TIMES = frozenset({"created_at", "seal_verified_at"})
_INSERT_PACKET_SQL = (
    f"INSERT INTO packets ({', '.join(PACKET_COLUMNS)}) VALUES ({placeholders(len(PACKET_COLUMNS))})"
)


#: a connection that stored or fetched a packet of this size or more is closed afterwards, not pooled
KEEP_CONNECTION_BYTES = 8 << 20


def insert_packet_row(session: Session, values: dict) -> int:
    """Insert a packet (``values``: every column of :data:`PACKET_COLUMNS`); its id."""
    if values.keys() != set(PACKET_COLUMNS):
        raise ValueError(f"packet columns differ: {sorted(set(PACKET_COLUMNS) ^ values.keys())}")
    raw = Raw.of(session)
    params = [raw.time(values[c]) if c in _PACKET_TIMES else values[c] for c in PACKET_COLUMNS]
    if len(values["content"]) >= KEEP_CONNECTION_BYTES:
        # sqlite3 would keep the bound packet in its statement cache, libpq a buffer the size of it
        raw.discard_after_use()
    return raw.insert_id(_INSERT_PACKET_SQL, params)


def insert_deliveries(
    session: Session,
    packet_id: int,
    recipients: Sequence[str],
    message_type: str,
    now: dt.datetime,
    due: dt.datetime | None = None,
) -> None:
    raw = Raw.of(session)
    created, due_at = raw.time(now), raw.time(due)
    raw.many(
        "INSERT INTO deliveries (packet_id, recipient_code, message_type, state, created_at, due_at) "
        "VALUES (?, ?, ?, 'pending', ?, ?)",
        [(packet_id, r, message_type, created, due_at) for r in recipients],
    )


# --- the document's life --------------------------------------------------------------------------------


def originals(session: Session, sender: str, document_ids: Iterable[str]) -> dict[str, Original]:
    """The newest document (new, update or replace) of ``sender`` with each DocumentId, with its recipients'
    lifecycle states. Its deliveries are locked until the commit (FOR UPDATE), so two requests or answers
    about the same document cannot interleave."""
    out: dict[str, Original] = {}
    for document_id in dict.fromkeys(document_ids):
        row = session.execute(
            select(Packet.id, Packet.doc_id)
            .where(
                Packet.sender_code == sender,
                Packet.document_id == document_id,
                Packet.message_type == "edoc",
                Packet.business_doc_type != 1,
            )
            .order_by(Packet.id.desc())
            .limit(1)
        ).first()
        if row is None:
            continue
        deliveries = session.execute(
            select(Delivery.recipient_code, Delivery.lifecycle)
            .where(Delivery.packet_id == row[0])
            .order_by(Delivery.id)
            .with_for_update()
        ).all()
        # a copy that only told a removed receiver it was removed does not make it a recipient
        out[document_id] = Original(
            row[0], row[1], document_id, {r: state for r, state in deliveries if state != "removed"}
        )
    return out


def delivery(session: Session, packet_id: int, recipient: str, *, lock: bool = False) -> Delivery | None:
    stmt = select(Delivery).where(Delivery.packet_id == packet_id, Delivery.recipient_code == recipient)
    if lock:
        # populate_existing: the row as it is once locked, not a copy the session read before the lock
        stmt = stmt.with_for_update(of=Delivery).execution_options(populate_existing=True)
    return session.scalars(stmt).first()


def statuses_sent(session: Session, packet_id: int, recipient: str) -> dict[str, str]:
    """Status code → docId (the first) of the statuses ``recipient`` sent about packet ``packet_id``."""
    rows = session.execute(
        select(Packet.status_code, Packet.doc_id)
        .where(
            Packet.answers_packet_id == packet_id,
            Packet.sender_code == recipient,
            Packet.message_type == "status",
        )
        .order_by(Packet.id)
    )
    out: dict[str, str] = {}
    for code, doc_id in rows:
        out.setdefault(code, doc_id)
    return out


def lifecycle_target(session: Session, sender: str, document_id: str, recipient: str) -> Delivery | None:
    """The copy a 15/16 from ``recipient`` answers: among the documents of ``sender`` with this DocumentId
    and the earlier documents they recall, update or replace, the one with the newest request (locked)."""
    packets = select(Packet.id, Packet.origin_packet_id).where(
        Packet.sender_code == sender, Packet.document_id == document_id, Packet.message_type == "edoc"
    )
    ids: set[int] = set()
    for pid, origin in session.execute(packets):
        ids.add(pid)
        if origin is not None:
            ids.add(origin)
    if not ids:
        return None
    return session.scalars(
        select(Delivery)
        .where(
            Delivery.packet_id.in_(sorted(ids)),
            Delivery.recipient_code == recipient,
            Delivery.lifecycle.is_not(None),
            Delivery.lifecycle != "removed",
        )
        .order_by(Delivery.lifecycle_at.desc(), Delivery.id.desc())
        .limit(1)
        .with_for_update(of=Delivery)
    ).first()


def set_lifecycle(
    session: Session, targets: Sequence[tuple[int, str]], state: str, doc_id: str, now: dt.datetime
) -> None:
    for packet_id, recipient in targets:
        session.execute(
            update(Delivery)
            .where(Delivery.packet_id == packet_id, Delivery.recipient_code == recipient)
            .values(lifecycle=state, lifecycle_at=now, lifecycle_doc_id=doc_id)
            .execution_options(synchronize_session=False)
        )


QUEUE_LOCKS = 64
QUEUE_LOCK_BASE = 0x4C54510000  # "LTQ"


def mark_removed(
    session: Session, packet_id: int, recipients: Sequence[str], doc_id: str, now: dt.datetime
) -> None:
    """The copies of an update sent to receivers it removes: no receipt due, and not a recipient's copy."""
    if recipients:
        session.execute(
            update(Delivery)
            .where(Delivery.packet_id == packet_id, Delivery.recipient_code.in_(list(recipients)))
            .values(lifecycle="removed", lifecycle_at=now, lifecycle_doc_id=doc_id, due_at=None)
            .execution_options(synchronize_session=False)
        )


def recall_doc_id(session: Session, packet_id: int) -> str | None:
    """The docId of the recall (status 13 or recall document) made of packet ``packet_id``, if any."""
    return session.scalar(
        select(Delivery.lifecycle_doc_id)
        .where(
            Delivery.packet_id == packet_id,
            Delivery.lifecycle.in_(["recall-requested", "recalled", "recall-refused"]),
        )
        .order_by(Delivery.lifecycle_at)
        .limit(1)
    )


def lock_recipients(session: Session, recipients: Iterable[str]) -> None:
    """Hold each recipient's queue until the commit (PostgreSQL), so deliveries get their ids in the order
    they are committed: a recipient never sees a later packet before an earlier one. SQLite already
    serializes writers (BEGIN IMMEDIATE)."""
    if not Raw.of(session).pg:
        return
    # recipients share QUEUE_LOCKS keys (a broadcast to thousands takes at most that many locks; a shared
    # key only makes two sends wait for each other, which ordering allows)
    keys = sorted(
        {QUEUE_LOCK_BASE + hashlib.sha256(r.encode()).digest()[0] % QUEUE_LOCKS for r in recipients}
    )
    if keys:
        Raw.of(session).one(
            "SELECT count(pg_advisory_xact_lock(k)) FROM "
            "(SELECT k FROM unnest(CAST(? AS bigint[])) AS k ORDER BY k) AS ordered",
            (keys,),
        )


_EVENT_COLUMNS = (
    "packet_id",
    "kind",
    "at",
    "recipient_code",
    "agency_code",
    "system_id",
    "staff",
    "status_code",
    "detail",
    "related_doc_id",
)
_INSERT_EVENT_SQL = (
    f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) VALUES ({placeholders(len(_EVENT_COLUMNS))})"
)


def add_events(session: Session, rows: Sequence[dict]) -> None:
    """Append trace events (each a dict of :class:`Event` columns: ``packet_id``, ``kind`` and ``at``
    required, the others None when missing)."""
    if rows:
        unknown = {k for row in rows for k in row} - set(_EVENT_COLUMNS)
        if unknown:
            raise ValueError(f"not event columns: {sorted(unknown)}")
        raw = Raw.of(session)
        raw.many(
            _INSERT_EVENT_SQL,
            [
                (
                    row["packet_id"],
                    row["kind"],
                    raw.time(row["at"]),
                    *(row.get(c) for c in _EVENT_COLUMNS[3:]),
                )
                for row in rows
            ],
        )


def events_of(session: Session, packet_id: int, recipients: Iterable[str] | None) -> Sequence[Event]:
    """A packet's events in order; with ``recipients``, only theirs and those concerning every recipient."""
    stmt = select(Event).where(Event.packet_id == packet_id)
    if recipients is not None:
        stmt = stmt.where(or_(Event.recipient_code.is_(None), Event.recipient_code.in_(list(recipients))))
    return session.scalars(stmt.order_by(Event.id)).all()


def doc_id_of(session: Session, packet_id: int | None) -> str | None:
    if packet_id is None:
        return None
    row = Raw.of(session).one("SELECT doc_id FROM packets WHERE id = ?", (packet_id,))
    return row[0] if row else None


def successors(session: Session, packet_id: int, recipients: Iterable[str] | None) -> list[str]:
    """DocIds of the recalls, updates and replaces of a packet (only those delivered to ``recipients``)."""
    stmt = select(Packet.doc_id).where(Packet.origin_packet_id == packet_id)
    if recipients is not None:
        stmt = stmt.where(
            Packet.id.in_(select(Delivery.packet_id).where(Delivery.recipient_code.in_(list(recipients))))
        )
    return list(session.scalars(stmt.order_by(Packet.id)))


def overdue(
    session: Session,
    senders: Iterable[str] | None,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
    limit: int,
) -> Sequence[Delivery]:
    """Document deliveries accepted in [start, end) that missed the same-day rule: still unanswered after
    their due time, or answered after it. Recalls and recalled copies do not count."""
    stmt = (
        select(Delivery)
        .join(Delivery.packet)
        .where(
            Delivery.message_type == "edoc",
            Delivery.created_at >= start,
            Delivery.created_at < end,
            Delivery.due_at.is_not(None),
            or_(
                (Delivery.answered_at.is_(None)) & (Delivery.due_at < now),
                Delivery.answered_at > Delivery.due_at,
            ),
            or_(Delivery.lifecycle.is_(None), Delivery.lifecycle != "recalled"),
        )
    )
    if senders is not None:
        stmt = stmt.where(Packet.sender_code.in_(list(senders)))
    return session.scalars(stmt.order_by(Delivery.id).limit(limit)).all()


# --- evidence ----------------------------------------------------------------------------------------------


def submission_receipt(session: Session, packet_id: int) -> bytes | None:
    row = Raw.of(session).one(
        "SELECT content FROM receipts WHERE packet_id = ? AND kind = 'submission' ORDER BY id LIMIT 1",
        (packet_id,),
    )
    return bytes(row[0]) if row is not None else None


def packet_digest(session: Session, packet_id: int) -> tuple[str, str, str, str] | None:
    """(docId, SHA-256, sender agency, sender system) of a packet."""
    row = Raw.of(session).one(
        "SELECT doc_id, sha256, sender_code, sender_system FROM packets WHERE id = ?", (packet_id,)
    )
    return (row[0], row[1], row[2], row[3]) if row else None


def receipts_of(session: Session, packet_id: int, recipients: Iterable[str] | None) -> list[bytes]:
    """The receipts about a packet, oldest first; with ``recipients``, the submission and theirs only."""
    stmt = select(Receipt.content).where(Receipt.packet_id == packet_id)
    if recipients is not None:
        stmt = stmt.where(or_(Receipt.recipient_code.is_(None), Receipt.recipient_code.in_(list(recipients))))
    return [bytes(c) for c in session.scalars(stmt.order_by(Receipt.id))]
