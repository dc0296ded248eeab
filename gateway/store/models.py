"""The database tables (SQLAlchemy 2.x typed declarative). Alembic migrations create and upgrade them."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only makes INTEGER PRIMARY KEY columns auto-increment; BigInteger on PostgreSQL.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both databases (SQLite keeps no zone, so it is put back on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(dt.timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is not None:
            value = value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value
        return value


def _certificate_columns(cert: x509.Certificate) -> dict:
    from gateway.core.trust import fingerprint_sha256, subject_text

    return {
        "fingerprint": fingerprint_sha256(cert),
        "subject": subject_text(cert),
        "serial": format(cert.serial_number, "x"),
        "not_after": cert.not_valid_after_utc,
        "pem": cert.public_bytes(serialization.Encoding.PEM).decode(),
    }


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Agency(Base):
    """An entry of the directory of agencies (codes of Decision 20/2020/QĐ-TTg)."""

    __tablename__ = "agencies"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    parent_code: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(100))
    old_code: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: refuse this agency's unsigned packets (the default; off is an operator choice while it cannot sign)
    require_signature: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    #: accept RSA-SHA1 / SHA-1 seals from this agency (older senders); off by default
    allow_sha1: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    certificates: Mapped[list[AgencyCertificate]] = relationship(
        back_populates="agency", cascade="all, delete-orphan", lazy="selectin"
    )


class AgencyCertificate(Base):
    """A seal certificate registered for an agency (``lienthong agency cert add``)."""

    __tablename__ = "agency_certificates"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    agency_code: Mapped[str] = mapped_column(ForeignKey("agencies.code"), index=True)
    subject: Mapped[str] = mapped_column(Text)
    serial: Mapped[str] = mapped_column(String(64))
    not_after: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    pem: Mapped[str] = mapped_column(Text)
    added_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    agency: Mapped[Agency] = relationship(back_populates="certificates")

    @classmethod
    def of(cls, agency_code: str, cert: x509.Certificate, now: dt.datetime) -> AgencyCertificate:
        """The row registering ``cert`` as a seal certificate of ``agency_code``."""
        return cls(agency_code=agency_code, added_at=now, **_certificate_columns(cert))


class System(Base):
    """A connected document-management system or integration platform."""

    __tablename__ = "systems"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: a salted hash, or "" for a system that authenticates only with its certificate
    secret_hash: Mapped[str] = mapped_column(String(200))
    #: "x509" (signed requests; the default for new systems) or "username-token" (for stacks that cannot
    #: sign, an operator choice)
    auth_method: Mapped[str] = mapped_column(String(16), default="x509", server_default="username-token")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    agencies: Mapped[list[SystemAgency]] = relationship(
        back_populates="system", cascade="all, delete-orphan", lazy="selectin"
    )
    certificates: Mapped[list[SystemCertificate]] = relationship(
        back_populates="system", cascade="all, delete-orphan", lazy="selectin"
    )


class SystemCertificate(Base):
    """A certificate a system signs its requests with (``lienthong system add … --cert``)."""

    __tablename__ = "system_certificates"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    system_id: Mapped[str] = mapped_column(ForeignKey("systems.id", ondelete="CASCADE"), index=True)
    subject: Mapped[str] = mapped_column(Text)
    serial: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    not_after: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    pem: Mapped[str] = mapped_column(Text)
    added_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    system: Mapped[System] = relationship(back_populates="certificates")

    @classmethod
    def of(cls, system_id: str, cert: x509.Certificate, now: dt.datetime) -> SystemCertificate:
        """The row registering ``cert`` as a request-signing certificate of ``system_id``."""
        columns = _certificate_columns(cert)
        return cls(system_id=system_id, added_at=now, not_before=cert.not_valid_before_utc, **columns)


class ReplayRecord(Base):
    """A signed request already seen: its signature may not be used again before it expires."""

    __tablename__ = "replay_records"

    signature_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: SHA-256 fingerprint of the certificate that signed
    fingerprint: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)


class SystemAgency(Base):
    """Which agencies a system may act for."""

    __tablename__ = "system_agencies"

    system_id: Mapped[str] = mapped_column(ForeignKey("systems.id", ondelete="CASCADE"), primary_key=True)
    agency_code: Mapped[str] = mapped_column(ForeignKey("agencies.code"), primary_key=True)
    system: Mapped[System] = relationship(back_populates="agencies")


class Packet(Base):
    """One accepted packet: its exact bytes, their SHA-256, and what routing read from it."""

    __tablename__ = "packets"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    doc_id: Mapped[str] = mapped_column(String(36), unique=True)
    message_type: Mapped[str] = mapped_column(String(8))
    sender_code: Mapped[str] = mapped_column(String(64))
    sender_system: Mapped[str] = mapped_column(String(64))
    document_id: Mapped[str | None] = mapped_column(String(255))
    business_doc_type: Mapped[int] = mapped_column(Integer, default=0)
    subject: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str | None] = mapped_column(String(64))
    status_code: Mapped[str | None] = mapped_column(String(2))
    description: Mapped[str | None] = mapped_column(Text)
    answers_packet_id: Mapped[int | None] = mapped_column(ForeignKey("packets.id"))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    # the seal, as verified on receipt (all None for an unsigned packet of an agency allowed to send one)
    signer_fingerprint: Mapped[str | None] = mapped_column(String(64))
    signer_subject: Mapped[str | None] = mapped_column(Text)
    signer_serial: Mapped[str | None] = mapped_column(String(64))
    signature_algorithm: Mapped[str | None] = mapped_column(String(32))
    digest_algorithm: Mapped[str | None] = mapped_column(String(16))
    seal_verified_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    #: accepted with RSA-SHA1/SHA-1 because the operator enabled it
    legacy_sha1: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    #: for a recall, update or replace: the earlier document it changes (its successors point here)
    origin_packet_id: Mapped[int | None] = mapped_column(ForeignKey("packets.id"))

    __table_args__ = (
        # The same bytes from the same sender are the same packet: a resend returns the first docId.
        UniqueConstraint("sender_code", "sha256"),
        # One new document or recall per (sender, DocumentId); updates and replaces may reuse it.
        Index(
            "uq_packets_new_document_id",
            "sender_code",
            "document_id",
            unique=True,
            sqlite_where=text("message_type = 'edoc' AND business_doc_type IN (0, 1)"),
            postgresql_where=text("message_type = 'edoc' AND business_doc_type IN (0, 1)"),
        ),
        Index("ix_packets_sender_type_created", "sender_code", "message_type", "created_at"),
        Index("ix_packets_sender_document_id", "sender_code", "document_id"),
        # newest first per sender (getSentEdocList) without sorting the sender's whole history
        Index("ix_packets_sender_id", "sender_code", "id"),
        Index("ix_packets_answers", "answers_packet_id", "sender_code"),
        Index("ix_packets_origin", "origin_packet_id"),
    )


class Delivery(Base):
    """One recipient's copy of a packet, with its transport state and the latest business status."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    packet_id: Mapped[int] = mapped_column(ForeignKey("packets.id"))
    recipient_code: Mapped[str] = mapped_column(String(64))
    message_type: Mapped[str] = mapped_column(String(8))
    #: pending (not fetched), fetched, processing, done or fail
    state: Mapped[str] = mapped_column(String(12), default="pending")
    fail_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    fetched_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    acked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    acked_by: Mapped[str | None] = mapped_column(String(64))
    business_status: Mapped[str | None] = mapped_column(String(2))
    business_status_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    #: who sent the latest business status (StaffInfo/Staff)
    business_status_staff: Mapped[str | None] = mapped_column(String(100))
    #: the first status telling the sender the recipient has it (01–06 or 02): the same-day rule
    answered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    #: when that answer is due: the end of the working day of delivery (None: no answer expected)
    due_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    #: recall/update/replace: "recall-requested", "recalled", "recall-refused", "update-requested", …
    lifecycle: Mapped[str | None] = mapped_column(String(20))
    lifecycle_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    #: the docId of the recall/update/replace packet (or status 13) that asked
    lifecycle_doc_id: Mapped[str | None] = mapped_column(String(36))

    packet: Mapped[Packet] = relationship(lazy="joined", innerjoin=True)

    __table_args__ = (
        UniqueConstraint("packet_id", "recipient_code"),
        Index("ix_deliveries_inbox", "recipient_code", "message_type", "state", "id"),
        Index("ix_deliveries_type_created", "message_type", "created_at"),
    )


