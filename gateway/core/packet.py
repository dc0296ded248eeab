"""Reading an edXML packet (QCVN 102:2016) into a frozen model.

:func:`read_packet` takes the exact bytes of a ``.edxml`` file and the loaded schemas, and returns a
:class:`Packet`: what kind it is (document or status), who sent it, who it is for, which document it
answers, and the SHA-256 of the bytes. It never changes the bytes; the gateway stores and forwards them as
they came.

Checks, in order, each with its own error: size and well-formedness (:mod:`gateway.core.xmlparse`), the
edXML skeleton (``Client.Packet.NotEdxml``), the XML Schema for the packet's kind, then the rules XML
Schema 1.0 cannot express (``Client.Packet.SchemaInvalid`` for both, naming the element and line):
cardinalities inside a document's ``MessageHeader`` (whose children come in any order) and the reason
required for statuses 02, 13 and 16.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections import Counter

from lxml import etree

from gateway import errors
from gateway.core.xmlparse import parse_xml

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"

EDOC = "edoc"
STATUS = "status"
MESSAGE_TYPES = (EDOC, STATUS)

#: status codes of QCVN 102 section 2 (see ``xsd/edxml-status.xsd``)
STATUS_CODES = {
    "01": "arrived",
    "02": "rejected",
    "03": "accepted",
    "04": "assigned",
    "05": "processing",
    "06": "completed",
    "13": "recall requested",
    "15": "recall/update agreed",
    "16": "recall/update refused",
}
REASON_REQUIRED = frozenset({"02", "13", "16"})

#: BussinessDocType values
NEW, RECALL, UPDATE, REPLACE = 0, 1, 2, 3

#: children of a document MessageHeader and how many of each the standard allows: (min, max)
_DOC_HEADER_CARDINALITY = {
    "From": (1, 1),
    "To": (1, 5000),
    "DocumentId": (1, 1),
    "Code": (1, 1),
    "Subject": (1, 1),
    "PromulgationInfo": (0, 1),
    "DocumentType": (0, 1),
    "Content": (0, 1),
    "SignerInfo": (0, 1),
    "DueDate": (0, 1),
    "OtherInfo": (0, 1),
    "ResponseFor": (0, 100),
    "SteeringType": (0, 1),
    "ToPlaces": (0, 1),
}


def q(name: str) -> str:
    """The qualified name of an edXML element."""
    return f"{{{NS}}}{name}"


@dataclasses.dataclass(frozen=True)
class SchemaSet:
    """The loaded edXML schemas (loading them is the edge's job: see ``gateway.resources``)."""

    document: etree.XMLSchema
    status: etree.XMLSchema


@dataclasses.dataclass(frozen=True)
class Limits:
    """Size limits applied before anything is parsed."""

    max_packet_bytes: int


@dataclasses.dataclass(frozen=True)
class ResponseFor:
    organ_id: str
    document_id: str
    code: str | None = None
    promulgation_date: str | None = None


@dataclasses.dataclass(frozen=True)
class Business:
    """The packet's Bussiness block: what kind of document it is and which earlier one it changes."""

    doc_type: int = NEW
    document_id: str | None = None
    reason: str | None = None
    #: an update's ReceiverList: receivers added (ReceiverType 1) and removed (ReceiverType 0)
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    #: a replace's ReplacementInfoList: (replaced DocumentId, the OrganIds it is replaced for)
    replacements: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclasses.dataclass(frozen=True)
class Packet:
    """What the gateway knows about a packet. The bytes themselves stay with the caller."""

    kind: str
    from_organ: str
    to_organs: tuple[str, ...]
    sha256: str
    size: int
    document_id: str | None = None
    subject: str | None = None
    code: str | None = None
    response_for: tuple[ResponseFor, ...] = ()
    status_code: str | None = None
    description: str | None = None
    status_time: str | None = None
    staff: str | None = None
    business: Business = Business()

    @property
    def is_status(self) -> bool:
        return self.kind == STATUS

    @property
    def summary(self) -> str:
        """One line for lists: the subject of a document, the status code and meaning of a status."""
        if self.is_status:
            return f"{self.status_code} {STATUS_CODES.get(self.status_code or '', '')}".strip()
        return self.subject or ""


def _text(parent: etree._Element | None, name: str) -> str | None:
    if parent is None:
        return None
    child = parent.find(q(name))
    if child is None or child.text is None:
        return None
    value = child.text.strip()
    return value or None


def _local(tag: object) -> str:
    if not isinstance(tag, str):
        return "#comment"
    return tag.rsplit("}", 1)[-1]


_ELEMENT_RE = re.compile(r"Element '(?:\{[^}]*\})?([^']+)'")


def _schema_error(schema: etree.XMLSchema, kind: str) -> errors.SchemaInvalid:
    err = schema.error_log.filter_from_errors()[0] if schema.error_log else None
    if err is None:  # pragma: no cover - lxml always logs a reason
        return errors.SchemaInvalid(f"the {kind} packet does not follow the edXML schema", element=None)
    match = _ELEMENT_RE.search(err.message)
    element = match.group(1) if match else None
    reason = re.sub(r"\{[^}]*\}", "", err.message)
    return errors.SchemaInvalid(
        f"the {kind} packet does not follow the edXML schema at element {element or '?'} "
        f"(line {err.line}): {reason}",
        element=element,
        line=err.line,
    )


def _locate_header(root: etree._Element) -> etree._Element:
    if root.tag != q("edXML"):
        where = f" in namespace {etree.QName(root).namespace}" if etree.QName(root).namespace else ""
        raise errors.NotEdxml(
            f"this is not an edXML packet: the root element is {etree.QName(root).localname}{where}, "
            f"expected edXML in namespace {NS}"
        )
    envelope = root.find(q("edXMLEnvelope"))
    header = envelope.find(q("edXMLHeader")) if envelope is not None else None
    if header is None:
        raise errors.NotEdxml("this is not an edXML packet: edXML/edXMLEnvelope/edXMLHeader is missing")
    message_header = header.find(q("MessageHeader"))
    if message_header is None:
        message_header = header.find(q("Status"))
    if message_header is None:
        raise errors.NotEdxml("this is not an edXML packet: edXMLHeader has no MessageHeader")
    return message_header


def _check_document_header(mh: etree._Element) -> None:
    counts = Counter(_local(child.tag) for child in mh if isinstance(child.tag, str))
    for name, (low, high) in _DOC_HEADER_CARDINALITY.items():
        n = counts.get(name, 0)
        if n < low:
            raise errors.SchemaInvalid(
                f"the document packet has no {name} in MessageHeader (line {mh.sourceline}); "
                f"every document must carry one",
                element=name,
                line=mh.sourceline,
            )
        if high is not None and n > high:
            extra = mh.findall(q(name))[high]
            raise errors.SchemaInvalid(
                f"the document packet has {n} {name} elements in MessageHeader (second one at line "
                f"{extra.sourceline}); at most {high} is allowed",
                element=name,
                line=extra.sourceline,
            )


def _response_for(el: etree._Element) -> ResponseFor:
    return ResponseFor(
        organ_id=_text(el, "OrganId") or "",
        document_id=_text(el, "DocumentId") or "",
        code=_text(el, "Code"),
        promulgation_date=_text(el, "PromulgationDate"),
    )


def check_packet(data: bytes, schemas: SchemaSet, limits: Limits) -> etree._ElementTree:
    """Parse and validate a packet's bytes (size, XML, edXML skeleton, schema, the rules XML Schema cannot
    express). Returns the tree; raises a :class:`~gateway.errors.PacketError`."""
    tree = parse_xml(data, max_bytes=limits.max_packet_bytes)
    mh = _locate_header(tree.getroot())
    is_status = mh.tag == q("Status") or mh.find(q("StatusCode")) is not None
    schema = schemas.status if is_status else schemas.document
    if not schema.validate(tree):
        raise _schema_error(schema, "status" if is_status else "document")
    if is_status:
        code = _text(mh, "StatusCode") or ""
        if code in REASON_REQUIRED and not _text(mh, "Description"):
            el = mh.find(q("Description"))
            line = el.sourceline if el is not None else mh.sourceline
            raise errors.StatusReasonRequired(
                f"status {code} ({STATUS_CODES[code]}) must give its reason in Description (line {line})",
                element="Description",
                line=line,
                status_code=code,
            )
    else:
        _check_document_header(mh)
    return tree


def packet_fields(root: etree._Element, data: bytes) -> Packet:
    """What routing needs, read from ``root`` (a tree :func:`check_packet` accepted, or the root a seal
    verification returned) — never from anywhere else."""
    mh = _locate_header(root)
    digest = hashlib.sha256(data).hexdigest()
    from_organ = _text(mh.find(q("From")), "OrganId") or ""
    if mh.tag == q("Status") or mh.find(q("StatusCode")) is not None:
        rf = _response_for(mh.find(q("ResponseFor")))
        return Packet(
            kind=STATUS,
            from_organ=from_organ,
            to_organs=(rf.organ_id,),
            sha256=digest,
            size=len(data),
            response_for=(rf,),
            status_code=_text(mh, "StatusCode"),
            description=_text(mh, "Description"),
            status_time=_text(mh, "Timestamp"),
            staff=_text(mh.find(q("StaffInfo")), "Staff"),
        )
    to_organs = list(dict.fromkeys(_text(to, "OrganId") or "" for to in mh.findall(q("To"))))
    code_el = mh.find(q("Code"))
    code_number, code_notation = _text(code_el, "CodeNumber"), _text(code_el, "CodeNotation")
    code_text = "/".join(part for part in (code_number, code_notation) if part) or None
    business = Business()
    trace = root.find(f"{q('edXMLEnvelope')}/{q('edXMLHeader')}/{q('TraceHeaderList')}")
    bus = trace.find(q("Bussiness")) if trace is not None else None
    staff = None
    if bus is not None:
        doc_type = _text(bus, "BussinessDocType")
        added: list[str] = []
        removed: list[str] = []
        for receiver in bus.iterfind(f"{q('BussinessDocumentInfo')}/{q('ReceiverList')}/{q('Receiver')}"):
            organ = _text(receiver, "OrganId") or ""
            (added if _text(receiver, "ReceiverType") == "1" else removed).append(organ)
        replacements = tuple(
            (
                _text(info, "DocumentId") or "",
                tuple(
                    dict.fromkeys(
                        (el.text or "").strip() for el in info.iterfind(f"{q('OrganIdList')}/{q('OrganId')}")
                    )
                ),
            )
            for info in bus.iterfind(f"{q('ReplacementInfoList')}/{q('ReplacementInfo')}")
        )
        business = Business(
            doc_type=int(doc_type) if doc_type is not None else NEW,
            document_id=_text(bus, "DocumentId"),
            reason=_text(bus, "BussinessDocReason"),
            added=tuple(dict.fromkeys(added)),
            removed=tuple(dict.fromkeys(removed)),
            replacements=replacements,
        )
        staff = _text(bus.find(q("StaffInfo")), "Staff")
    return Packet(
        kind=EDOC,
        from_organ=from_organ,
        to_organs=tuple(to_organs),
        sha256=digest,
        size=len(data),
        document_id=_text(mh, "DocumentId"),
        subject=_text(mh, "Subject"),
        code=code_text,
        response_for=tuple(_response_for(el) for el in mh.findall(q("ResponseFor"))),
        staff=staff,
        business=business,
    )


def read_packet(data: bytes, schemas: SchemaSet, limits: Limits) -> Packet:
    """Check a packet's bytes and read what routing needs (no seal check: see :mod:`gateway.core.seal`)."""
    return packet_fields(check_packet(data, schemas, limits).getroot(), data)
