"""Building edXML packets (documents and status notices) the way the standard and real senders write them.

The result is bytes: once built (and, later, signed), a packet is never re-serialized.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from lxml import etree

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
VN = ZoneInfo("Asia/Ho_Chi_Minh")
NSMAP = {None: NS, "edXML": NS}


def _el(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, f"{{{NS}}}{name}")
    if text is not None:
        el.text = text
    return el


def _organ(parent: etree._Element, tag: str, organ_id: str, name: str | None = None) -> None:
    el = _el(parent, tag)
    _el(el, "OrganId", organ_id)
    if name:
        _el(el, "OrganName", name)


def _skeleton() -> tuple[etree._Element, etree._Element, etree._Element]:
    root = etree.Element(f"{{{NS}}}edXML", nsmap=NSMAP)
    envelope = _el(root, "edXMLEnvelope")
    header = _el(envelope, "edXMLHeader")
    return root, envelope, header


def _bytes(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def document_id(sender: str, date: dt.date, number: str, notation: str) -> str:
    """``<sender OrganId>,<yyyy/MM/dd>,<number/notation>`` as the standard writes it."""
    return f"{sender},{date:%Y/%m/%d},{number}/{notation}"


def build_document(
    *,
    sender: str,
    recipients: Sequence[str],
    number: str,
    notation: str,
    subject: str,
    content: str | None = None,
    date: dt.date | None = None,
    sender_name: str | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
    business_doc_type: int = 0,
    refers_to: str | None = None,
    reason: str | None = None,
    now: dt.datetime | None = None,
    added_receivers: Sequence[str] = (),
    removed_receivers: Sequence[str] = (),
    replacements: Sequence[tuple[str, Sequence[str]]] = (),
) -> bytes:
    """A document packet. ``attachments`` are (file name, content type, bytes).

    For a recall (``business_doc_type`` 1), update (2) or replace (3), ``refers_to`` is the earlier
    document's DocumentId; an update lists the receivers it adds or removes (ReceiverList), a replace the
    earlier documents it replaces and for whom, as (DocumentId, OrganIds) (ReplacementInfoList)."""
    now = (now or dt.datetime.now(VN)).astimezone(VN)
    date = date or now.date()
    root, envelope, header = _skeleton()
    mh = _el(header, "MessageHeader")
    _organ(mh, "From", sender, sender_name)
    for recipient in recipients:
        _organ(mh, "To", recipient)
    _el(mh, "DocumentId", document_id(sender, date, number, notation))
    code = _el(mh, "Code")
    _el(code, "CodeNumber", number)
    _el(code, "CodeNotation", notation)
    info = _el(mh, "PromulgationInfo")
    _el(info, "PromulgationDate", f"{date:%Y/%m/%d}")
    _el(mh, "Subject", subject)
    if content:
        _el(mh, "Content", content)
    trace_list = _el(header, "TraceHeaderList")
    trace = _el(trace_list, "TraceHeader")
    _el(trace, "OrganId", sender)
    _el(trace, "Timestamp", f"{now:%Y/%m/%d %H:%M:%S}")
    business = _el(trace_list, "Bussiness")
    _el(business, "BussinessDocType", str(business_doc_type))
    if refers_to:
        _el(business, "DocumentId", refers_to)
    if reason:
        _el(business, "BussinessDocReason", reason)
    if added_receivers or removed_receivers:
        info = _el(business, "BussinessDocumentInfo")
        _el(info, "DocumentReceiver", "1")
        receivers = _el(info, "ReceiverList")
        for organ, receiver_type in [(o, "1") for o in added_receivers] + [
            (o, "0") for o in removed_receivers
        ]:
            receiver = _el(receivers, "Receiver")
            _el(receiver, "OrganId", organ)
            _el(receiver, "ReceiverType", receiver_type)
    if replacements:
        replacement_list = _el(business, "ReplacementInfoList")
        for replaced, organs in replacements:
            info = _el(replacement_list, "ReplacementInfo")
            _el(info, "DocumentId", replaced)
            organ_list = _el(info, "OrganIdList")
            for organ in organs:
                _el(organ_list, "OrganId", organ)
    if attachments:
        body = _el(envelope, "edXMLBody")
        manifest = _el(body, "edXMLManifest")
        manifest.set("version", "1.0")
        encoded = _el(root, "AttachmentEncoded")
        for name, content_type, data in attachments:
            cid = str(uuid.uuid4())
            ref = _el(manifest, "Reference")
            _el(ref, "ContentId", f"cid:{cid}")
            _el(ref, "ContentType", content_type)
            _el(ref, "AttachmentName", name)
            att = _el(encoded, "Attachment")
            _el(att, "ContentId", cid)
            _el(att, "AttachmentName", name)
            _el(att, "ContentType", content_type)
            _el(att, "ContentTransferEncoded", base64.b64encode(data).decode("ascii"))
    return _bytes(root)


def build_status(
    *,
    sender: str,
    original_sender: str,
    original_document_id: str,
    status_code: str,
    description: str | None = None,
    staff: str | None = None,
    department: str | None = None,
    original_code: str | None = None,
    original_date: str | None = None,
    now: dt.datetime | None = None,
) -> bytes:
    """A status packet answering ``original_document_id`` of ``original_sender``."""
    now = (now or dt.datetime.now(VN)).astimezone(VN)
    root, _envelope, header = _skeleton()
    mh = _el(header, "MessageHeader")
    _organ(mh, "From", sender)
    rf = _el(mh, "ResponseFor")
    _el(rf, "OrganId", original_sender)
    if original_code:
        _el(rf, "Code", original_code)
    if original_date:
        _el(rf, "PromulgationDate", original_date)
    _el(rf, "DocumentId", original_document_id)
    if staff or department:
        info = _el(mh, "StaffInfo")
        if department:
            _el(info, "Department", department)
        if staff:
            _el(info, "Staff", staff)
    _el(mh, "StatusCode", status_code)
    if description:
        _el(mh, "Description", description)
    _el(mh, "Timestamp", f"{now:%Y/%m/%d %H:%M:%S}")
    return _bytes(root)


def read_header(data: bytes) -> dict[str, str | None]:
    """What a receiving system needs from a packet it fetched: sender, DocumentId, code, status."""
    from lienthong_client.safexml import parse

    root = parse(data)
    mh = root.find(f"{{{NS}}}edXMLEnvelope/{{{NS}}}edXMLHeader/{{{NS}}}MessageHeader")
    if mh is None:
        mh = root.find(f"{{{NS}}}edXMLEnvelope/{{{NS}}}edXMLHeader/{{{NS}}}Status")

    def text(path: str) -> str | None:
        value = mh.findtext(path, namespaces={"e": NS}) if mh is not None else None
        return value.strip() if value else None

    number, notation = text("e:Code/e:CodeNumber"), text("e:Code/e:CodeNotation")
    return {
        "from": text("e:From/e:OrganId"),
        "document_id": text("e:DocumentId") or text("e:ResponseFor/e:DocumentId"),
        "code": f"{number}/{notation}" if number and notation else None,
        "promulgation_date": text("e:PromulgationInfo/e:PromulgationDate"),
        "subject": text("e:Subject"),
        "status_code": text("e:StatusCode"),
        "description": text("e:Description"),
    }
