"""Queries, each taking the session of the caller's unit of work. No commits here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from sqlalchemy import Select, bindparam, case, func, insert, or_, select, update
from sqlalchemy.orm import Session, undefer

from gateway.core.routing import AgencyState
from gateway.store.models import Agency, AgencyCertificate, Delivery, Packet, System, SystemAgency

INBOX_STATES = ("pending", "fetched", "processing", "fail")


# --- directory ------------------------------------------------------------------------------------------


def get_agency(session: Session, code: str) -> Agency | None:
    return session.get(Agency, code)


def agency_states(session: Session, codes: Iterable[str]) -> dict[str, AgencyState]:
    rows = session.execute(_STATES, {"codes": list(codes)})
    return {code: AgencyState(code=code, active=active) for code, active in rows}


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
    return list(
        session.scalars(
            select(Delivery.recipient_code).where(Delivery.packet_id == packet_id).order_by(Delivery.id)
        )
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
    session: Session,
    recipients: Iterable[str],
    message_type: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    limit: int,
) -> Sequence[Delivery]:
    """Pending deliveries (not yet acknowledged done), oldest first: the order the gateway accepted them."""
    stmt = select(Delivery).where(
        Delivery.recipient_code.in_(list(recipients)),
        Delivery.message_type == message_type,
        Delivery.state.in_(INBOX_STATES),
    )
    stmt = _date_range(stmt, Delivery.created_at, start, end)
    return session.scalars(stmt.order_by(Delivery.id).limit(limit)).all()


def sent(
    session: Session,
    senders: Iterable[str],
    *,
    doc_id: str | None,
    message_type: str | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
    limit: int,
) -> Sequence[Delivery]:
    """Deliveries of packets sent by ``senders``, newest packet first, recipients in delivery order."""
    stmt = select(Delivery).join(Delivery.packet).where(Packet.sender_code.in_(list(senders)))
    if doc_id is not None:
        stmt = stmt.where(Packet.doc_id == doc_id)
    if message_type is not None:
        stmt = stmt.where(Packet.message_type == message_type)
    stmt = _date_range(stmt, Packet.created_at, start, end)
    return session.scalars(stmt.order_by(Packet.id.desc(), Delivery.id).limit(limit)).all()


def mark_fetched(session: Session, ids: Sequence[int], now: dt.datetime) -> None:
    """First fetch of these deliveries: record the time, and pending becomes fetched (one statement)."""
    if ids:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids), Delivery.fetched_at.is_(None))
            .values(
                fetched_at=now,
                state=case((Delivery.state == "pending", "fetched"), else_=Delivery.state),
            )
            .execution_options(synchronize_session=False)
        )


# --- the hot path: prepared column queries, no ORM objects (sendEdoc runs these on every packet) ---------
# Built once: SQLAlchemy then reuses their compiled form; only the parameters change per call.

_LOGIN = select(System.secret_hash, System.active, System.is_admin, System.auth_method).where(
    System.id == bindparam("system_id")
)
_SYSTEM_AGENCIES = select(SystemAgency.agency_code).where(SystemAgency.system_id == bindparam("system_id"))
_POLICIES = (
    select(
        Agency.code, Agency.active, Agency.require_signature, Agency.allow_sha1, AgencyCertificate.fingerprint
    )
    .outerjoin(AgencyCertificate, AgencyCertificate.agency_code == Agency.code)
    .where(Agency.code.in_(bindparam("codes", expanding=True)))
)
_STATES = select(Agency.code, Agency.active).where(Agency.code.in_(bindparam("codes", expanding=True)))
_EARLIER = select(Packet.id, Packet.doc_id, Packet.message_type).where(
    Packet.sender_code == bindparam("sender"), Packet.sha256 == bindparam("sha256")
)
_SAME_DOCUMENT_ID = select(Packet.doc_id, Packet.sha256).where(
    Packet.sender_code == bindparam("sender"),
    Packet.document_id == bindparam("document_id"),
    Packet.message_type == "edoc",
)
_INSERT_PACKET = insert(Packet).returning(Packet.id)
_INSERT_DELIVERY = insert(Delivery)


def system_login(session: Session, system_id: str) -> tuple[str, bool, bool, str, list[str]] | None:
    """(secret hash, active, admin, auth method, agency codes) of a system, in two light queries."""
    row = session.execute(_LOGIN, {"system_id": system_id}).first()
    if row is None:
        return None
    agencies = list(session.scalars(_SYSTEM_AGENCIES, {"system_id": system_id}))
    return row[0], row[1], row[2], row[3], agencies


def seal_policies(session: Session, codes: Iterable[str]) -> dict[str, tuple[bool, bool, bool, set[str]]]:
    """agency code → (active, require_signature, allow_sha1, registered seal fingerprints), one query."""
    out: dict[str, tuple[bool, bool, bool, set[str]]] = {}
    for code, active, require, sha1, fingerprint in session.execute(_POLICIES, {"codes": list(codes)}):
        entry = out.setdefault(code, (active, require, sha1, set()))
        if fingerprint:
            entry[3].add(fingerprint)
    return out


def earlier_packet(session: Session, sender: str, sha256: str) -> tuple[int, str, str] | None:
    """(id, docId, message type) of the packet with these bytes from this sender, if any."""
    row = session.execute(_EARLIER, {"sender": sender, "sha256": sha256}).first()
    return (row[0], row[1], row[2]) if row else None


def other_document_digests(session: Session, sender: str, document_id: str) -> list[tuple[str, str]]:
    """(docId, SHA-256) of the sender's documents with this DocumentId."""
    rows = session.execute(_SAME_DOCUMENT_ID, {"sender": sender, "document_id": document_id})
    return [(r[0], r[1]) for r in rows]


def insert_packet(
    session: Session, values: dict, recipients: Sequence[str], message_type: str, now: dt.datetime
) -> int:
    """The packet row and one delivery per recipient, as two statements."""
    packet_id = session.execute(_INSERT_PACKET, values).scalar_one()
    session.execute(
        _INSERT_DELIVERY,
        [
            {
                "packet_id": packet_id,
                "recipient_code": r,
                "message_type": message_type,
                "state": "pending",
                "created_at": now,
            }
            for r in recipients
        ],
    )
    return packet_id
