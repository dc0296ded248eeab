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
        super().__init__(
            faultcode=code,
            faultstring=f"{message} [correlation id {correlation_id}]",
            detail=detail_element(code, message, correlation_id),
        )


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


def fault_envelope(err: errors.LienthongError, correlation_id: str) -> bytes:
    """A whole SOAP 1.1 fault response, for refusals made before spyne runs (the guard)."""
    env = etree.Element(f"{{{SOAP11_ENV}}}Envelope", nsmap={"soap11env": SOAP11_ENV})
    body = etree.SubElement(env, f"{{{SOAP11_ENV}}}Body")
    fault = etree.SubElement(body, f"{{{SOAP11_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"soap11env:{err.code}"
    etree.SubElement(fault, "faultstring").text = f"{err.message} [correlation id {correlation_id}]"
    etree.SubElement(fault, "faultactor").text = ""
    detail = etree.SubElement(fault, "detail")
    detail.append(detail_element(err.code, err.message, correlation_id))
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")
