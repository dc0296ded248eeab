"""The reference client: a zeep client for the gateway with safe settings.

Safe means: the WSDL and every response are parsed with no DTD, no entity expansion and no external loads
(``forbid_dtd``, ``forbid_entities``, ``forbid_external``), every HTTP call has an explicit timeout, and
faults come back as :class:`GatewayFault` with the gateway's stable code and correlation id.

Usage::

    from lienthong_client import LienthongClient
    client = LienthongClient("https://axis.example/", "vpcp-edoc", secret)
    result = client.send(Path("doc.edxml").read_bytes())
    for item in client.inbox("edoc"):
        data = client.fetch(item.docId)
        ...
        client.ack(item.docId)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from typing import Any

import requests
import zeep
from lxml import etree
from zeep.exceptions import Fault, TransportError
from zeep.wsse.compose import Compose
from zeep.wsse.username import UsernameToken

from lienthong_client.seals import SealChecker, Signer, is_signed
from lienthong_client.wsse import SignedRequests, UntrustedAnswer

FAULT_NS = "urn:lienthong:axis:1"
DEFAULT_TIMEOUT = 60.0


class GatewayFault(Exception):
    """A fault the gateway sent: ``code`` (e.g. ``Client.Packet.SchemaInvalid``), message, correlation id."""

    def __init__(self, code: str, message: str, correlation_id: str | None) -> None:
        super().__init__(
            f"{code}: {message}" + (f" [correlation id {correlation_id}]" if correlation_id else "")
        )
        self.code = code
        self.message = message
        self.correlation_id = correlation_id


class GatewayUnreachable(Exception):
    """The gateway could not be reached or answered something that is not SOAP."""


@dataclasses.dataclass(frozen=True)
class FetchedPacket:
    doc_id: str
    message_type: str
    sha256: str
    content: bytes


def _fault_from_zeep(exc: Fault) -> GatewayFault:
    code = (exc.code or "").split(":", 1)[-1] or "Server"
    message = exc.message or ""
    correlation_id = None
    detail = exc.detail
    if detail is not None:
        fault = detail.find(f"{{{FAULT_NS}}}LienthongFault")
        if fault is not None:
            code = fault.findtext(f"{{{FAULT_NS}}}code") or code
            message = fault.findtext(f"{{{FAULT_NS}}}message") or message
            correlation_id = fault.findtext(f"{{{FAULT_NS}}}correlationId")
    return GatewayFault(code, message, correlation_id)


def _items(result: Any, name: str) -> list[Any]:
    """zeep hands back an array either flattened to a list or as its wrapper object."""
    if result is None:
        return []
    if isinstance(result, list):
        return result
    return list(getattr(result, name, None) or [])


def safe_settings() -> zeep.Settings:
    return zeep.Settings(
        strict=True,
        xml_huge_tree=True,  # fetched packets may be large base64 texts; DTDs and entities stay forbidden
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
        xsd_ignore_sequence_order=False,
    )


class LienthongClient:
    """One connected system talking to one gateway."""

    def __init__(
        self,
        endpoint: str,
        system_id: str,
        secret: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        wsdl: str | None = None,
        verify: bool | str = True,
        session: requests.Session | None = None,
        signer: Signer | None = None,
        checker: SealChecker | None = None,
        request_key: tuple[bytes, bytes] | None = None,
        gateway_cert: bytes | None = None,
        client_cert: tuple[str, str] | None = None,
    ) -> None:
        """``signer`` seals every packet sent (unless already sealed); ``checker`` checks the seal of
        every packet fetched and raises :class:`~lienthong_client.seals.SealRejected` if it fails.

        ``request_key`` (key PEM, certificate PEM) signs every request (WS-Security X.509), in place of the
        UsernameToken made from ``secret``; ``gateway_cert`` (PEM) pins the gateway's certificate: every
        answer must be signed with it, or :class:`~lienthong_client.wsse.UntrustedAnswer` is raised."""
        self.signer = signer
        self.checker = checker
        self.gateway_cert = gateway_cert
        self.endpoint = endpoint if endpoint.endswith("/") else endpoint + "/"
        self.system_id = system_id
        http = session or requests.Session()
        http.verify = verify  # True, or the CA file that issued the gateway's TLS certificate
        if isinstance(verify, str):
            # requests lets $REQUESTS_CA_BUNDLE override a session's CA file; an explicit choice must win.
            # Proxies from the environment still apply.
            http.trust_env = False
            http.proxies.update(requests.utils.get_environ_proxies(self.endpoint))
        if client_cert is not None:  # (certificate file, key file) for mutual TLS
            http.cert = client_cert
        transport = zeep.Transport(session=http, timeout=timeout, operation_timeout=timeout)
        try:
            self._zeep = zeep.Client(
                wsdl or self.endpoint + "?wsdl",
                settings=safe_settings(),
                transport=transport,
                wsse=self._wsse(system_id, secret, request_key, gateway_cert),
            )
        except (requests.RequestException, TransportError) as exc:
            raise GatewayUnreachable(
                f"cannot read the gateway's WSDL at {self.endpoint}?wsdl: {exc}"
            ) from exc
        # Call the gateway at the address we were given, whatever address the WSDL names.
        self.service = self._zeep.create_service(f"{{{FAULT_NS}}}{self._binding_name()}", self.endpoint)

    @staticmethod
    def _wsse(
        system_id: str,
        secret: str | None,
        request_key: tuple[bytes, bytes] | None,
        gateway_cert: bytes | None,
    ) -> object:
        if request_key is not None:
            return SignedRequests(request_key[0], request_key[1], gateway_cert)
        if secret is None:  # the TLS client certificate alone identifies this system
            return SignedRequests(b"", b"", gateway_cert) if gateway_cert is not None else None
        if gateway_cert is not None:
            return Compose([UsernameToken(system_id, secret), SignedRequests(b"", b"", gateway_cert)])
        return UsernameToken(system_id, secret)

    def _binding_name(self) -> str:
        for binding in self._zeep.wsdl.bindings:
            return etree.QName(binding).localname
        raise GatewayUnreachable("the WSDL declares no binding")

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.service, operation)(**{k: v for k, v in kwargs.items() if v is not None})
        except Fault as exc:
            raise _fault_from_zeep(exc) from None
        except UntrustedAnswer:
            raise
        except (requests.RequestException, TransportError) as exc:
            raise GatewayUnreachable(f"{operation}: the gateway did not answer properly: {exc}") from exc

    # --- operations -----------------------------------------------------------------------------------

    def send(self, packet: bytes, *, sign: bool = True) -> Any:
        """sendEdoc: returns an object with docId, messageType, recipients, duplicate.

        With a signer, an unsigned packet is sealed first (``sign=False`` sends the bytes as they are)."""
        if sign and self.signer is not None and not is_signed(packet):
            packet = self.signer.sign(packet)
        result = self._call("sendEdoc", packet=packet)
        result.recipients = _items(result.recipients, "organId")
        result.sent = packet  # the exact bytes sent (sealed here, if they were)
        result.receipt = bytes(result.receipt) if result.receipt is not None else None
        result.receipt_facts = None
        if result.receipt is not None and self.gateway_cert is not None:
            from lienthong_client.receipts import ReceiptRejected, check_receipt

            try:
                # a duplicate is answered with the first packet's receipt (an idempotent status may differ
                # in its bytes): then only its signature is checked here
                result.receipt_facts = check_receipt(
                    result.receipt,
                    self.gateway_cert,
                    None if result.duplicate else packet,
                    doc_id=result.docId,
                    kind="submission",
                )
            except ReceiptRejected as exc:
                raise GatewayFault("Client.Local.ReceiptRejected", str(exc), None) from None
        return result

    def receipts(self, doc_id: str, packet: bytes | None = None) -> list[bytes]:
        """getReceipts: the gateway's signed receipts about a packet, each checked against the pinned
        gateway certificate (and, given the packet's bytes, its digest)."""
        result = self._call("getReceipts", docId=doc_id)
        receipts = [bytes(r) for r in _items(result, "receipt")]
        if self.gateway_cert is not None:
            from lienthong_client.receipts import ReceiptRejected, check_receipt

            for receipt in receipts:
                try:
                    check_receipt(receipt, self.gateway_cert, packet, doc_id=doc_id)
                except ReceiptRejected as exc:
                    raise GatewayFault("Client.Local.ReceiptRejected", str(exc), None) from None
        return receipts

    def inbox(
        self, message_type: str = "edoc", from_date: dt.date | None = None, to_date: dt.date | None = None
    ) -> list[Any]:
        """getReceivedEdocList: pending packets for the caller's agencies, oldest first."""
        result = self._call(
            "getReceivedEdocList", messageType=message_type, fromDate=from_date, toDate=to_date
        )
        return _items(result, "ReceivedEdoc")

    def fetch(self, doc_id: str, *, check_seal: bool = True) -> FetchedPacket:
        """getEdoc: the packet's exact bytes, checked against the SHA-256 the gateway announced and, with a
        checker, its seal checked against this client's own trust anchors."""
        result = self._call("getEdoc", docId=doc_id)
        content = bytes(result.packet)
        if hashlib.sha256(content).hexdigest() != result.sha256:
            raise GatewayFault(
                "Client.Local.DigestMismatch", f"packet {doc_id} arrived damaged (SHA-256 mismatch)", None
            )
        if check_seal and self.checker is not None:
            self.checker.check(content)
        return FetchedPacket(result.docId, result.messageType, result.sha256, content)

    def ack(self, doc_id: str, status: str = "done", reason: str | None = None) -> Any:
        """updateStatus: processing, done (stored) or fail (with a reason)."""
        return self._call("updateStatus", docId=doc_id, status=status, reason=reason)

    def sent(
        self,
        doc_id: str | None = None,
        message_type: str | None = None,
        from_date: dt.date | None = None,
        to_date: dt.date | None = None,
        limit: int | None = None,
        before_doc_id: str | None = None,
    ) -> list[Any]:
        """getSentEdocList: one entry per recipient of the caller's sent packets, newest first; ``limit``
        packets per page (gateway default 50), the next page with ``before_doc_id`` = the last docId."""
        result = self._call(
            "getSentEdocList",
            docId=doc_id,
            messageType=message_type,
            fromDate=from_date,
            toDate=to_date,
            limit=limit,
            beforeDocId=before_doc_id,
        )
        return _items(result, "SentEdoc")

    def trace(self, doc_id: str) -> Any:
        """getTrace: the packet's life (recipients' states and events, oldest first) as this caller may
        see it."""
        result = self._call("getTrace", docId=doc_id)
        result.successors = _items(result.successors, "docId")
        result.recipients = _items(result.recipients, "SentEdoc")
        result.events = _items(result.events, "TraceEvent")
        return result

    def overdue(self, from_date: dt.date | None = None, to_date: dt.date | None = None) -> list[Any]:
        """getOverdueList: recipients of the caller's documents that missed the same-day rule."""
        return _items(self._call("getOverdueList", fromDate=from_date, toDate=to_date), "OverdueEdoc")

    def agencies(self, text_filter: str | None = None) -> list[Any]:
        result = self._call("getAgenciesList", filter=text_filter)
        return _items(result, "AgencyEntry")

    def register_agency(
        self,
        code: str,
        name: str,
        parent_code: str | None = None,
        email: str | None = None,
        old_code: str | None = None,
    ) -> Any:
        return self._call(
            "registerAgency", code=code, name=name, parentCode=parent_code, email=email, oldCode=old_code
        )

    def delete_agency(self, code: str) -> Any:
        return self._call("deleteAgency", code=code)
