"""sendEdoc, getReceivedEdocList, getEdoc and updateStatus answered without spyne's object model: the
operations every packet goes through, and the list every connected system polls.

spyne still defines these operations (the WSDL and its documentation come from
:mod:`gateway.soap.service`), and still answers every request this module does not recognise exactly. For
the plain case — the payload element holds each parameter once, as text, with no attributes — spyne's
request context, object (de)serialization and the serialize-parse-sign round trip of the answer cost
~1 ms per request, more than parsing, schema-validating and verifying a 4 KB packet together. Here the
arguments are read from the tree the guard already parsed and checked, the same
:class:`gateway.axis.Axis` call is made through the same error path as spyne's
(:func:`gateway.soap.service.call_operation`: signature-wrapping check, replay record, one fault per
refusal, the audit entry), and the answer is built as an lxml tree that the guard signs in place and
serializes once. The answer is the one spyne writes, element for element (``tests/unit/test_direct.py``
compares both paths).
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Sequence
from typing import Any

from lxml import etree

from gateway.axis import Axis
from gateway.core.wssec import Deferred
from gateway.soap.faults import SOAP11_ENV, TNS, LienthongFault, fault_element
from gateway.soap.guard import DirectAnswer
from gateway.soap.service import ReceivedEdoc, call_operation, received_entry

_NSMAP = {"soap11env": SOAP11_ENV, "tns": TNS}
_ENVELOPE = f"{{{SOAP11_ENV}}}Envelope"
_BODY = f"{{{SOAP11_ENV}}}Body"


def _q(name: str) -> str:
    return f"{{{TNS}}}{name}"


class _Answer:
    """Builds ``<tns:{op}Response><tns:{op}Result>…`` inside a fresh Envelope."""

    def __init__(self, operation: str) -> None:
        self.envelope = etree.Element(_ENVELOPE, nsmap=_NSMAP)
        body = etree.SubElement(self.envelope, _BODY)
        response = etree.SubElement(body, _q(f"{operation}Response"))
        self.result = etree.SubElement(response, _q(f"{operation}Result"))

    def text(self, name: str, value: str) -> None:
        etree.SubElement(self.result, _q(name)).text = value

    def organs(self, name: str, codes: Sequence[str]) -> None:
        parent = etree.SubElement(self.result, _q(name))
        for code in codes:
            etree.SubElement(parent, _q("organId")).text = code


def fault_answer(fault: LienthongFault) -> etree._Element:
    """The fault envelope spyne writes for a :class:`LienthongFault` (see ``GuardedSoap11.fault_to_parent``)."""
    envelope = etree.Element(_ENVELOPE, nsmap=_NSMAP)
    etree.SubElement(envelope, _BODY).append(fault_element(*fault.lienthong))
    return envelope


def _arguments(payload: etree._Element, required: tuple[str, ...], optional: tuple[str, ...]) -> dict | None:
    """The parameters as text, or None when the payload is anything but the plain shape (spyne then
    decides: it reports what is missing or wrong as it always has)."""
    names = {_q(n): n for n in (*required, *optional)}
    args: dict[str, str] = {}
    if payload.attrib or (payload.text or "").strip():
        return None
    for child in payload:
        name = names.get(child.tag) if isinstance(child.tag, str) else None
        if name is None or name in args or child.attrib or len(child) or child.text is None:
            return None
        args[name] = child.text
    if any(n not in args for n in required):
        return None
    return args


class DirectOperations:
    """The hot operations of one gateway process (``None`` from :meth:`__call__`: spyne answers)."""

    def __init__(self, axis: Axis, protocol: Any) -> None:
        """``protocol``: the application's out protocol (``GuardedSoap11``), whose flat-record writing the
        pending list's entries follow: the members, their order and their text are spyne's."""
        self.axis = axis
        self._protocol = protocol
        self._inbox_plan = protocol.flat_plan(ReceivedEdoc)
        self._handlers: dict[str, Callable[[etree._Element, Any, str], Any]] = {
            _q("sendEdoc"): self._send_edoc,
            _q("getReceivedEdocList"): self._received_list,
            _q("getEdoc"): self._get_edoc,
            _q("updateStatus"): self._update_status,
        }

    def __call__(self, payload: etree._Element, credentials: Any, correlation_id: str) -> DirectAnswer | None:
        """(is it a fault, the answer envelope, text deferred to the writing), or None to leave the
        request to spyne."""
        handler = self._handlers.get(payload.tag)
        if handler is None:
            return None
        try:
            answer = handler(payload, credentials, correlation_id)
        except LienthongFault as fault:
            return True, fault_answer(fault), None
        if answer is None:
            return None
        if isinstance(answer, tuple):
            return (False, *answer)
        return False, answer, None

    def _call(
        self, payload: etree._Element, credentials: Any, cid: str, operation: Callable[..., Any]
    ) -> Any:
        name = etree.QName(payload).localname
        return call_operation(self.axis, credentials, cid, name, payload, operation)

    def _send_edoc(self, payload: etree._Element, credentials: Any, cid: str) -> etree._Element | None:
        args = _arguments(payload, ("packet",), ())
        if args is None:
            return None
        text = args.pop("packet")
        (element,) = payload  # the tree's copy of the base64 goes first, then the text once decoded: a
        element.text = None  # 50 MB packet is then held as text and bytes (117 MB), not also in the tree
        try:
            data = binascii.a2b_base64(text)
        except (binascii.Error, ValueError):
            element.text = text  # as it came: spyne answers with its validation fault
            return None
        del text
        held = [data]  # handed over: the axis may keep a large packet in a temporary file while checking it
        del data
        out = self._call(payload, credentials, cid, lambda ax, creds: ax.send_edoc(creds, held))
        answer = _Answer("sendEdoc")
        answer.text("docId", out.doc_id)
        answer.text("messageType", out.message_type)
        answer.organs("recipients", out.recipients)
        answer.text("duplicate", "true" if out.duplicate else "false")
        if out.receipt:
            answer.text("receipt", binascii.b2a_base64(out.receipt, newline=False).decode("ascii"))
        return answer.envelope

    def _received_list(self, payload: etree._Element, credentials: Any, cid: str) -> etree._Element | None:
        # the poll without a date range; fromDate/toDate (xs:date, with spyne's parsing) are left to spyne
        args = _arguments(payload, ("messageType",), ())
        plan = self._inbox_plan
        if args is None or plan is None:
            return None
        message_type = args["messageType"]
        items = self._call(payload, credentials, cid, lambda ax, creds: ax.received_list(creds, message_type))
        answer = _Answer("getReceivedEdocList")
        entry_tag = _q(ReceivedEdoc.get_type_name())
        text = self._protocol.flat_text
        sub = etree.SubElement
        for item in items:
            entry = sub(answer.result, entry_tag)
            record = received_entry(item)
            for attr, tag, member, kind in plan:
                value = getattr(record, attr)
                if value is not None:  # only optional members are ever None (the required are NOT NULL)
                    sub(entry, tag).text = text(member, kind, value)
        return answer.envelope

    def _get_edoc(
        self, payload: etree._Element, credentials: Any, cid: str
    ) -> tuple[etree._Element, Deferred] | None:
        args = _arguments(payload, ("docId",), ())
        if args is None:
            return None
        doc_id = args["docId"]
        out = self._call(payload, credentials, cid, lambda ax, creds: ax.get_edoc(creds, doc_id))
        answer = _Answer("getEdoc")
        answer.text("docId", out.doc_id)
        answer.text("messageType", out.message_type)
        answer.text("sha256", out.sha256)
        content = out.content
        del out  # the bytes are held once, by ``content``, until they are encoded
        # the base64 (4/3 of the packet) never enters the tree: it is signed and written in place of a
        # placeholder (EnvelopeSigner.sign_deferred, Guard._serialize)
        deferred = Deferred.of(binascii.b2a_base64(content, newline=False))
        del content
        etree.SubElement(answer.result, _q("packet")).text = deferred.placeholder
        return answer.envelope, deferred

    def _update_status(self, payload: etree._Element, credentials: Any, cid: str) -> etree._Element | None:
        args = _arguments(payload, ("docId", "status"), ("reason",))
        if args is None:
            return None
        doc_id, status, reason = args["docId"], args["status"], args.get("reason")
        agencies = self._call(
            payload, credentials, cid, lambda ax, creds: ax.update_status(creds, doc_id, status, reason)
        )
        answer = _Answer("updateStatus")
        answer.text("docId", doc_id)
        answer.text("status", status.strip().lower())
        answer.organs("agencies", agencies)
        return answer.envelope
