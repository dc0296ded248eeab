"""The single mapping from :mod:`gateway.errors` to SOAP 1.1 faults.

A fault looks the same whether spyne or the guard sends it::

    <soap11env:Fault>
      <faultcode>soap11env:Client.Packet.SchemaInvalid</faultcode>
      <faultstring>the document packet … [correlation id 6f1c…]</faultstring>
      <faultactor></faultactor>
      <detail>
        <tns:LienthongFault>
          <tns:code>Client.Packet.SchemaInvalid</tns:code>
          <tns:message>the document packet …</tns:message>
          <tns:correlationId>6f1c…</tns:correlationId>
        </tns:LienthongFault>
      </detail>
    </soap11env:Fault>

The code is stable (clients branch on it), the message is for a clerk, and the correlation id is the one
written to the gateway's log with the same event. ``Server.*`` faults never carry internals: the traceback
goes to the log only.
"""

from __future__ import annotations

import logging
import uuid

from lxml import etree
from spyne import Fault, Unicode

from gateway import errors

log = logging.getLogger("lienthong.soap")

TNS = "urn:lienthong:axis:1"
SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def new_correlation_id() -> str:
    return uuid.uuid4().hex


class LienthongFault(Fault):
    """Declared in the WSDL for every operation. The detail carries the code, message and correlation id."""

    __namespace__ = TNS
    __type_name__ = "LienthongFault"

    # These fields define the declared fault type in the WSDL. The values travel in ``detail`` (below),
    # built by :func:`detail_element`; the attributes stay None so spyne adds nothing non-standard.
    _type_info = [  # noqa: RUF012 - spyne reads this class attribute
        ("code", Unicode(min_occurs=1, nillable=False)),
        ("message", Unicode(min_occurs=1, nillable=False)),
        ("correlationId", Unicode(min_occurs=1, nillable=False)),
    ]

    def __init__(self, code: str, message: str, correlation_id: str) -> None:
        super().__init__(faultcode=code, faultstring=f"{message} [correlation id {correlation_id}]")
        # kept apart from the declared fields, which only describe the detail element in the WSDL
        self.lienthong = (code, message, correlation_id)


def detail_element(code: str, message: str, correlation_id: str) -> etree._Element:
    fault = etree.Element(f"{{{TNS}}}LienthongFault", nsmap={"tns": TNS})
    for name, value in (("code", code), ("message", message), ("correlationId", correlation_id)):
        etree.SubElement(fault, f"{{{TNS}}}{name}").text = value
    return fault


def as_lienthong_error(exc: BaseException, correlation_id: str) -> errors.LienthongError:
    """Our own errors pass through; anything else becomes ``Server.Internal`` and is logged in full."""
    if isinstance(exc, errors.LienthongError):
        return exc
    log.error("internal error [correlation id %s]", correlation_id, exc_info=exc)
    return errors.InternalError(
        "the gateway failed while handling this request; nothing was changed. Give the correlation id "
        "to the gateway operator"
    )


def log_refusal(err: errors.LienthongError, correlation_id: str, what: str = "") -> None:
    level = logging.ERROR if isinstance(err, errors.ServerError) else logging.WARNING
    log.log(
        level,
        "refused%s: %s: %s [correlation id %s]",
        f" {what}" if what else "",
        err.code,
        err.message,
        correlation_id,
    )


def to_fault(exc: BaseException, correlation_id: str, what: str = "") -> LienthongFault:
    err = as_lienthong_error(exc, correlation_id)
    log_refusal(err, correlation_id, what)
    return LienthongFault(err.code, err.message, correlation_id)


#: spyne's own refusals, in our code space (they are raised before any operation runs)
_SPYNE_CODES = {
    "Client.ValidationError": "Client.Request.InvalidArgument",
    "Client.SchemaValidationError": "Client.Request.InvalidArgument",
    "Client.ResourceNotFound": "Client.Request.UnknownOperation",
    "Client.SoapError": "Client.Request.MalformedEnvelope",
    "Client.XMLSyntaxError": "Client.Request.MalformedEnvelope",
}


def from_spyne(code: str, message: str) -> tuple[str, str]:
    """A fault spyne raised itself, mapped to our codes (internals of a server-side one are not sent)."""
    if code in _SPYNE_CODES:
        return _SPYNE_CODES[code], message
    if code.startswith("Client"):
        return "Client.Request.InvalidArgument", message
    return (
        "Server.Internal",
        "the gateway failed while handling this request; give the correlation id to the operator",
    )


def fault_element(code: str, message: str, correlation_id: str) -> etree._Element:
    """The one SOAP 1.1 Fault shape: faultcode, faultstring, faultactor, detail — nothing else."""
    fault = etree.Element(f"{{{SOAP11_ENV}}}Fault", nsmap={"soap11env": SOAP11_ENV})
    etree.SubElement(fault, "faultcode").text = f"soap11env:{code}"
    etree.SubElement(fault, "faultstring").text = f"{message} [correlation id {correlation_id}]"
    etree.SubElement(fault, "faultactor").text = ""
    etree.SubElement(fault, "detail").append(detail_element(code, message, correlation_id))
    return fault


def fault_envelope(err: errors.LienthongError, correlation_id: str) -> bytes:
    """A whole SOAP 1.1 fault response, for refusals made before spyne runs (the guard)."""
    env = etree.Element(f"{{{SOAP11_ENV}}}Envelope", nsmap={"soap11env": SOAP11_ENV})
    etree.SubElement(env, f"{{{SOAP11_ENV}}}Body").append(
        fault_element(err.code, err.message, correlation_id)
    )
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")
