"""Hand-made SOAP requests, for inputs the reference client would never send."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import requests
from lxml import etree

TNS = "urn:lienthong:axis:1"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


def security_header(system_id: str, secret: str) -> str:
    return (
        f'<wsse:Security xmlns:wsse="{WSSE}"><wsse:UsernameToken><wsse:Username>{system_id}</wsse:Username>'
        f"<wsse:Password>{secret}</wsse:Password></wsse:UsernameToken></wsse:Security>"
    )


def envelope(payload: str, header: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP}" xmlns:tns="{TNS}">'
        f"<soapenv:Header>{header}</soapenv:Header><soapenv:Body>{payload}</soapenv:Body></soapenv:Envelope>"
    ).encode()


def send_edoc_payload(packet: bytes) -> str:
    return f"<tns:sendEdoc><tns:packet>{base64.b64encode(packet).decode()}</tns:packet></tns:sendEdoc>"


@dataclass
class Reply:
    status: int
    body: bytes
    code: str | None
    message: str | None
    correlation_id: str | None
    headers: dict


def parse_reply(resp: requests.Response) -> Reply:
    code = message = cid = None
    try:
        root = etree.fromstring(resp.content, etree.XMLParser(resolve_entities=False, no_network=True))
        fault = root.find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault")
        if fault is not None:
            detail = fault.find(f"detail/{{{TNS}}}LienthongFault")
            code = detail.findtext(f"{{{TNS}}}code") if detail is not None else fault.findtext("faultcode")
            message = (
                detail.findtext(f"{{{TNS}}}message") if detail is not None else fault.findtext("faultstring")
            )
            cid = detail.findtext(f"{{{TNS}}}correlationId") if detail is not None else None
    except etree.XMLSyntaxError:
        pass
    return Reply(resp.status_code, resp.content, code, message, cid, dict(resp.headers))


def post(url: str, body: bytes, *, content_type: str = "text/xml; charset=utf-8", **kw) -> Reply:
    headers = {"Content-Type": content_type, **kw.pop("headers", {})}
    return parse_reply(requests.post(url, data=body, headers=headers, timeout=30, **kw))


def in_process(app, body: bytes) -> tuple[str, bytes]:
    """Call the WSGI application ``app`` in this process with a POSTed SOAP request: (status, answer)."""
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"] = status
        return lambda _data: None

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "CONTENT_TYPE": "text/xml; charset=utf-8",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
    }
    out = b"".join(app(environ, start_response))
    return captured["status"], out
