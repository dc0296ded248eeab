"""The SOAP operations (spyne): each method is a few lines that hand over to :class:`gateway.axis.Axis`.

Operation names mirror the national axis SDK (sendEdoc, getReceivedEdocList, getEdoc, updateStatus,
getSentEdocList, getAgenciesList, registerAgency, deleteAgency); getTrace, getOverdueList and getReceipts
are ours. The
docstrings become the ``wsdl:documentation`` of each operation.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, TypeVar

from spyne import Array, Boolean, ByteArray, ComplexModel, Date, DateTime, Integer, ServiceBase, Unicode, rpc

from gateway import axis as axis_mod
from gateway import errors
from gateway.soap.faults import TNS, LienthongFault, to_fault
from gateway.soap.guard import ENV_CORRELATION, ENV_CREDENTIALS

T = TypeVar("T")

Required = Unicode(min_occurs=1, nillable=False)
Optional = Unicode(min_occurs=0, nillable=False)
OptionalDate = Date(min_occurs=0, nillable=False)
OptionalDateTime = DateTime(min_occurs=0, nillable=False)
RequiredDateTime = DateTime(min_occurs=1, nillable=False)
FAULTS = [LienthongFault]


class Model(ComplexModel):
    __namespace__ = TNS


class OrganIdList(Model):
    organId = Unicode(min_occurs=0, max_occurs="unbounded", nillable=False)


class SendEdocResult(Model):
    docId = Required
    messageType = Required
    recipients = OrganIdList.customize(min_occurs=1, nillable=False)
    duplicate = Boolean(min_occurs=1, nillable=False)
    #: the gateway's signed submission receipt (XML, see xsd/lienthong-evidence.xsd)
    receipt = ByteArray(min_occurs=0, nillable=False)


class ReceiptList(Model):
    receipt = ByteArray(min_occurs=0, max_occurs="unbounded", nillable=False)


class ReceivedEdoc(Model):
    docId = Required
    messageType = Required
    to = Required
    # "from" is a Python keyword; the XML element is still named "from".
    from_ = Unicode(min_occurs=1, nillable=False, sub_name="from")
    documentId = Optional
    subject = Optional
    statusCode = Optional
    createdAt = RequiredDateTime
    transportState = Required
    #: recall-requested, recalled, update-requested, updated, … when the sender asked to change it
    lifecycle = Optional
    lifecycleDocId = Optional


class EdocContent(Model):
    docId = Required
    messageType = Required
    sha256 = Required
    packet = ByteArray(min_occurs=1, nillable=False)


class UpdateStatusResult(Model):
    docId = Required
    status = Required
    agencies = OrganIdList.customize(min_occurs=1, nillable=False)


class SentEdoc(Model):
    docId = Required
    messageType = Required
    from_ = Unicode(min_occurs=1, nillable=False, sub_name="from")
    documentId = Optional
    subject = Optional
    statusCode = Optional
    recipient = Required
    acceptedAt = RequiredDateTime
    deliveredAt = OptionalDateTime
    acknowledgedAt = OptionalDateTime
    transportState = Required
    failReason = Optional
    businessStatus = Optional
    businessStatusAt = OptionalDateTime
    businessStatusStaff = Optional
    lifecycle = Optional
    lifecycleAt = OptionalDateTime
    lifecycleDocId = Optional
    dueAt = OptionalDateTime
    answeredAt = OptionalDateTime


class DocIdList(Model):
    docId = Unicode(min_occurs=0, max_occurs="unbounded", nillable=False)


class TraceEvent(Model):
    at = RequiredDateTime
    kind = Required
    recipient = Optional
    agency = Optional
    system = Optional
    staff = Optional
    code = Optional
    detail = Optional
    relatedDocId = Optional


class DocumentTrace(Model):
    docId = Required
    messageType = Required
    from_ = Unicode(min_occurs=1, nillable=False, sub_name="from")
    senderSystem = Required
    documentId = Optional
    subject = Optional
    statusCode = Optional
    businessDocType = Integer(min_occurs=1, nillable=False)
    acceptedAt = RequiredDateTime
    originDocId = Optional
    successors = DocIdList.customize(min_occurs=1, nillable=False)
    answersDocId = Optional
    recipients = Array(SentEdoc, min_occurs=1, nillable=False)
    events = Array(TraceEvent, min_occurs=1, nillable=False)


class OverdueEdoc(Model):
    docId = Required
    documentId = Optional
    subject = Optional
    from_ = Unicode(min_occurs=1, nillable=False, sub_name="from")
    recipient = Required
    acceptedAt = RequiredDateTime
    deliveredAt = OptionalDateTime
    dueAt = RequiredDateTime
    answeredAt = OptionalDateTime
    businessStatus = Optional


class AgencyEntry(Model):
    code = Required
    name = Required
    parentCode = Optional
    email = Optional
    oldCode = Optional
    active = Boolean(min_occurs=1, nillable=False)


def _call(ctx: Any, operation: Callable[[axis_mod.Axis, object | None], T]) -> T:
    """Run one operation with the request's credentials; map any error to a declared fault."""
    env = ctx.transport.req_env
    name = ctx.method_request_string.rsplit("}", 1)[-1]
    return call_operation(
        ctx.app.lienthong_axis,
        env.get(ENV_CREDENTIALS),
        env.get(ENV_CORRELATION, "-"),
        name,
        getattr(ctx, "in_body_doc", None),
        operation,
    )


