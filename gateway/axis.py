"""The axis's operations: each is one call, one authentication and one transaction.

The SOAP edge (``gateway.soap``) calls these with what the guard read from the request; the core
(``gateway.core``) decides, the store (``gateway.store``) remembers. Every refusal is a
:mod:`gateway.errors` exception raised before anything is committed, so a refused request leaves the
database as it was.

Identity is one seam: :class:`Authenticator` turns the request's credentials into an
:class:`~gateway.core.routing.Identity`. Today it checks WS-Security UsernameTokens against the salted
hashes in ``systems``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import tempfile
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives import serialization
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from gateway import errors
from gateway import evidence as audit
from gateway.config import DEFAULT_TIMEZONE
from gateway.core import evidence as ev
from gateway.core import lifecycle, routing
from gateway.core.credentials import UsernameToken, check_secret
from gateway.core.packet import (
    EDOC,
    MESSAGE_TYPES,
    RECALL,
    STATUS,
    Limits,
    SchemaSet,
    check_packet,
    packet_fields,
)
from gateway.core.packet import (
    Packet as PacketFields,
)
from gateway.core.routing import Identity, Route
from gateway.core.seal import (
    DocumentSigner,
    KeyCache,
    SealPolicy,
    VerifiedSeal,
    check_signer_agency,
    is_sealed,
    verify_seal,
)
from gateway.core.trust import TrustStore
from gateway.core.workdays import WorkingCalendar
from gateway.core.wssec import VerifiedEnvelope
from gateway.store import repo
from gateway.store.db import Database
from gateway.store.models import Agency, Event, Packet
from gateway.store.raw import Reader

log = logging.getLogger("lienthong.axis")

TRANSPORT_STATUSES = ("processing", "done", "fail")
MAX_REASON = 500
LIST_LIMIT = 1000
#: getSentEdocList pages: packets per page by default, and at most
SENT_PAGE = 50
SENT_PAGE_MAX = 1000
#: the overdue report looks this many days back unless given dates
OVERDUE_DAYS = 30


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# --- results --------------------------------------------------------------------------------------------


#: packets from this size on wait in a temporary file while their seal is verified (see Axis.send_edoc)
SPOOL_BYTES = 8 << 20
#: a submission receipt signed before the transaction is used if the transaction began within this time;
#: otherwise it is signed again, so a receipt's time is never more than this before the acceptance it states
PRESIGNED_RECEIPT_AGE = dt.timedelta(seconds=1)


@dataclasses.dataclass(frozen=True)
class SendOutcome:
    doc_id: str
    message_type: str
    recipients: tuple[str, ...]
    #: True when the same packet had been sent before: the first docId is returned, nothing is added
    duplicate: bool = False
    #: the gateway's signed submission receipt (None when it has no key, or evidence is off)
    receipt: bytes | None = None


@dataclasses.dataclass(frozen=True)
class InboxItem:
    doc_id: str
    message_type: str
    recipient: str
    sender: str
    document_id: str | None
    subject: str | None
    status_code: str | None
    created_at: dt.datetime
    transport_state: str
    lifecycle: str | None = None
    lifecycle_doc_id: str | None = None


@dataclasses.dataclass(frozen=True)
class FetchedPacket:
    doc_id: str
    message_type: str
    sha256: str
    content: bytes


@dataclasses.dataclass(frozen=True)
class SentItem:
    doc_id: str
    message_type: str
    sender: str
    document_id: str | None
    subject: str | None
    status_code: str | None
    recipient: str
    accepted_at: dt.datetime
    delivered_at: dt.datetime | None
    acknowledged_at: dt.datetime | None
    transport_state: str
    fail_reason: str | None
    business_status: str | None
    business_status_at: dt.datetime | None
    business_status_staff: str | None = None
    #: recall/update/replace state of this recipient's copy (see :mod:`gateway.core.lifecycle`)
    lifecycle: str | None = None
    lifecycle_at: dt.datetime | None = None
    lifecycle_doc_id: str | None = None
    #: when the recipient's receipt (01/03) is due, and when it came
    due_at: dt.datetime | None = None
    answered_at: dt.datetime | None = None


def _sent_item(d) -> SentItem:  # type: ignore[no-untyped-def]
    """A row of :func:`gateway.store.repo.delivery_rows` as the sender's view of one recipient."""
    return SentItem(
        doc_id=d.doc_id,
        message_type=d.message_type,
        sender=d.sender_code,
        document_id=d.document_id,
        subject=d.subject,
        status_code=d.status_code,
        recipient=d.recipient_code,
        accepted_at=d.created_at,
        delivered_at=d.fetched_at,
        acknowledged_at=d.acked_at,
        transport_state=d.state,
        fail_reason=d.fail_reason,
        business_status=d.business_status,
        business_status_at=d.business_status_at,
        business_status_staff=d.business_status_staff,
        lifecycle=d.lifecycle,
        lifecycle_at=d.lifecycle_at,
        lifecycle_doc_id=d.lifecycle_doc_id,
        due_at=d.due_at,
        answered_at=d.answered_at,
    )


@dataclasses.dataclass(frozen=True)
class TraceEvent:
    at: dt.datetime
    kind: str
    recipient: str | None
    agency: str | None
    system: str | None
    staff: str | None
    code: str | None
    detail: str | None
    related_doc_id: str | None


@dataclasses.dataclass(frozen=True)
class Trace:
    """A packet's whole life as the caller may see it: the sender sees every recipient, a recipient its own
    part only."""

    doc_id: str
    message_type: str
    sender: str
    sender_system: str
    document_id: str | None
    subject: str | None
    status_code: str | None
    business_doc_type: int
    accepted_at: dt.datetime
    #: the earlier document this one recalls, updates or replaces, and the packets that did so to this one
    origin_doc_id: str | None
    successors: tuple[str, ...]
    #: for a status: the document it answers
    answers_doc_id: str | None
    recipients: tuple[SentItem, ...]
    events: tuple[TraceEvent, ...]


@dataclasses.dataclass(frozen=True)
class OverdueItem:
    """A recipient that did not confirm receipt (01/03) by the end of the working day of delivery."""

    doc_id: str
    document_id: str | None
    subject: str | None
    sender: str
    recipient: str
    accepted_at: dt.datetime
    delivered_at: dt.datetime | None
    due_at: dt.datetime
    #: when it answered after all (None: still unanswered), with what
    answered_at: dt.datetime | None
    business_status: str | None


@dataclasses.dataclass(frozen=True)
class AgencyInfo:
    code: str
    name: str
    parent_code: str | None
    email: str | None
    old_code: str | None
    active: bool


@dataclasses.dataclass(frozen=True)
class AgencyPolicy:
    """An agency's seal policy, read with the caller's identity."""

    active: bool
    require_signature: bool
    allow_sha1: bool
    fingerprints: frozenset[str]


