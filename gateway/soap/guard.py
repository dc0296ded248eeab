"""The WSGI guard: every request passes here before spyne sees a byte of it.

Order of checks (each refusal is a SOAP fault with its own code and a correlation id):

1. method: ``POST`` for operations, ``GET /?wsdl`` for the contract (``Client.Request.MethodNotAllowed``);
2. content type ``text/xml`` (SOAP 1.1) (``Client.Request.BadContentType``);
3. ``Content-Length`` present and within the limit, checked before reading the body
   (``Client.Request.LengthRequired``, ``Client.Request.TooLarge``);
4. the body parsed once, by the one hardened parser (``Client.Request.NotXml``,
   ``Client.Request.DtdForbidden``);
5. the envelope's shape: one ``Envelope`` with at most one ``Header`` and exactly one ``Body`` holding
   exactly one payload element, no SOAP-encoding multi-ref ``href``/``id`` anywhere, no ``encodingStyle``
   (``Client.Request.MalformedEnvelope``);
6. the WS-Security header read into credentials (checked later, in the operation's transaction).

Once the body is read, the rest of the request (parse, checks, the operation, the answer and its
signature) waits for one of the worker's *compute slots* (``compute_slots``, default 1). The worker's
threads still read requests and write answers side by side, so a slow upload holds a thread, not the
worker; but only so many requests compute at once. Python runs one thread at a time anyway: more than one
request computing in a process only adds switching, and a thread that holds the database's writer lock
could be kept waiting for the interpreter by a sibling mid-transaction, holding up the other workers.

spyne then works on the tree parsed here (see :class:`gateway.soap.app.GuardedSoap11`), never on a second
parse of the bytes, and never resolves references (the guard refused them).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from lxml import etree

from gateway import errors
from gateway.axis import RequestCredentials
from gateway.core.credentials import UsernameToken
from gateway.core.seal import KeyCache
from gateway.core.wssec import Deferred, EnvelopeSigner, TimestampPolicy, verify_envelope
from gateway.core.xmlparse import REQUEST_TREE, parse_xml
from gateway.soap.faults import SOAP11_ENV, fault_envelope, log_refusal, new_correlation_id

log = logging.getLogger("lienthong.http")

WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
_UT_PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
PASSWORD_TEXT = _UT_PROFILE + "#PasswordText"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"

ENV_TREE = "lienthong.envelope"
ENV_CREDENTIALS = "lienthong.credentials"
ENV_CORRELATION = "lienthong.correlation_id"
ENV_PAYLOAD = "lienthong.payload"
#: set while this request holds one of the worker's compute slots
ENV_SLOT = "lienthong.compute_slot"
#: what the direct operations answer: (is it a fault, the envelope, text deferred to the writing)
DirectAnswer = tuple[bool, etree._Element, Deferred | None]

StartResponse = Callable[..., Any]
_HOST_RE = re.compile(r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")


def _envelope_error(message: str) -> errors.MalformedEnvelope:
    return errors.MalformedEnvelope(f"the SOAP envelope is not acceptable: {message}")


def check_envelope(
    tree: etree._ElementTree, operations: dict[str, frozenset[str]] | None = None
) -> tuple[etree._Element | None, etree._Element]:
    """Check the envelope's shape; return its Header (or None) and the single payload element.

    ``operations`` maps each operation (``{namespace}name``) to the names of its parameters: the payload
    must be one of them and hold only those, so nothing reaches spyne that spyne would silently skip."""
    root = tree.getroot()
    if root.tag != f"{{{SOAP11_ENV}}}Envelope":
        raise _envelope_error(f"the root element must be a SOAP 1.1 Envelope ({SOAP11_ENV})")
    header = body = None
    for child in root:
        if not isinstance(child.tag, str):
            continue  # comments and PIs between the parts carry nothing
        if child.tag == f"{{{SOAP11_ENV}}}Header" and header is None and body is None:
            header = child
        elif child.tag == f"{{{SOAP11_ENV}}}Body" and body is None:
            body = child
        else:
            raise _envelope_error(
                f"unexpected {etree.QName(child).localname} in Envelope (only one Header, then one Body)"
            )
        if (child.tail or "").strip():
            raise _envelope_error("text between the parts of the Envelope")
    if body is None:
        raise _envelope_error("there is no Body")
    payload = [el for el in body if isinstance(el.tag, str)]
    if len(payload) != 1:
        raise _envelope_error(f"the Body must hold exactly one operation element, it holds {len(payload)}")
    if (body.text or "").strip() or any((el.tail or "").strip() for el in body):
        raise _envelope_error("text beside the operation element in the Body")
    for node in body.iter(etree.Comment, etree.ProcessingInstruction):
        raise _envelope_error(
            f"comments and processing instructions are not accepted in the Body (line {node.sourceline})"
        )
    payload_el = payload[0]
    if operations is not None:
        params = operations.get(payload_el.tag)
        if params is None:
            raise errors.UnknownOperation(
                f"{etree.QName(payload_el).localname!r} in namespace {etree.QName(payload_el).namespace!r} is not "
                f"an operation of this gateway (see the WSDL at ?wsdl)"
            )
        for child in payload_el:
            if child.tag not in params:
                raise _envelope_error(
                    f"{etree.QName(child).localname!r} is not a parameter of {etree.QName(payload_el).localname}"
                )
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        for name in el.attrib:
            local = etree.QName(name).localname
            if local == "href" or (local == "id" and _in_body(el, body)):
                raise _envelope_error(
                    f"SOAP-encoding references ({local} on {etree.QName(el).localname}) are not accepted; "
                    f"send document/literal content"
                )
            if local == "encodingStyle":
                raise _envelope_error("SOAP encoding (encodingStyle) is not accepted; use document/literal")
    return header, payload_el


def _in_body(el: etree._Element, body: etree._Element) -> bool:
    return any(ancestor is body for ancestor in el.iterancestors())


def read_credentials(header: etree._Element | None) -> UsernameToken | None:
    """The WS-Security UsernameToken in the header, if any (its check is the operation's job).

    Ambiguity is refused rather than resolved: two Security headers, two tokens, two Usernames or two
    Passwords would let two readers of the same request see two identities."""
    if header is None:
        return None
    security = header.findall(f"{{{WSSE_NS}}}Security")
    if not security:
        return None
    if len(security) > 1:
        raise _envelope_error("more than one wsse:Security header")
    tokens = security[0].findall(f"{{{WSSE_NS}}}UsernameToken")
    if not tokens:
        return None
    if len(tokens) > 1:
        raise _envelope_error("more than one wsse:UsernameToken")
    token = tokens[0]
    usernames = token.findall(f"{{{WSSE_NS}}}Username")
    passwords = token.findall(f"{{{WSSE_NS}}}Password")
    if len(usernames) != 1 or len(passwords) != 1:
        raise _envelope_error("a UsernameToken must hold exactly one Username and one Password")
    username, password_el = usernames[0], passwords[0]
    if len(username) or len(password_el):
        raise _envelope_error("Username and Password must be plain text")
    ptype = password_el.get("Type", PASSWORD_TEXT)
    if ptype != PASSWORD_TEXT:
        raise errors.InvalidCredentials(
            "only PasswordText UsernameTokens are accepted (over TLS); the gateway keeps no clear secret "
            "to check a PasswordDigest against"
        )
    return UsernameToken(username=username.text or "", password=password_el.text or "")


class Guard:
    """WSGI middleware in front of the spyne application."""

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        *,
        max_request_bytes: int,
        operations: dict[str, frozenset[str]],
        wsdl: bytes,
        wsdl_placeholder: str,
        public_url: str | None = None,
        timestamps: TimestampPolicy | None = None,
        response_signer: EnvelopeSigner | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        on_refusal: Callable[[str, str], None] | None = None,
        direct: Callable[[etree._Element, Any, str], DirectAnswer | None] | None = None,
        compute_slots: int = 1,
    ) -> None:
        if compute_slots < 1:
            raise ValueError("compute_slots must be at least 1")
        self.app = app
        #: requests of this process that compute at once, once their body is read (see the module's doc)
        self._slots = threading.BoundedSemaphore(compute_slots)
        #: answers the hot operations without spyne (gateway.soap.direct); None from it: spyne answers
        self.direct = direct
        self.max_request_bytes = max_request_bytes
        self.operations = operations
        self.wsdl = wsdl
        self.wsdl_placeholder = wsdl_placeholder.encode()
        self.public_url = public_url
        self.timestamps = timestamps or TimestampPolicy()
        self.response_signer = response_signer
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.keys = KeyCache()
        #: told (fault code, correlation id) of every request refused at the door (the audit chain)
        self.on_refusal = on_refusal

    def _serve_wsdl(self, environ: dict[str, Any], start_response: StartResponse, cid: str) -> list[bytes]:
        """The checked-in WSDL, with the address this gateway is reached at."""
        address = self.public_url
        if address is None:
            host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
            if not _HOST_RE.fullmatch(host):
                host = f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
            address = f"{environ.get('wsgi.url_scheme', 'http')}://{host}/"
        body = self.wsdl.replace(self.wsdl_placeholder, address.encode())
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/xml; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("X-Correlation-Id", cid),
            ],
        )
        return [body]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            return self._handle(environ, start_response)
        finally:
            if environ.pop(ENV_SLOT, False):
                self._slots.release()

    def _handle(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        cid = new_correlation_id()
        environ[ENV_CORRELATION] = cid
        try:
            if self._admit(environ):
                return self._serve_wsdl(environ, start_response, cid)
        except Exception as exc:
            err = (
                exc
                if isinstance(exc, errors.LienthongError)
                else errors.InternalError(
                    "the gateway failed while reading this request; give the correlation id to the operator"
                )
            )
            if not isinstance(exc, errors.LienthongError):
                log.error("guard failure [correlation id %s]", cid, exc_info=exc)
            log_refusal(err, cid, "at the door")
            if self.on_refusal is not None:
                self.on_refusal(err.code, cid)
            return self._fault(start_response, err, cid)
        if self.direct is not None:
            try:
                answered = self.direct(environ[ENV_PAYLOAD], environ[ENV_CREDENTIALS], cid)
            except Exception as exc:
                log.error("failure in an operation [correlation id %s]", cid, exc_info=exc)
                err = errors.InternalError(
                    "the gateway failed while handling this request; nothing was changed. Give the "
                    "correlation id to the gateway operator"
                )
                return self._fault(start_response, err, cid)
            if answered is not None:
                is_fault, envelope, deferred = answered
                status = "500 Internal Server Error" if is_fault else "200 OK"
                self._log_request(environ, status, started, cid)
                chunks = self._serialize(envelope, deferred)
                del envelope, answered, deferred
                headers = [("Content-Type", "text/xml; charset=utf-8")]
                return self._respond(start_response, status, headers, chunks, cid, signed=True)
        captured: list[tuple[str, list[tuple[str, str]]]] = []

        def _start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.append((status, headers))
            return lambda _data: None

        try:
            result = self.app(environ, _start)
            try:
                holder = [b"".join(result)]  # one reference only, so signing can let go of it
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            status, headers = captured[-1]
        except Exception as exc:
            log.error("failure inside the SOAP layer [correlation id %s]", cid, exc_info=exc)
            err = errors.InternalError(
                "the gateway failed while handling this request; nothing was changed. Give the correlation id "
                "to the gateway operator"
            )
            return self._fault(start_response, err, cid)
        self._log_request(environ, status, started, cid)
        return self._respond(start_response, status, headers, holder, cid)

    @staticmethod
    def _log_request(environ: dict[str, Any], status: str, started: float, cid: str) -> None:
        log.info(
            "%s %s %s %.1f ms [correlation id %s]",
            environ.get("REQUEST_METHOD"),
            environ.get("PATH_INFO", "/"),
            status.split(" ", 1)[0],
            (time.perf_counter() - started) * 1000,
            cid,
        )

    def _respond(
        self,
        start_response: StartResponse,
        status: str,
        headers: list[tuple[str, str]],
        holder: list[bytes],
        cid: str,
        extra: list[tuple[str, str]] | None = None,
        *,
        signed: bool = False,
    ) -> list[bytes]:
        """Send a SOAP response (taken out of ``holder``), signed with the gateway's key when it has one
        (``signed``: it is already, and ``holder`` holds its chunks, by :meth:`_serialize`)."""
        if signed:
            body = holder
        else:
            body = [self._sign(holder) if self.response_signer is not None else holder.pop()]
        out = [(k, v) for k, v in headers if k.lower() not in ("content-length", "x-correlation-id")]
        length = sum(len(chunk) for chunk in body)
        out += [("Content-Length", str(length)), ("X-Correlation-Id", cid), *(extra or [])]
        start_response(status, out)
        return body

    def _serialize(self, envelope: etree._Element, deferred: Deferred | None = None) -> list[bytes]:
        """An answer built as a tree: signed in place (no parse of our own output) and serialized once.
        ``deferred`` (a fetched packet's base64) is not in the tree but in place of its placeholder: the
        answer goes out as the chunks around it and the data itself, never copied."""
        if self.response_signer is not None:
            self.response_signer.sign_deferred(envelope, self.clock(), deferred)
        out = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
        if deferred is None:
            return [out]
        head, _found, tail = out.partition(deferred.placeholder.encode("ascii"))
        return [head, deferred.data, tail]

    def _sign(self, holder: list[bytes]) -> bytes:
        # our own serialization, so a plain parse is safe; large responses (getEdoc) need huge mode. The
        # unsigned bytes are released as soon as they are parsed (a getEdoc answer may be ~90 MB).
        parser = etree.XMLParser(huge_tree=True, resolve_entities=False, no_network=True)
        root = etree.fromstring(holder.pop(), parser)
        self.response_signer.sign(root, self.clock())  # type: ignore[union-attr]
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    def _credentials(
        self, envelope: etree._Element, header: etree._Element | None, environ: dict[str, Any]
    ) -> RequestCredentials | None:
        """Who sent the request, as far as the request itself proves: a verified X.509 signature, a
        UsernameToken (checked later against the database), a mutual-TLS client certificate."""
        token = read_credentials(header)
        signed = header is not None and any(
            sec.find(f"{{{DS_NS}}}Signature") is not None
            or sec.find(f"{{{WSSE_NS}}}BinarySecurityToken") is not None
            for sec in header.findall(f"{{{WSSE_NS}}}Security")
        )
        verified = None
        if signed:
            if token is not None:
                raise _envelope_error("send either a signature or a UsernameToken, not both")
            verified = verify_envelope(envelope, at=self.clock(), policy=self.timestamps, keys=self.keys)
        tls = _peer_certificate(environ)
        if token is None and verified is None and tls is None:
            return None
        return RequestCredentials(username_token=token, envelope=verified, tls_certificate=tls)

    def _admit(self, environ: dict[str, Any]) -> bool:
        """Check the request; True means "serve the WSDL", False "hand it to spyne"."""
        method = environ.get("REQUEST_METHOD", "GET").upper()
        query = environ.get("QUERY_STRING", "")
        if method == "GET":
            if query.lower() == "wsdl" and environ.get("PATH_INFO", "/") in ("", "/"):
                return True
            raise errors.MethodNotAllowed(
                "operations are called with POST; the contract is at GET /?wsdl", allow="GET, POST"
            )
        if method != "POST":
            raise errors.MethodNotAllowed(
                f"{method} is not accepted; use POST (or GET /?wsdl)", allow="GET, POST"
            )
        ctype = (environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
        if ctype != "text/xml":
            raise errors.BadContentType(
                f"a SOAP 1.1 request must have Content-Type text/xml, not {ctype or 'none'!r}"
            )
        length_text = environ.get("CONTENT_LENGTH") or ""
        if not length_text.isdigit():
            raise errors.LengthRequired("the request must carry a Content-Length header")
        length = int(length_text)
        if length > self.max_request_bytes:
            raise errors.RequestTooLarge(
                f"the request is {length:,} bytes; this gateway accepts at most {self.max_request_bytes:,}",
                size=length,
                limit=self.max_request_bytes,
            )
        body = _read_exactly(environ["wsgi.input"], length)
        self._slots.acquire()  # released by __call__ once the answer is ready
        environ[ENV_SLOT] = True
        tree = parse_xml(
            body,
            max_bytes=self.max_request_bytes,
            limits=REQUEST_TREE,
            too_large=errors.RequestTooLarge,
            not_xml=errors.RequestNotXml,
            dtd_forbidden=errors.RequestDtdForbidden,
            what="SOAP request",
        )
        header, payload = check_envelope(tree, self.operations)
        environ[ENV_CREDENTIALS] = self._credentials(tree.getroot(), header, environ)
        environ[ENV_TREE] = tree
        environ[ENV_PAYLOAD] = payload
        environ["wsgi.input"] = io.BytesIO(b"")  # spyne works on ENV_TREE, not on a second parse
        environ["CONTENT_LENGTH"] = "0"
        return False

    def _fault(self, start_response: StartResponse, err: errors.LienthongError, cid: str) -> list[bytes]:
        status = {
            405: "405 Method Not Allowed",
            411: "411 Length Required",
            413: "413 Payload Too Large",
            415: "415 Unsupported Media Type",
        }.get(err.http_status, "500 Internal Server Error")
        extra = []
        if err.http_status == 405:
            extra.append(("Allow", "GET, POST"))
        if err.http_status in (411, 413):
            extra.append(("Connection", "close"))
        return self._respond(
            start_response,
            status,
            [("Content-Type", "text/xml; charset=utf-8")],
            [fault_envelope(err, cid)],
            cid,
            extra,
        )


def _peer_certificate(environ: dict[str, Any]) -> bytes | None:
    """The client certificate of a mutual-TLS connection (gunicorn hands the socket to the app)."""
    sock = environ.get("gunicorn.socket")
    getpeercert = getattr(sock, "getpeercert", None)
    if getpeercert is None:
        return None
    try:
        return getpeercert(binary_form=True) or None
    except (ValueError, OSError):
        return None


def _read_exactly(stream: Any, length: int) -> bytes:
    chunks = []
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(remaining, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    if remaining:
        raise errors.RequestNotXml("the request body ended before its Content-Length")
    return b"".join(chunks)