def call_operation(
    axis: axis_mod.Axis,
    credentials: object | None,
    cid: str,
    name: str,
    payload: Any,
    operation: Callable[[axis_mod.Axis, object | None], T],
) -> T:
    """The one way an operation runs, through spyne or :mod:`gateway.soap.direct`: the payload read must
    be the one the request's signature covered, the signature is recorded once (replays refused), then
    the operation; any error becomes a declared fault, logged and entered in the audit chain."""
    try:
        _check_same_body(payload, credentials)
        axis.admit(credentials)
        return operation(axis, credentials)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a declared fault
        fault = to_fault(exc, cid, name)
        token = getattr(credentials, "username_token", None)
        envelope = getattr(credentials, "envelope", None)
        caller = (
            token.username if token is not None else envelope.fingerprint if envelope is not None else None
        )
        axis.audit_refusal(fault.faultcode, name, cid, caller)
        raise fault from None


def _drop_base64_text(ctx: Any) -> None:
    """The packet is decoded: let go of its base64 text in the request tree (4/3 of the packet's size),
    so a large packet is not held three times while it is checked and stored."""
    payload = getattr(ctx, "in_body_doc", None)
    if payload is not None:
        for child in payload:
            child.text = None


def _check_same_body(payload: Any, credentials: object | None) -> None:
    """The payload element the operation read must be the very one whose Body the signature covered."""
    envelope = getattr(credentials, "envelope", None)
    if envelope is None:
        return
    signed = [el for el in envelope.body if isinstance(el.tag, str)]
    if len(signed) != 1 or payload is not signed[0]:
        raise errors.SignatureWrapping("the operation read is not the one inside the signed Body")


#: an entry of a list answer: a plain record with the member names of its type (SentEdoc, ReceivedEdoc,
#: TraceEvent, OverdueEdoc); the protocol writes such flat records straight to the tree (see
#: ``gateway.soap.app.GuardedSoap11.complex_to_parent``), with no spyne object built per entry
Entry = SimpleNamespace


def received_entry(i: axis_mod.InboxItem) -> Entry:
    """A ``ReceivedEdoc`` of getReceivedEdocList (also written by :mod:`gateway.soap.direct`)."""
    return Entry(
        docId=i.doc_id,
        messageType=i.message_type,
        to=i.recipient,
        from_=i.sender,
        documentId=i.document_id,
        subject=i.subject,
        statusCode=i.status_code,
        createdAt=i.created_at,
        transportState=i.transport_state,
        lifecycle=i.lifecycle,
        lifecycleDocId=i.lifecycle_doc_id,
    )