@dataclasses.dataclass(frozen=True)
class EvidenceSettings:
    """Receipts and the audit chain: the gateway's document signer (None: no receipts or checkpoints,
    the chain is still kept), whether evidence is kept at all (off only to measure what it costs), and how
    many entries may follow the last signed checkpoint before a new one is made."""

    signer: DocumentSigner | None = None
    enabled: bool = True
    checkpoint_every: int = audit.CHECKPOINT_EVERY


@dataclasses.dataclass(frozen=True)
class SealSettings:
    """How seals are checked: the policy, where the current trust store comes from, and how a certificate
    is bound to an agency besides registration."""

    trust: Callable[[], TrustStore]
    policy: SealPolicy = dataclasses.field(default_factory=SealPolicy)
    subject_attribute: str | None = None
    keys: KeyCache = dataclasses.field(default_factory=KeyCache)


@dataclasses.dataclass
class _Step:
    """What a packet does besides being stored: where it goes and what it changes in earlier records."""

    route: Route
    #: (docId, message type, recipients) of an earlier packet this one repeats: nothing is stored
    duplicate_of: tuple[str, str, tuple[str, ...]] | None = None
    origin_packet_id: int | None = None
    #: applied after the packet's row and deliveries exist (session, packet id, docId, time, actor); returns
    #: the trace events it adds
    apply: Callable[[Session, int, str, dt.datetime, dict], list[dict]] = lambda *_: []


# --- identity -------------------------------------------------------------------------------------------


class Authenticator(Protocol):
    """Reads through ``Raw.of(session)`` only: it is given a request's Session, or a :class:`Reader`
    before the request's transaction."""

    def authenticate(self, session: Session | Reader, credentials: object | None) -> Identity: ...

    def system_for_certificate(
        self, session: Session | Reader, der: bytes | None, role: str
    ) -> Identity | None: ...


_DUMMY_HASH = "sha256$" + "00" * 16 + "$" + "00" * 32


@dataclasses.dataclass(frozen=True)
class RequestCredentials:
    """Everything the guard established about who sent a request (any of them may be None)."""

    username_token: UsernameToken | None = None
    #: the verified WS-Security X.509 signature of the request
    envelope: VerifiedEnvelope | None = None
    #: the client certificate of a mutual-TLS connection (DER)
    tls_certificate: bytes | None = None