class Event(Base):
    """One step in a document's life (its trace): accepted, delivered, acknowledged, a business status,
    a recall/update/replace request. ``recipient_code`` is None for what concerns every recipient."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    packet_id: Mapped[int] = mapped_column(ForeignKey("packets.id"))
    recipient_code: Mapped[str | None] = mapped_column(String(64))
    #: accepted, delivered, acknowledged, status, recall-requested, update-requested, replace-requested
    kind: Mapped[str] = mapped_column(String(24))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    #: the agency and system that acted
    agency_code: Mapped[str | None] = mapped_column(String(64))
    system_id: Mapped[str | None] = mapped_column(String(64))
    staff: Mapped[str | None] = mapped_column(String(100))
    status_code: Mapped[str | None] = mapped_column(String(12))
    detail: Mapped[str | None] = mapped_column(Text)
    #: the packet that caused it (a status, a recall/update/replace document)
    related_doc_id: Mapped[str | None] = mapped_column(String(36))

    __table_args__ = (Index("ix_events_packet", "packet_id", "id"),)


class Receipt(Base):
    """A signed receipt the gateway issued (submission, delivery or status), as the exact signed bytes."""

    __tablename__ = "receipts"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    receipt_id: Mapped[str] = mapped_column(String(36), unique=True)
    #: the packet the receipt is about (for a status receipt: the document the status answers)
    packet_id: Mapped[int] = mapped_column(ForeignKey("packets.id"))
    kind: Mapped[str] = mapped_column(String(12))
    #: the recipient it concerns (delivery and status receipts), None for a submission
    recipient_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    content: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (Index("ix_receipts_packet", "packet_id", "id"),)


class AuditEntry(Base):
    """One entry of the audit hash chain (see :mod:`gateway.core.evidence`). ``content`` is the canonical
    JSON that is hashed; ``kind`` and ``doc_id`` repeat parts of it for queries only."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(24))
    doc_id: Mapped[str | None] = mapped_column(String(36), index=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    #: SHA-256(hash of the previous entry ‖ SHA-256(content)), hex
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed statement of the chain head: entry ``seq`` has hash ``hash``."""

    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    content: Mapped[bytes] = mapped_column(LargeBinary)