def _sent(i: axis_mod.SentItem) -> Entry:
    return Entry(
        docId=i.doc_id,
        messageType=i.message_type,
        from_=i.sender,
        documentId=i.document_id,
        subject=i.subject,
        statusCode=i.status_code,
        recipient=i.recipient,
        acceptedAt=i.accepted_at,
        deliveredAt=i.delivered_at,
        acknowledgedAt=i.acknowledged_at,
        transportState=i.transport_state,
        failReason=i.fail_reason,
        businessStatus=i.business_status,
        businessStatusAt=i.business_status_at,
        businessStatusStaff=i.business_status_staff,
        lifecycle=i.lifecycle,
        lifecycleAt=i.lifecycle_at,
        lifecycleDocId=i.lifecycle_doc_id,
        dueAt=i.due_at,
        answeredAt=i.answered_at,
    )


def _agency(a: axis_mod.AgencyInfo) -> AgencyEntry:
    return AgencyEntry(
        code=a.code, name=a.name, parentCode=a.parent_code, email=a.email, oldCode=a.old_code, active=a.active
    )


class LienthongService(ServiceBase):
    """The national document axis."""

    @rpc(
        ByteArray(min_occurs=1, nillable=False),
        _returns=SendEdocResult,
        _throws=FAULTS,
        _in_arg_names={"packet": "packet"},
    )
    def sendEdoc(ctx, packet):
        """Submit one edXML packet (a document or a status), as the exact bytes of the .edxml file.

        The gateway checks the packet (size, XML, edXML schema), that the caller may send as its
        From/OrganId, and that every recipient is registered and active, then stores the bytes unchanged and
        queues one delivery per recipient. Returns the gateway's docId, the message type it detected (edoc or
        status), the recipients and the gateway's signed submission receipt (an XML document naming the
        docId, sender, recipients, the SHA-256 of the exact bytes, the packet's signer and the acceptance
        time). Sending the same bytes again returns the first docId and receipt (duplicate=true).
        """
        data = packet[0] if len(packet) == 1 else b"".join(packet)  # no copy of a large packet
        _drop_base64_text(ctx)
        out = _call(ctx, lambda ax, creds: ax.send_edoc(creds, data))
        return SendEdocResult(
            docId=out.doc_id,
            messageType=out.message_type,
            recipients=OrganIdList(organId=list(out.recipients)),
            duplicate=out.duplicate,
            receipt=[out.receipt] if out.receipt else None,
        )

    @rpc(
        Unicode(min_occurs=1, nillable=False),
        OptionalDate,
        OptionalDate,
        _returns=Array(ReceivedEdoc, min_occurs=1, nillable=False),
        _throws=FAULTS,
        _in_arg_names={"messageType": "messageType", "fromDate": "fromDate", "toDate": "toDate"},
    )
    def getReceivedEdocList(ctx, messageType, fromDate, toDate):
        """List the caller's pending packets: messageType is "edoc" (documents) or "status" (status notices).

        Pending means not yet acknowledged done with updateStatus. Optional fromDate/toDate (inclusive, in
        the agencies' time zone) filter on the time the gateway accepted the packet. Oldest first, in the
        order the gateway accepted them; at most 1000 per call (acknowledge to see more).
        """
        items = _call(ctx, lambda ax, creds: ax.received_list(creds, messageType, fromDate, toDate))
        return [received_entry(i) for i in items]

    @rpc(
        Unicode(min_occurs=1, nillable=False),
        _returns=EdocContent,
        _throws=FAULTS,
        _in_arg_names={"docId": "docId"},
    )
    def getEdoc(ctx, docId):
        """Fetch one packet's exact bytes by docId; only for an agency it is addressed to.

        The bytes are those the sender submitted, byte for byte (check them against sha256). Fetching
        marks the delivery as delivered; it stays on the pending list until updateStatus done.
        """
        out = _call(ctx, lambda ax, creds: ax.get_edoc(creds, docId))
        return EdocContent(
            docId=out.doc_id, messageType=out.message_type, sha256=out.sha256, packet=[out.content]
        )

    @rpc(
        Unicode(min_occurs=1, nillable=False),
        Unicode(min_occurs=1, nillable=False),
        Unicode(min_occurs=0, nillable=False),
        _returns=UpdateStatusResult,
        _throws=FAULTS,
        _in_arg_names={"docId": "docId", "status": "status", "reason": "reason"},
    )
    def updateStatus(ctx, docId, status, reason):
        """Acknowledge a received packet (transport state, not a business status).

        status is "processing", "done" (stored: take it off my pending list) or "fail" (keep it pending and
        record the reason). Business answers (01 arrived, 03 accepted, …) are status packets sent with
        sendEdoc.
        """
        agencies = _call(ctx, lambda ax, creds: ax.update_status(creds, docId, status, reason))
        return UpdateStatusResult(
            docId=docId, status=status.strip().lower(), agencies=OrganIdList(organId=list(agencies))
        )

    @rpc(
        Unicode(min_occurs=0, nillable=False),
        Unicode(min_occurs=0, nillable=False),
        OptionalDate,
        OptionalDate,
        Integer(min_occurs=0, nillable=False),
        Unicode(min_occurs=0, nillable=False),
        _returns=Array(SentEdoc, min_occurs=1, nillable=False),
        _throws=FAULTS,
        _in_arg_names={
            "docId": "docId",
            "messageType": "messageType",
            "fromDate": "fromDate",
            "toDate": "toDate",
            "limit": "limit",
            "beforeDocId": "beforeDocId",
        },
    )
    def getSentEdocList(ctx, docId, messageType, fromDate, toDate, limit, beforeDocId):
        """The caller's sent packets, one entry per recipient, newest first.

        Each entry gives the recipient, when the gateway accepted the packet, when the recipient fetched it
        (deliveredAt) and acknowledged it, the transport state (pending, fetched, processing, done, fail)
        and the latest business status the recipient sent back (01, 02, 03, …, 15, 16) with its time and
        staff. lifecycle is the recall/update/replace state of that recipient's copy (recall-requested until
        it answers, then recalled or recall-refused; likewise update-… and replace-…) with lifecycleDocId,
        the packet that asked. dueAt/answeredAt: when its receipt (01/03) was due and when it came. Optional
        filters: docId, messageType (edoc/status), fromDate/toDate (inclusive). Paged by packet: limit packets
        per page (default 50, at most 1000), each with all its recipients; for the next page pass the last
        docId of this one as beforeDocId.
        """
        items = _call(
            ctx,
            lambda ax, creds: ax.sent_list(creds, docId, messageType, fromDate, toDate, limit, beforeDocId),
        )
        return [_sent(i) for i in items]

    @rpc(
        Unicode(min_occurs=1, nillable=False),
        _returns=DocumentTrace,
        _throws=FAULTS,
        _in_arg_names={"docId": "docId"},
    )
    def getTrace(ctx, docId):
        """The whole life of one packet: every transport event and business status, with times and who.

        The sender sees every recipient; a recipient sees its own part only. Events (oldest first) are
        accepted, delivered (first fetched), acknowledged (updateStatus processing/done/fail), status (a
        business status 01–06, 02, 15, 16 from that recipient) and recall-requested / update-requested /
        replace-requested (the sender asked to change its copy; relatedDocId is the asking packet). The
        recipients list carries each recipient's current state as getSentEdocList does; originDocId is the
        earlier document this one recalls, updates or replaces, and successors the packets that did so to
        this one.
        """
        t = _call(ctx, lambda ax, creds: ax.trace(creds, docId))
        return DocumentTrace(
            docId=t.doc_id,
            messageType=t.message_type,
            from_=t.sender,
            senderSystem=t.sender_system,
            documentId=t.document_id,
            subject=t.subject,
            statusCode=t.status_code,
            businessDocType=t.business_doc_type,
            acceptedAt=t.accepted_at,
            originDocId=t.origin_doc_id,
            successors=DocIdList(docId=list(t.successors)),
            answersDocId=t.answers_doc_id,
            recipients=[_sent(r) for r in t.recipients],
            events=[
                Entry(
                    at=e.at,
                    kind=e.kind,
                    recipient=e.recipient,
                    agency=e.agency,
                    system=e.system,
                    staff=e.staff,
                    code=e.code,
                    detail=e.detail,
                    relatedDocId=e.related_doc_id,
                )
                for e in t.events
            ],
        )

    @rpc(
        Unicode(min_occurs=1, nillable=False),
        _returns=ReceiptList,
        _throws=FAULTS,
        _in_arg_names={"docId": "docId"},
    )
    def getReceipts(ctx, docId):
        """The gateway's signed receipts about one packet, oldest first: its submission receipt, a delivery
        receipt for each recipient that acknowledged it done, and a status receipt for each business status
        sent about it. Each is an XML document signed by the gateway (XML-DSig, enveloped, the gateway's
        certificate in KeyInfo; schema xsd/lienthong-evidence.xsd). The sender gets all of them; a recipient
        the submission receipt and its own.
        """
        return ReceiptList(receipt=[[r] for r in _call(ctx, lambda ax, creds: ax.receipts(creds, docId))])

    @rpc(
        OptionalDate,
        OptionalDate,
        _returns=Array(OverdueEdoc, min_occurs=1, nillable=False),
        _throws=FAULTS,
        _in_arg_names={"fromDate": "fromDate", "toDate": "toDate"},
    )
    def getOverdueList(ctx, fromDate, toDate):
        """The caller's documents whose recipients did not confirm receipt on time (the same-day rule).

        A recipient must send 01 (arrived) or 03 (accepted) — or 02 (rejected) — by the end of the working
        day on which it fetched the document (or, if it never fetched it, on which the gateway accepted
        it); after the daily cut-off, on weekends and holidays, the next working day counts. Each entry
        names the document and recipient, when the answer was due (dueAt), and when it came after all
        (answeredAt; absent while still unanswered). Recalled copies are left out. fromDate/toDate
        (inclusive) filter on acceptance; by default the last 30 days. At most 1000 entries.
        """
        items = _call(ctx, lambda ax, creds: ax.overdue_list(creds, fromDate, toDate))
        return [
            Entry(
                docId=i.doc_id,
                documentId=i.document_id,
                subject=i.subject,
                from_=i.sender,
                recipient=i.recipient,
                acceptedAt=i.accepted_at,
                deliveredAt=i.delivered_at,
                dueAt=i.due_at,
                answeredAt=i.answered_at,
                businessStatus=i.business_status,
            )
            for i in items
        ]

    @rpc(
        Unicode(min_occurs=0, nillable=False),
        _returns=Array(AgencyEntry, min_occurs=1, nillable=False),
        _throws=FAULTS,
        _in_arg_names={"filter": "filter"},
    )
    def getAgenciesList(ctx, filter):
        """The directory of agencies: code, name, parent code, email, older code and whether it is active.

        The optional filter matches part of the code or the name, ignoring case.
        """
        return [_agency(a) for a in _call(ctx, lambda ax, creds: ax.agencies(creds, filter))]

    @rpc(
        Unicode(min_occurs=1, nillable=False),
        Unicode(min_occurs=1, nillable=False),
        Unicode(min_occurs=0, nillable=False),
        Unicode(min_occurs=0, nillable=False),
        Unicode(min_occurs=0, nillable=False),
        _returns=AgencyEntry,
        _throws=FAULTS,
        _in_arg_names={
            "code": "code",
            "name": "name",
            "parentCode": "parentCode",
            "email": "email",
            "oldCode": "oldCode",
        },
    )
    def registerAgency(ctx, code, name, parentCode, email, oldCode):
        """Add an agency to the directory, or update (and reactivate) a known code. Administrator systems only."""
        info = axis_mod.AgencyInfo(code, name, parentCode, email, oldCode, True)
        return _agency(_call(ctx, lambda ax, creds: ax.register_agency(creds, info)))

    @rpc(
        Unicode(min_occurs=1, nillable=False),
        _returns=AgencyEntry,
        _throws=FAULTS,
        _in_arg_names={"code": "code"},
    )
    def deleteAgency(ctx, code):
        """Deactivate an agency: it stays in the directory for history but can no longer receive packets.

        Administrator systems only.
        """
        return _agency(_call(ctx, lambda ax, creds: ax.delete_agency(creds, code)))