class SystemAuthenticator:
    """Maps a request's credentials to a connected system.

    - an X.509-signed request: the verified certificate must be registered for an active system and valid
      now (the signature itself, its timestamp and its shape were checked by the guard);
    - a mutual-TLS client certificate: likewise, and if the request is also signed, both certificates must
      belong to the same system;
    - a UsernameToken: only for systems whose operator chose ``username-token``; the secret is checked
      against its salted hash with the same work whether or not the system exists.
    """

    def __init__(self, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.clock = clock

    def authenticate(self, session: Session | Reader, credentials: object | None) -> Identity:
        if credentials is None:
            raise errors.MissingCredentials(
                "the request carries no credentials: sign it (WS-Security X.509) or, if your operator allows "
                "it, send a UsernameToken with your system id and secret"
            )
        if isinstance(credentials, UsernameToken):
            credentials = RequestCredentials(username_token=credentials)
        if not isinstance(credentials, RequestCredentials):
            raise errors.InvalidCredentials("unsupported credentials for this gateway")
        tls_system = self.system_for_certificate(session, credentials.tls_certificate, "TLS client")
        if credentials.envelope is not None:
            der = credentials.envelope.certificate.public_bytes(serialization.Encoding.DER)
            system = self.system_for_certificate(session, der, "request signing")
            if tls_system is not None and tls_system.system_id != system.system_id:
                raise errors.CertificateMismatch(
                    f"the request is signed with a certificate of system {system.system_id} but the TLS "
                    f"connection presents one of system {tls_system.system_id}"
                )
            return system
        if credentials.username_token is not None:
            token = credentials.username_token
            login = repo.system_login(session, token.username)
            ok = check_secret(token.password, login[0] if login is not None and login[0] else _DUMMY_HASH)
            if login is None or not login[1] or not ok:
                raise errors.InvalidCredentials(
                    "the system id or secret is wrong, or the system is disabled; check the credentials your "
                    "operator issued"
                )
            _hash, _active, is_admin, auth_method, agencies = login
            if auth_method != "username-token":
                raise errors.AuthMethodNotAllowed(
                    f"system {token.username} must sign its requests with its certificate (WS-Security X.509); "
                    f"UsernameTokens are not accepted for it"
                )
            if tls_system is not None and tls_system.system_id != token.username:
                raise errors.CertificateMismatch(
                    f"the UsernameToken names system {token.username} but the TLS certificate is of "
                    f"{tls_system.system_id}"
                )
            return Identity(system_id=token.username, agencies=frozenset(agencies), is_admin=is_admin)
        if tls_system is not None:
            return tls_system
        raise errors.MissingCredentials("the request carries no credentials")

    def system_for_certificate(
        self, session: Session | Reader, der: bytes | None, role: str
    ) -> Identity | None:
        """The active system ``der`` is registered for, while the certificate is valid (None: no certificate)."""
        if der is None:
            return None
        fingerprint = hashlib.sha256(der).hexdigest()
        found = repo.system_of_certificate(session, fingerprint)
        if found is None or not found[1]:
            raise errors.UnknownCertificate(
                f"the {role} certificate (SHA-256 {fingerprint[:16]}…) is not registered for any active system; "
                f"ask the operator to register it (lienthong system add … --cert)"
            )
        system_id, _active, is_admin, not_before, not_after, agencies = found
        now = self.clock()
        if not not_before <= now <= not_after:
            raise errors.SystemCertificateExpired(
                f"the {role} certificate of system {system_id} is valid from {not_before:%Y-%m-%d} to "
                f"{not_after:%Y-%m-%d}; renew it"
            )
        return Identity(system_id=system_id, agencies=frozenset(agencies), is_admin=is_admin)


# --- the operations -------------------------------------------------------------------------------------


def _agency_info(a: Agency) -> AgencyInfo:
    return AgencyInfo(a.code, a.name, a.parent_code, a.email, a.old_code, a.active)


class Axis:
    """The gateway's operations over one database."""

    def __init__(
        self,
        db: Database,
        schemas: SchemaSet,
        *,
        max_packet_bytes: int,
        timezone: str = DEFAULT_TIMEZONE,
        authenticator: Authenticator | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        seals: SealSettings | None = None,
        replay_margin: dt.timedelta = dt.timedelta(minutes=5),
        calendar: WorkingCalendar | None = None,
        evidence: EvidenceSettings | None = None,
        flush_fetch_marks: bool = True,
    ) -> None:
        self.db = db
        #: wait for the disk when getEdoc records a first fetch (see Database.unit_of_work's ``flush``)
        self.flush_fetch_marks = flush_fetch_marks
        self.schemas = schemas
        self.limits = Limits(max_packet_bytes=max_packet_bytes)
        self.tz = ZoneInfo(timezone)
        self.calendar = calendar or WorkingCalendar(timezone)
        self.evidence = evidence or EvidenceSettings()
        self._checkpointed = -1  # the newest checkpoint this process knows of (-1: not read yet)
        self.authenticator = authenticator or SystemAuthenticator(clock)
        self.clock = clock
        self.replay_margin = replay_margin
        self._replay_count = 0
        self.seals = seals or SealSettings(trust=lambda: TrustStore(anchors=()))

    # identity

    def admit(self, credentials: object | None) -> None:
        """Record a signed request's signature, once: a second use within its lifetime is a replay.

        The record is written in a transaction of its own, before the operation, so it holds whatever the
        operation then does (and across restarts and gateway processes, since it is in the database)."""
        envelope = credentials.envelope if isinstance(credentials, RequestCredentials) else None
        if envelope is None:
            return
        expires = envelope.expires + self.replay_margin
        digest = envelope.signature_digest

        def record(session: Session) -> None:
            # only registered certificates leave a record: a stranger's signature writes nothing
            self.authenticator.system_for_certificate(
                session, envelope.certificate.public_bytes(serialization.Encoding.DER), "request signing"
            )
            # the primary key refuses a second record of the same signature (caught below)
            repo.add_replay_record(session, digest, envelope.fingerprint, expires)
            self._replay_count += 1
            if self._replay_count % 200 == 0:
                repo.prune_replay_records(session, self.clock())
            session.commit()

        try:
            self.db.run(record, write=True, retries=0, orm=False)
        except sa_exc.IntegrityError:  # the primary key: this signature was recorded before
            raise errors.Replay(
                "this signed request was already received; every request must be signed anew "
                "(a fresh Timestamp and signature)"
            ) from None

    def authenticate(self, credentials: object | None) -> Identity:
        with self.db.reader() as reader:
            return self.authenticator.authenticate(reader, credentials)

    # sendEdoc

    def _identity_and_policies(
        self, reader: Reader, credentials: object | None
    ) -> tuple[Identity, dict[str, AgencyPolicy]]:
        identity = self.authenticator.authenticate(reader, credentials)
        policies = {
            code: AgencyPolicy(
                active=active, require_signature=require, allow_sha1=sha1, fingerprints=frozenset(fps)
            )
            for code, (active, require, sha1, fps) in repo.seal_policies(reader, identity.agencies).items()
        }
        return identity, policies

    @staticmethod
    def _resent(session: Session | Reader, packet: PacketFields) -> SendOutcome | None:
        """The answer to a packet this sender already sent, byte for byte: the first docId and receipt."""
        earlier = repo.earlier_packet(session, packet.from_organ, packet.sha256)
        if earlier is None:
            return None
        earlier_id, earlier_doc_id, earlier_type = earlier
        return SendOutcome(
            earlier_doc_id,
            earlier_type,
            tuple(repo.recipients_of(session, earlier_id)),
            duplicate=True,
            receipt=repo.submission_receipt(session, earlier_id),
        )

    def send_edoc(self, credentials: object | None, data: bytes | list[bytes]) -> SendOutcome:
        """Check and store one packet. ``data``: its bytes, or a list holding them that the caller lets go
        of: a packet of :data:`SPOOL_BYTES` or more is then kept in a temporary file while its seal is
        verified (the bytes are needed again only to be stored), not in memory beside its tree and the
        two canonical copies of its text that xmlsec makes."""
        owned = isinstance(data, list)
        if isinstance(data, list):
            data = data.pop()
        with self.db.reader() as reader:
            identity, policies = self._identity_and_policies(reader, credentials)
            # no database work before the packet is good: parse, schema, seal
            tree = check_packet(data, self.schemas, self.limits)
            claimed = packet_fields(tree.getroot(), data)  # only to find the sender's seal policy
            routing.check_sender(claimed, identity)
            policy = policies[claimed.from_organ]
            seal: VerifiedSeal | None = None
            root = tree.getroot()
            spool = None
            if policy.require_signature or is_sealed(tree):
                if owned and len(data) >= SPOOL_BYTES:
                    spool = tempfile.TemporaryFile(prefix="lienthong-packet-")
                    spool.write(data)
                    del data
                seal = verify_seal(
                    tree,
                    policy=self.seals.policy,
                    trust=self.seals.trust(),
                    at=self.clock(),
                    allow_sha1=policy.allow_sha1,
                    keys=self.seals.keys,
                )
                check_signer_agency(
                    seal,
                    claimed.from_organ,
                    registered_fingerprints=policy.fingerprints,
                    subject_attribute_name=self.seals.subject_attribute,
                )
                root = seal.root
            # routing data: read from what the verification covered (the digest and size are of the same bytes);
            # when that is the tree the claimed fields were read from, they are those fields
            if root is tree.getroot():
                packet = claimed
            else:
                packet = dataclasses.replace(
                    packet_fields(root, b""), sha256=claimed.sha256, size=claimed.size
                )
            # the trees are done with: a large packet's tree (about its size again) is not held while storing
            del tree, root
            if seal is not None:
                seal = dataclasses.replace(seal, root=None)  # type: ignore[arg-type]
            if spool is not None:
                with spool:
                    spool.seek(0)
                    data = spool.read()
                if len(data) != claimed.size or hashlib.sha256(data).hexdigest() != claimed.sha256:
                    raise errors.InternalError("the packet's temporary copy changed; nothing was stored")
            routing.check_sender(packet, identity)
            routing.check_sender_active(packet, routing.AgencyState(packet.from_organ, policy.active))

            appended = [0]  # the audit entry the send made (for the checkpoint that may follow)
            doc_id = str(uuid.uuid4())
            signed_at = self.clock()
            presigned = None
            prechecked: _Step | None = None
            known: SendOutcome | None = None
            if not packet.is_status and packet.business.doc_type not in lifecycle.KINDS:
                # A plain new document goes to the agencies it names (or is refused). Whether the same bytes
                # were sent before and whether its DocumentId is taken are read here, its recipients checked
                # and its receipt signed, so SQLite's writer lock is not held meanwhile; the transaction
                # checks the recipients again (one read). A concurrent send of the same bytes or DocumentId
                # trips a unique index when it is stored, and the operation then runs again with every read
                # inside its transaction. A status, recall, update or replace learns its recipients inside
                # the transaction, and its receipt is signed there.
                repo.prefetch_document_checks(
                    reader,
                    packet.from_organ,
                    packet.sha256,
                    packet.to_organs,
                    packet.document_id if packet.business.doc_type in (0, 1) else None,
                )
                known = self._resent(reader, packet)
                if known is None:
                    prechecked = self._document_step(reader, packet, identity)
                    presigned = self._send_receipts(
                        None, packet, identity, seal, doc_id, Route(packet.to_organs), signed_at
                    )

        attempts = [0]

        def operation(session: Session) -> SendOutcome:
            attempts[0] += 1
            if prechecked is not None and attempts[0] == 1:
                # the recipients again, in the transaction: one may have left the directory meanwhile, and
                # no index would notice (resent bytes and DocumentIds are settled by unique indexes)
                route = routing.route_document(
                    packet, identity, repo.agency_states(session, packet.to_organs)
                )
                step = dataclasses.replace(prechecked, route=route)
            else:
                resent = self._resent(session, packet)
                if resent is not None:
                    return resent
                if packet.is_status:
                    step = self._status_step(session, packet, identity)
                else:
                    step = self._document_step(session, packet, identity)
            if step.duplicate_of is not None:
                first_doc_id, kind, recipients = step.duplicate_of
                first = repo.packet_by_doc_id(session, first_doc_id)
                receipt = repo.submission_receipt(session, first.id) if first is not None else None
                return SendOutcome(first_doc_id, kind, recipients, duplicate=True, receipt=receipt)
            route = step.route
            expects_receipt = not packet.is_status and packet.business.doc_type != RECALL
            accepted_at = self.clock()
            if (
                presigned is not None
                and route == Route(packet.to_organs)
                and accepted_at - signed_at <= PRESIGNED_RECEIPT_AGE
            ):
                receipts, accepted_at = presigned, signed_at
            else:  # signed here, or again if the wait for the transaction made it stale
                receipts = self._send_receipts(session, packet, identity, seal, doc_id, route, accepted_at)
            packet_id = repo.insert_packet_row(
                session,
                {
                    "doc_id": doc_id,
                    "message_type": packet.kind,
                    "sender_code": packet.from_organ,
                    "sender_system": identity.system_id,
                    "document_id": packet.response_for[0].document_id
                    if packet.is_status
                    else packet.document_id,
                    "business_doc_type": packet.business.doc_type,
                    "subject": packet.subject,
                    "code": packet.code,
                    "status_code": packet.status_code,
                    "description": packet.description,
                    "answers_packet_id": route.answers_packet,
                    "origin_packet_id": step.origin_packet_id,
                    "sha256": packet.sha256,
                    "size": packet.size,
                    "content": bytes(data),
                    "created_at": accepted_at,
                    "signer_fingerprint": seal.fingerprint if seal else None,
                    "signer_subject": seal.subject if seal else None,
                    "signer_serial": seal.serial if seal else None,
                    "signature_algorithm": seal.signature_algorithm if seal else None,
                    "digest_algorithm": seal.digest_algorithm if seal else None,
                    "seal_verified_at": seal.verified_at if seal else None,
                    "legacy_sha1": bool(seal and seal.legacy_sha1),
                },
            )
            if self.evidence.enabled:
                audit.store_receipts(session, receipts, packet_id)
                # the audit chain's head, held from here to the commit (PostgreSQL), orders every queue too
                audit.lock_chain(session)
            else:
                # the recipients' queues are held from here to the commit (PostgreSQL): deliveries get their
                # place in commit order; taking them after the (possibly large) packet row keeps the hold short
                repo.lock_recipients(session, route.recipients)
            now = self.clock()
            repo.insert_deliveries(
                session,
                packet_id,
                route.recipients,
                packet.kind,
                now,
                self.calendar.deadline(now) if expects_receipt else None,
            )
            actor = {"agency_code": packet.from_organ, "system_id": identity.system_id, "at": now}
            events = [
                {
                    **actor,
                    "packet_id": packet_id,
                    "kind": "accepted",
                    "staff": packet.staff,
                    "status_code": packet.status_code,
                    "detail": f"for {routing.listing(list(route.recipients))}",
                }
            ]
            events += step.apply(session, packet_id, doc_id, now, actor)
            repo.add_events(session, events)
            appended[0] = self._send_audit(
                session, packet, identity, seal, doc_id, packet_id, route, accepted_at, receipts
            )
            session.commit()
            return SendOutcome(
                doc_id, packet.kind, route.recipients, receipt=receipts[0].content if receipts else None
            )

        # a plain new document's transaction runs only Raw statements: no ORM Session for it (~130 µs less)
        outcome = known if known is not None else self.db.run(operation, write=True, orm=prechecked is None)
        self._maybe_checkpoint(appended[0])
        log.info(
            "accepted %s %s from %s (system %s) for %s; seal %s%s",
            outcome.message_type,
            outcome.doc_id,
            packet.from_organ,
            identity.system_id,
            ",".join(outcome.recipients),
            f"{seal.subject} {seal.signature_algorithm}" if seal else "none (agency allowed unsigned)",
            " (resent: same docId)" if outcome.duplicate else "",
        )
        if seal is not None and seal.legacy_sha1:
            log.warning("packet %s accepted with a SHA-1 seal (operator-enabled legacy)", outcome.doc_id)
        return outcome

    # evidence

    def _send_receipts(
        self,
        session: Session | None,
        packet: PacketFields,
        identity: Identity,
        seal: VerifiedSeal | None,
        doc_id: str,
        route: Route,
        at: dt.datetime,
    ) -> list[audit.SignedReceipt]:
        """The submission receipt of a packet about to be stored and, for a status, the status receipt of the
        document it answers (``packet_id`` None: the new packet). ``session`` None: before the transaction,
        for a route that answers no packet."""
        signer = self.evidence.signer
        if not self.evidence.enabled or signer is None:
            return []
        out = [
            audit.sign_receipt(
                signer,
                ev.ReceiptFacts(
                    kind="submission",
                    receipt_id=audit.new_receipt_id(),
                    doc_id=doc_id,
                    message_type=packet.kind,
                    sender=packet.from_organ,
                    sender_system=identity.system_id,
                    recipients=route.recipients,
                    packet_sha256=packet.sha256,
                    at=at,
                    signer_fingerprint=seal.fingerprint if seal else None,
                    signer_subject=seal.subject if seal else None,
                ),
                None,
                None,
            )
        ]
        answered = None
        if route.answers_packet:
            assert session is not None, "a status receipt is signed inside the transaction"
            answered = repo.packet_digest(session, route.answers_packet)
        if answered is not None:
            original_doc_id, original_sha256, original_sender, original_system = answered
            code = packet.status_code
            out.append(
                audit.sign_receipt(
                    signer,
                    ev.ReceiptFacts(
                        kind="status",
                        receipt_id=audit.new_receipt_id(),
                        doc_id=original_doc_id,
                        message_type=EDOC,
                        sender=original_sender,
                        sender_system=original_system,
                        recipients=() if code == lifecycle.RECALL_REQUEST else (packet.from_organ,),
                        packet_sha256=original_sha256,
                        at=at,
                        status_code=code,
                        status_doc_id=doc_id,
                        status_sha256=packet.sha256,
                        by_system=identity.system_id,
                    ),
                    route.answers_packet,
                    None if code == lifecycle.RECALL_REQUEST else packet.from_organ,
                )
            )
        return out

    def _send_audit(
        self,
        session: Session,
        packet: PacketFields,
        identity: Identity,
        seal: VerifiedSeal | None,
        doc_id: str,
        packet_id: int,
        route: Route,
        at: dt.datetime,
        receipts: list[audit.SignedReceipt],
    ) -> int:
        """Append the audit entry of an accepted packet (its receipts are stored already): the
        transaction's last statement. Returns the entry's seq."""
        if not self.evidence.enabled:
            return 0
        code = packet.status_code
        if packet.is_status:
            event = "recall" if code == lifecycle.RECALL_REQUEST else "status"
        else:
            event = lifecycle.KINDS.get(packet.business.doc_type, "accepted")
        return audit.append(
            session,
            event,
            at,
            docId=doc_id,
            messageType=packet.kind,
            sender=packet.from_organ,
            system=identity.system_id,
            recipients=list(route.recipients),
            sha256=packet.sha256,
            size=packet.size,
            signer=seal.fingerprint if seal else None,
            statusCode=code,
            answers=repo.doc_id_of(session, route.answers_packet),
            documentId=packet.response_for[0].document_id if packet.is_status else packet.document_id,
            businessDocType=None if packet.is_status else packet.business.doc_type,
            receipts=[r.facts.receipt_id for r in receipts] or None,
        )

    def _delivery_receipts(
        self, packet: repo.PacketHead, recipients: Sequence[str], now: dt.datetime, system: str
    ) -> list[audit.SignedReceipt]:
        signer = self.evidence.signer
        if signer is None or packet.message_type != EDOC:
            return []
        return [
            audit.sign_receipt(
                signer,
                ev.ReceiptFacts(
                    kind="delivery",
                    receipt_id=audit.new_receipt_id(),
                    doc_id=packet.doc_id,
                    message_type=packet.message_type,
                    sender=packet.sender_code,
                    sender_system=packet.sender_system,
                    recipients=(recipient,),
                    packet_sha256=packet.sha256,
                    at=now,
                    by_system=system,
                ),
                packet.id,
                recipient,
            )
            for recipient in recipients
        ]

    def _maybe_checkpoint(self, seq: int) -> None:
        """Sign a checkpoint once ``checkpoint_every`` entries follow the last one this process knows of
        (``seq``: the entry just committed). Costs nothing until then; best effort: a failure is logged,
        the chain itself is already committed."""
        signer = self.evidence.signer
        if signer is None or not self.evidence.enabled or seq <= 0:
            return
        try:
            if self._checkpointed < 0:
                with self.db.unit_of_work() as session:
                    self._checkpointed = audit.last_checkpoint_seq(session)
            if seq - self._checkpointed < self.evidence.checkpoint_every:
                return

            def sign(session: Session) -> None:
                # another process may have signed one meanwhile
                self._checkpointed = audit.last_checkpoint_seq(session)
                if audit.head(session)[0] - self._checkpointed >= self.evidence.checkpoint_every:
                    made = audit.make_checkpoint(session, signer, self.clock())
                    made_seq = made.seq if made is not None else None
                    session.commit()
                    if made_seq is not None:
                        self._checkpointed = made_seq
                        log.info("audit checkpoint signed at entry %d", made_seq)

            self.db.run(sign, write=True, retries=0)
        except audit.ChainBroken as exc:
            log.error("audit checkpoint refused: %s", exc.message)
        except Exception as exc:  # noqa: BLE001 - never fail a request for a checkpoint
            log.warning("could not sign an audit checkpoint: %s", exc)

    def audit_refusal(
        self, code: str, operation: str, correlation_id: str, system: str | None = None
    ) -> None:
        """Record a refusal in the audit chain, in a transaction of its own (the refused one rolled back)."""
        if not self.evidence.enabled:
            return

        def record(session: Session) -> None:
            audit.append(
                session,
                "refused",
                self.clock(),
                code=code,
                operation=operation,
                correlationId=correlation_id,
                system=system,
            )
            session.commit()

        try:
            self.db.run(record, write=True)
        except Exception as exc:  # noqa: BLE001 - e.g. the database is the reason for the refusal
            log.warning(
                "refusal %s [correlation id %s] not recorded in the audit chain: %s",
                code,
                correlation_id,
                exc,
            )

    def _document_step(self, session: Session, packet: PacketFields, identity: Identity) -> _Step:
        """A document: its recipients; for a recall, update or replace, the earlier copies it asks about."""
        route = routing.route_document(packet, identity, repo.agency_states(session, packet.to_organs))
        self._check_document_id(session, packet)
        if packet.business.doc_type not in lifecycle.KINDS:
            return _Step(route)
        refs = lifecycle.references(packet)
        originals = repo.originals(session, packet.from_organ, refs)
        if packet.business.doc_type == RECALL and refs[0] in originals:
            existing = self._existing_recall(session, originals[refs[0]])
            if existing is not None:
                return existing  # recalling again is the same recall
        plan = lifecycle.plan_successor(packet, originals)
        extra = [r for r in plan.recipients if r not in packet.to_organs]
        if extra:  # original recipients a recall reaches, or those an update removes: still in the directory?
            states = repo.agency_states(session, extra)
            inactive = {r for r in extra if r in states and not states[r].active}
        else:
            inactive = set()
        plan_recipients = tuple(r for r in plan.recipients if r not in inactive)
        targets = tuple(t for t in plan.targets if t[1] not in inactive)

        def apply(session: Session, packet_id: int, doc_id: str, now: dt.datetime, actor: dict) -> list[dict]:
            repo.set_lifecycle(session, targets, lifecycle.requested(plan.kind), doc_id, now)
            # receivers an update removes got it only to learn so: no receipt is due, and their copy does not
            # make them recipients of the document (a later update or recall does not reach them)
            repo.mark_removed(session, packet_id, [r for r in plan.removed if r not in inactive], doc_id, now)
            return [
                {
                    **actor,
                    "packet_id": packet_id,
                    "recipient_code": recipient,
                    "kind": lifecycle.requested(plan.kind),
                    "staff": packet.staff,
                    "detail": packet.business.reason,
                    "related_doc_id": doc_id,
                }
                for asked_packet, recipient in targets
            ]

        return _Step(Route(plan_recipients), origin_packet_id=plan.origin.packet_id, apply=apply)

    @staticmethod
    def _existing_recall(session: Session, original: lifecycle.Original) -> _Step | None:
        """The recall already made of ``original`` (pending or answered), as a duplicate, if any."""
        if not any(state in lifecycle.RECALL_STATES for state in original.recipients.values()):
            return None
        doc_id = repo.recall_doc_id(session, original.packet_id)
        first = repo.packet_by_doc_id(session, doc_id) if doc_id else None
        if first is None:
            return None
        return _Step(
            Route(()),
            duplicate_of=(first.doc_id, first.message_type, tuple(repo.recipients_of(session, first.id))),
        )

    def _status_step(self, session: Session, packet: PacketFields, identity: Identity) -> _Step:
        """A status: the rules of :mod:`gateway.core.lifecycle`, and what it changes once stored."""
        rf = packet.response_for[0]
        code = packet.status_code or ""
        routing.check_sender(packet, identity)
        if code == lifecycle.RECALL_REQUEST:
            lifecycle.check_recall_sender(packet)
            original = repo.originals(session, rf.organ_id, [rf.document_id]).get(rf.document_id)
            if original is None:
                raise errors.UnknownOriginal(
                    f"agency {rf.organ_id} sent no document with DocumentId {rf.document_id!r} through this "
                    f"gateway; status 13 must recall one of its own documents",
                    document_id=rf.document_id,
                )
            existing = self._existing_recall(session, original)
            if existing is not None:
                return existing  # recalling again is the same recall
            states = repo.agency_states(session, list(original.recipients))
            recipients = tuple(r for r in original.recipients if r in states and states[r].active)
            targets = tuple(
                (original.packet_id, r) for r in recipients if original.recipients[r] != "recalled"
            )

            def recall(
                session: Session, _packet_id: int, doc_id: str, now: dt.datetime, actor: dict
            ) -> list[dict]:
                repo.set_lifecycle(session, targets, lifecycle.requested("recall"), doc_id, now)
                return [
                    {
                        **actor,
                        "packet_id": packet_id,
                        "recipient_code": recipient,
                        "kind": lifecycle.requested("recall"),
                        "staff": packet.staff,
                        "status_code": code,
                        "detail": packet.description,
                        "related_doc_id": doc_id,
                    }
                    for packet_id, recipient in targets
                ]

            return _Step(Route(recipients, answers_packet=original.packet_id), apply=recall)

        if code in lifecycle.ANSWERS:
            answered = repo.lifecycle_target(session, rf.organ_id, rf.document_id, packet.from_organ)
            if answered is None:
                answered = repo.delivery_of_document(
                    session, sender=rf.organ_id, document_id=rf.document_id, recipient=packet.from_organ
                )
        else:
            answered = repo.delivery_of_document(
                session, sender=rf.organ_id, document_id=rf.document_id, recipient=packet.from_organ
            )
        route = routing.route_status(
            packet,
            identity,
            answered.packet_id if answered else None,
            repo.agency_states(session, [rf.organ_id]).get(rf.organ_id),
        )
        assert answered is not None  # route_status refused otherwise
        answered = repo.delivery(session, answered.packet_id, packet.from_organ, lock=True) or answered
        facts = lifecycle.RecipientFacts(
            recipient=packet.from_organ,
            document_id=rf.document_id,
            fetched=answered.fetched_at is not None,
            sent=repo.statuses_sent(session, answered.packet_id, packet.from_organ),
            lifecycle=answered.lifecycle,
        )
        earlier = lifecycle.check_status(code, facts)
        if earlier is not None:
            return _Step(route, duplicate_of=(earlier, STATUS, route.recipients))
        delivery = answered

        def record(
            session: Session, _packet_id: int, doc_id: str, now: dt.datetime, actor: dict
        ) -> list[dict]:
            delivery.business_status = code
            delivery.business_status_at = now
            delivery.business_status_staff = packet.staff
            if code in lifecycle.ANSWERS:
                kind, _phase = lifecycle.parse_state(delivery.lifecycle)
                delivery.lifecycle = lifecycle.answered(kind or "recall", code)
                delivery.lifecycle_at = now
            elif delivery.answered_at is None and code in lifecycle.RECEIPT_CODES:
                delivery.answered_at = now
            return [
                {
                    **actor,
                    "packet_id": delivery.packet_id,
                    "recipient_code": packet.from_organ,
                    "kind": "status",
                    "staff": packet.staff,
                    "status_code": code,
                    "detail": packet.description,
                    "related_doc_id": doc_id,
                }
            ]

        return _Step(route, apply=record)

    @staticmethod
    def _check_document_id(session: Session, packet) -> None:  # type: ignore[no-untyped-def]
        if packet.business.doc_type not in (0, 1) or not packet.document_id:
            return  # updates and replaces may reuse a DocumentId
        for other_doc_id, other_sha256 in repo.other_document_digests(
            session, packet.from_organ, packet.document_id
        ):
            if other_sha256 != packet.sha256:
                raise errors.DuplicateDocumentId(
                    f"agency {packet.from_organ} already sent a different packet with DocumentId "
                    f"{packet.document_id!r} (docId {other_doc_id}); a changed document must be sent as an "
                    f"update or replacement (BussinessDocType 2 or 3) or with a new DocumentId",
                    doc_id=other_doc_id,
                )

    # getReceivedEdocList

    def received_list(
        self,
        credentials: object | None,
        message_type: str,
        from_date: dt.date | None = None,
        to_date: dt.date | None = None,
    ) -> list[InboxItem]:
        message_type = _message_type(message_type)
        start, end = self._day_range(from_date, to_date)
        with self.db.reader() as reader:
            identity = self.authenticator.authenticate(reader, credentials)
            rows = repo.inbox(reader, identity.agencies, message_type, start, end, LIST_LIMIT)
            return [InboxItem(*row) for row in rows]

    # getEdoc

    def get_edoc(self, credentials: object | None, doc_id: str) -> FetchedPacket:
        # Read the bytes outside any transaction (a packet may be tens of MB, and it never changes), then
        # mark the deliveries fetched in a short write of their own. On SQLite, with ``flush_fetch_marks``
        # off, that write does not wait for the disk (see gateway.config for what a machine crash may lose).
        with self.db.reader() as reader:
            identity = self.authenticator.authenticate(reader, credentials)
            packet, mine = self._addressed(reader, identity, doc_id, with_content=True)
            if packet.content is None:  # addressed, yet the read did not find it so: never stored that way
                raise errors.InternalError("the packet's bytes could not be read; nothing was changed")
            out = FetchedPacket(packet.doc_id, packet.message_type, packet.sha256, packet.content)
            packet_id = packet.id
            del packet  # the content is held once, by ``out``
            unfetched = [d.id for d in mine if not d.fetched]
        if unfetched:

            def mark(session: Session) -> None:
                self._record_fetch(session, packet_id, out.doc_id, unfetched, identity, self.clock())
                session.commit()

            self.db.run(mark, write=True, retries=0, flush=self.flush_fetch_marks, orm=False)
        return out

    def _record_fetch(
        self,
        session: Session,
        packet_id: int,
        doc_id: str,
        ids: list[int],
        identity: Identity,
        now: dt.datetime,
    ) -> None:
        """A first fetch of these deliveries: the time, the answer's due time, the delivered event and its
        audit entry (deliveries already marked are left as they are)."""
        marked = repo.mark_fetched(session, ids, now, self.calendar.deadline(now))
        repo.add_events(
            session,
            [
                {
                    "packet_id": packet_id,
                    "recipient_code": r,
                    "kind": "delivered",
                    "at": now,
                    "agency_code": r,
                    "system_id": identity.system_id,
                }
                for r in marked
            ],
        )
        if self.evidence.enabled:
            for r in marked:
                audit.append(session, "delivered", now, docId=doc_id, recipient=r, system=identity.system_id)

    def _addressed(
        self,
        session: Session | Reader,
        identity: Identity,
        doc_id: str,
        *,
        with_content: bool = False,
        lock: bool = False,
    ) -> tuple[repo.PacketHead, list[repo.DeliveryState]]:
        doc_id = (doc_id or "").strip()
        packet = (
            repo.packet_head(session, doc_id, content_for=identity.agencies if with_content else None)
            if doc_id
            else None
        )
        if packet is None:
            raise errors.UnknownDocId(
                f"no packet has docId {doc_id!r}; use the docId that getReceivedEdocList returned",
                doc_id=doc_id,
            )
        mine = repo.addressed_deliveries(session, packet.id, identity.agencies, lock=lock)
        if not mine:
            raise errors.NotAddressee(
                f"packet {doc_id} is not addressed to any agency of system {identity.system_id}",
                doc_id=doc_id,
            )
        return packet, mine

    # updateStatus

    def update_status(
        self, credentials: object | None, doc_id: str, status: str, reason: str | None = None
    ) -> tuple[str, ...]:
        status = (status or "").strip().lower()
        if status not in TRANSPORT_STATUSES:
            raise errors.InvalidArgument(
                f"status must be one of {', '.join(TRANSPORT_STATUSES)}, got {status!r}", argument="status"
            )
        reason = (reason or "").strip() or None
        if reason is not None and len(reason) > MAX_REASON:
            raise errors.InvalidArgument(
                f"reason has {len(reason)} characters; at most {MAX_REASON} are kept", argument="reason"
            )

        def operation(session: Session) -> tuple[str, ...]:
            identity = self.authenticator.authenticate(session, credentials)
            packet, mine = self._addressed(session, identity, doc_id, lock=True)
            now = self.clock()
            events = []
            changed = []
            for delivery in mine:
                if delivery.state == "done":
                    if status == "done":
                        continue  # acknowledging twice is harmless
                    raise errors.InvalidArgument(
                        f"packet {doc_id} was already acknowledged done for {delivery.recipient_code}; "
                        f"it cannot become {status}",
                        argument="status",
                    )
                changed.append(delivery.id)
                events.append(
                    {
                        "packet_id": packet.id,
                        "recipient_code": delivery.recipient_code,
                        "kind": "acknowledged",
                        "at": now,
                        "agency_code": delivery.recipient_code,
                        "system_id": identity.system_id,
                        "status_code": status,
                        "detail": reason,
                    }
                )
            repo.acknowledge(session, changed, status, now, identity.system_id, reason)
            repo.add_events(session, events)
            if self.evidence.enabled:
                acknowledged = [event["recipient_code"] for event in events]
                receipts = (
                    self._delivery_receipts(packet, acknowledged, now, identity.system_id)
                    if status == "done"
                    else []
                )
                audit.store_receipts(session, receipts, packet.id)
                by_recipient = {r.recipient: r.facts.receipt_id for r in receipts}
                for event in events:
                    audit.append(
                        session,
                        "acknowledged",
                        now,
                        docId=packet.doc_id,
                        recipient=event["recipient_code"],
                        state=status,
                        reason=event["detail"],
                        system=identity.system_id,
                        receipts=[by_recipient[event["recipient_code"]]]
                        if event["recipient_code"] in by_recipient
                        else None,
                    )
            session.commit()
            return tuple(d.recipient_code for d in mine)

        return self.db.run(operation, write=True, retries=0, orm=False)

    # getSentEdocList

    def sent_list(
        self,
        credentials: object | None,
        doc_id: str | None = None,
        message_type: str | None = None,
        from_date: dt.date | None = None,
        to_date: dt.date | None = None,
        limit: int | None = None,
        before_doc_id: str | None = None,
    ) -> list[SentItem]:
        """The newest ``limit`` packets the caller's agencies sent (before ``before_doc_id``: the next page),
        one entry per recipient."""
        if message_type:
            message_type = _message_type(message_type)
        start, end = self._day_range(from_date, to_date)
        limit = SENT_PAGE if limit is None else limit
        if not 1 <= limit <= SENT_PAGE_MAX:
            raise errors.InvalidArgument(
                f"limit is the number of packets per page, 1 to {SENT_PAGE_MAX}; got {limit}",
                argument="limit",
            )
        with self.db.unit_of_work() as session:
            identity = self.authenticator.authenticate(session, credentials)
            before = None
            if before_doc_id and before_doc_id.strip():
                cursor = repo.packet_by_doc_id(session, before_doc_id.strip())
                if cursor is None or not identity.may_act_for(cursor.sender_code):
                    raise errors.InvalidArgument(
                        f"beforeDocId {before_doc_id!r} is not a packet your agencies sent; pass the last docId "
                        f"of the previous page",
                        argument="beforeDocId",
                    )
                before = cursor.id
            rows = repo.sent(
                session,
                identity.agencies,
                doc_id=(doc_id or "").strip() or None,
                message_type=message_type or None,
                start=start,
                end=end,
                limit=limit,
                before=before,
            )
            return [_sent_item(d) for d in rows]

    # getTrace

    def trace(self, credentials: object | None, doc_id: str) -> Trace:
        """A packet's life: to its sender everything, to a recipient its own part only."""
        with self.db.unit_of_work() as session:
            packet, part = self._sender_or_recipient(session, credentials, doc_id)
            return build_trace(session, packet, part)

    # getReceipts

    def receipts(self, credentials: object | None, doc_id: str) -> list[bytes]:
        """The gateway's signed receipts about a packet: to its sender all of them, to a recipient the
        submission receipt and its own."""
        with self.db.unit_of_work() as session:
            packet, part = self._sender_or_recipient(session, credentials, doc_id)
            return repo.receipts_of(session, packet.id, part)

    def _sender_or_recipient(
        self, session: Session, credentials: object | None, doc_id: str
    ) -> tuple[Packet, list[str] | None]:
        """The packet and the caller's part of it: None for its sender (everything), else the recipients
        among the caller's agencies; NotAddressee for anyone else."""
        identity = self.authenticator.authenticate(session, credentials)
        doc_id = (doc_id or "").strip()
        packet = repo.packet_by_doc_id(session, doc_id) if doc_id else None
        if packet is None:
            raise errors.UnknownDocId(f"no packet has docId {doc_id!r}", doc_id=doc_id)
        if identity.may_act_for(packet.sender_code):
            return packet, None
        mine = repo.deliveries_for(session, packet.id, identity.agencies)
        if not mine:
            raise errors.NotAddressee(
                f"packet {doc_id} was neither sent by nor addressed to an agency of system {identity.system_id}",
                doc_id=doc_id,
            )
        return packet, [d.recipient_code for d in mine]

    # getOverdueList

    def overdue_list(
        self,
        credentials: object | None,
        from_date: dt.date | None = None,
        to_date: dt.date | None = None,
    ) -> list[OverdueItem]:
        """The caller's own documents whose recipients missed the same-day rule."""
        start, end = self._overdue_window(from_date, to_date)
        with self.db.unit_of_work() as session:
            identity = self.authenticator.authenticate(session, credentials)
            return overdue_report(session, identity.agencies, start, end, self.clock())

    def _overdue_window(
        self, from_date: dt.date | None, to_date: dt.date | None
    ) -> tuple[dt.datetime, dt.datetime]:
        start, end = self._day_range(from_date, to_date)
        end = end or self.clock()
        return start or end - dt.timedelta(days=OVERDUE_DAYS), end

    # the directory

    def agencies(self, credentials: object | None, text_filter: str | None = None) -> list[AgencyInfo]:
        with self.db.unit_of_work() as session:
            self.authenticator.authenticate(session, credentials)
            return [_agency_info(a) for a in repo.list_agencies(session, (text_filter or "").strip() or None)]

    def register_agency(self, credentials: object | None, info: AgencyInfo) -> AgencyInfo:
        def operation(session: Session) -> AgencyInfo:
            identity = self.authenticator.authenticate(session, credentials)
            _require_admin(identity)
            agency = upsert_agency(session, info, self.clock())
            self._audit_directory(session, "register", agency.code, identity)
            session.commit()
            return _agency_info(agency)

        return self.db.run(operation, write=True)

    def delete_agency(self, credentials: object | None, code: str) -> AgencyInfo:
        """Deactivate an agency: it stays in the directory (history refers to it) but receives nothing."""

        def operation(session: Session) -> AgencyInfo:
            identity = self.authenticator.authenticate(session, credentials)
            _require_admin(identity)
            agency = deactivate_agency(session, code, self.clock())
            self._audit_directory(session, "deactivate", agency.code, identity)
            session.commit()
            return _agency_info(agency)

        return self.db.run(operation, write=True, retries=0)

    def _audit_directory(self, session: Session, action: str, agency: str, identity: Identity) -> None:
        if self.evidence.enabled:
            audit.append(
                session, "directory", self.clock(), action=action, agency=agency, system=identity.system_id
            )

    # helpers

    def _day_range(
        self, from_date: dt.date | None, to_date: dt.date | None
    ) -> tuple[dt.datetime | None, dt.datetime | None]:
        """Whole days in the agencies' time zone, both ends included, as UTC bounds."""
        if from_date and to_date and from_date > to_date:
            raise errors.InvalidArgument(
                f"fromDate {from_date} is after toDate {to_date}", argument="fromDate"
            )
        start = dt.datetime.combine(from_date, dt.time(), self.tz) if from_date else None
        end = dt.datetime.combine(to_date + dt.timedelta(days=1), dt.time(), self.tz) if to_date else None
        return start, end


def build_trace(session: Session, packet: Packet, recipients: list[str] | None) -> Trace:
    """The trace of ``packet``; with ``recipients``, only their part (shared with ``lienthong trace``)."""
    deliveries = repo.delivery_rows(session, [packet.id], recipients)
    events = [_trace_event(e) for e in repo.events_of(session, packet.id, recipients)]
    origin = packet.origin_packet_id
    if recipients is not None:
        # a recipient's part: not who else the packet went to, nor an earlier document it never received
        events = [dataclasses.replace(e, detail=None) if e.kind == "accepted" else e for e in events]
        if origin is not None and not repo.deliveries_for(session, origin, recipients):
            origin = None
    return Trace(
        doc_id=packet.doc_id,
        message_type=packet.message_type,
        sender=packet.sender_code,
        sender_system=packet.sender_system,
        document_id=packet.document_id,
        subject=packet.subject,
        status_code=packet.status_code,
        business_doc_type=packet.business_doc_type,
        accepted_at=packet.created_at,
        origin_doc_id=repo.doc_id_of(session, origin),
        successors=tuple(repo.successors(session, packet.id, recipients)),
        answers_doc_id=repo.doc_id_of(session, packet.answers_packet_id),
        recipients=tuple(_sent_item(d) for d in deliveries),
        events=tuple(events),
    )


def _trace_event(e: Event) -> TraceEvent:
    return TraceEvent(
        at=e.at,
        kind=e.kind,
        recipient=e.recipient_code,
        agency=e.agency_code,
        system=e.system_id,
        staff=e.staff,
        code=e.status_code,
        detail=e.detail,
        related_doc_id=e.related_doc_id,
    )


def overdue_report(
    session: Session,
    senders: Iterable[str] | None,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
    limit: int = LIST_LIMIT,
) -> list[OverdueItem]:
    """Recipients that missed the same-day rule for documents accepted in [start, end) (every sender's
    with ``senders`` None: the operator's report)."""
    return [
        OverdueItem(
            doc_id=d.packet.doc_id,
            document_id=d.packet.document_id,
            subject=d.packet.subject,
            sender=d.packet.sender_code,
            recipient=d.recipient_code,
            accepted_at=d.created_at,
            delivered_at=d.fetched_at,
            due_at=d.due_at,
            answered_at=d.answered_at,
            business_status=d.business_status,
        )
        for d in repo.overdue(session, senders, start, end, now, limit)
    ]


def _message_type(value: str | None) -> str:
    value = (value or "").strip().lower()
    if value not in MESSAGE_TYPES:
        raise errors.InvalidArgument(
            f"messageType must be {EDOC!r} or {STATUS!r}, got {value!r}", argument="messageType"
        )
    return value


def _require_admin(identity: Identity) -> None:
    if not identity.is_admin:
        raise errors.AdminRequired(
            f"system {identity.system_id} may not change the directory; only administrator systems may"
        )


def deactivate_agency(session: Session, code: str, now: dt.datetime) -> Agency:
    """Stop deliveries to an agency; it stays in the directory because history refers to it."""
    agency = repo.get_agency(session, (code or "").strip())
    if agency is None:
        raise errors.UnknownAgency(f"no agency has code {code!r}", code=code)
    agency.active = False
    agency.updated_at = now
    return agency


def upsert_agency(session: Session, info: AgencyInfo, now: dt.datetime) -> Agency:
    """Register an agency, or update and reactivate it if its code is known. Shared with the CLI."""
    code = info.code.strip()
    problems = []
    if not code or len(code) > 64 or any(c.isspace() for c in code):
        problems.append("code must be 1–64 characters without spaces")
    if not info.name or len(info.name) > 200:
        problems.append("name must be 1–200 characters")
    if info.email and len(info.email) > 100:
        problems.append("email must be at most 100 characters")
    if info.parent_code and repo.get_agency(session, info.parent_code) is None:
        problems.append(f"parent agency {info.parent_code} is not registered")
    if problems:
        raise errors.InvalidArgument("; ".join(problems), argument="agency")
    agency = repo.get_agency(session, code)
    if agency is None:
        agency = Agency(code=code, created_at=now)
        session.add(agency)
    agency.name = info.name
    agency.parent_code = info.parent_code or None
    agency.email = info.email or None
    agency.old_code = info.old_code or None
    agency.active = info.active
    agency.updated_at = now
    session.flush()
    return agency
