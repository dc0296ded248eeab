"""Signed requests end to end, over real HTTP on SQLite and PostgreSQL: systems that authenticate only by
their X.509 certificate exchange packets with the reference client; every answer the gateway sends is
signed with its key; and the reference client refuses an answer that is not (or not by that key)."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from gateway import errors, pki
from gateway.core.wssec import EnvelopeSigner, verify_envelope
from gateway.store.models import Delivery, Packet
from lienthong_client import GatewayFault, LienthongClient
from lienthong_client.wsse import UntrustedAnswer
from tests.support import raw, wsforge
from tests.support.packets import new_document, status_for
from tests.support.world import G22, H41

SOAP = raw.SOAP
WSSE = wsforge.WSSE
MISSING_DOC = "5e0c2b1a-0000-4000-8000-000000000000"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def gateway_fingerprint(world) -> str:  # type: ignore[no-untyped-def]
    cert = x509.load_pem_x509_certificate(world.gateway_cert)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


# --- the exchange --------------------------------------------------------------------------------------------


def test_the_whole_exchange_between_signing_systems(world):
    """vpcp-signed (G22) and nghean-signed (H41) have no secret at all: send, inbox, fetch the exact bytes,
    acknowledge, the sender's view, and a status back — every request signed, every answer checked."""
    vpcp, nghean = world.client("vpcp-signed"), world.client("nghean-signed")
    records = world.count("replay_records")
    packet = world.seal(new_document(G22, [H41], subject="Công văn ký số yêu cầu"), G22)

    sent = vpcp.send(packet)
    assert sent.messageType == "edoc" and sent.recipients == [H41] and sent.duplicate is False

    items = [i for i in nghean.inbox("edoc") if i.docId == sent.docId]
    assert len(items) == 1 and getattr(items[0], "from") == G22 and items[0].transportState == "pending"
    assert items[0].subject == "Công văn ký số yêu cầu"
    fetched = nghean.fetch(sent.docId)
    assert fetched.content == packet and fetched.sha256 == hashlib.sha256(packet).hexdigest()
    nghean.ack(sent.docId, "done")
    assert sent.docId not in [i.docId for i in nghean.inbox("edoc")]

    row = vpcp.sent(sent.docId)[0]
    assert row.recipient == H41 and row.transportState == "done"
    assert row.deliveredAt is not None and row.acknowledgedAt is not None

    answer = nghean.send(status_for(packet, H41, "03", "Đã vào sổ"))
    assert answer.messageType == "status" and answer.recipients == [G22]
    statuses = [i for i in vpcp.inbox("status") if i.docId == answer.docId]
    assert statuses and statuses[0].statusCode == "03" and getattr(statuses[0], "from") == H41
    assert vpcp.fetch(answer.docId).content.startswith(b"<?xml")
    vpcp.ack(answer.docId, "done")
    assert vpcp.sent(sent.docId)[0].businessStatus == "03"

    # the database knows which system did what, by certificate
    with world.db.unit_of_work() as session:
        stored = session.execute(select(Packet).where(Packet.doc_id == sent.docId)).scalar_one()
        assert stored.sender_system == "vpcp-signed"
        delivery = session.execute(select(Delivery).where(Delivery.packet_id == stored.id)).scalar_one()
        assert delivery.acked_by == "nghean-signed"
    # every one of those 11 calls was signed anew and recorded once
    assert world.count("replay_records") == records + 11


def test_a_signing_system_cannot_act_for_another(world):
    """The reference client of nghean-signed cannot fetch what was sent to G22, nor send as G22."""
    sent = world.client("nghean-signed").send(world.seal(new_document(H41, [G22]), H41))
    with pytest.raises(GatewayFault) as caught:
        world.client("nghean-signed").fetch(sent.docId)
    assert caught.value.code == "Client.Access.NotAddressee"
    assert world.client("vpcp-signed").fetch(sent.docId).doc_id == sent.docId


# --- every answer is signed ------------------------------------------------------------------------------------


def _signed_by_gateway(world, reply: raw.Reply) -> None:  # type: ignore[no-untyped-def]
    root = wsforge.parse(reply.body)
    verified = verify_envelope(root, at=utcnow())
    assert verified.fingerprint == gateway_fingerprint(world)
    assert verified.body is root.find(f"{{{SOAP}}}Body")
    security = root.find(f"{{{SOAP}}}Header/{{{WSSE}}}Security")
    assert security.get(f"{{{SOAP}}}mustUnderstand") is None  # answers leave mustUnderstand off


def test_every_answer_is_signed_by_the_gateway(world):
    """Successes and faults, from the operations and from the guard (before any SOAP processing), for signed
    and UsernameToken requests alike: each answer verifies with gateway.core.wssec.verify_envelope and is
    signed by the gateway's own certificate."""
    key = world.pki.systems["vpcp-signed"]
    other = world.pki.systems["nghean-signed"]
    ut = raw.security_header("vpcp", world.secrets["vpcp"])
    packet = world.seal(new_document(G22, [H41]), G22)

    def signed(payload: str, issued: pki.Issued = key, **kw) -> bytes:  # type: ignore[no-untyped-def]
        return wsforge.forge(payload, issued.key_pem, issued.cert_pem, **kw)

    sent = raw.post(world.url, signed(raw.send_edoc_payload(packet)))
    doc_id = wsforge.parse(sent.body).findtext(f".//{{{raw.TNS}}}docId")
    assert sent.status == 200 and doc_id
    cases: list[tuple[str, Callable[[], raw.Reply], int, str | None]] = [
        ("sendEdoc", lambda: sent, 200, None),
        ("getAgenciesList", lambda: raw.post(world.url, signed("<tns:getAgenciesList/>")), 200, None),
        (
            "getEdoc (the packet, base64)",
            lambda: raw.post(
                world.url, signed(f"<tns:getEdoc><tns:docId>{doc_id}</tns:docId></tns:getEdoc>", other)
            ),
            200,
            None,
        ),
        ("UsernameToken", lambda: raw.post(world.url, raw.envelope("<tns:getAgenciesList/>", ut)), 200, None),
        (
            "operation fault",
            lambda: raw.post(
                world.url, signed(f"<tns:getEdoc><tns:docId>{MISSING_DOC}</tns:docId></tns:getEdoc>")
            ),
            500,
            "Client.Doc.NotFound",
        ),
        (
            "authentication fault",
            lambda: raw.post(
                world.url, raw.envelope("<tns:getAgenciesList/>", raw.security_header("vpcp", "x" * 43))
            ),
            500,
            "Client.Auth.InvalidCredentials",
        ),
        (
            "signature fault",
            lambda: raw.post(
                world.url, signed("<tns:getAgenciesList/>", created=utcnow() - dt.timedelta(hours=1))
            ),
            500,
            "Client.Security.TimestampExpired",
        ),
        ("not XML", lambda: raw.post(world.url, b"<soapenv:Envelope"), 500, "Client.Request.NotXml"),
        (
            "DOCTYPE",
            lambda: raw.post(world.url, b"<!DOCTYPE x []>" + raw.envelope("<tns:getAgenciesList/>", ut)[38:]),
            500,
            "Client.Request.DtdForbidden",
        ),
        (
            "content type",
            lambda: raw.post(
                world.url, raw.envelope("<tns:getAgenciesList/>", ut), content_type="text/plain"
            ),
            415,
            "Client.Request.BadContentType",
        ),
        (
            "method",
            lambda: raw.parse_reply(requests.put(world.url, data=b"x", timeout=30)),
            405,
            "Client.Request.MethodNotAllowed",
        ),
        (
            "too large",
            lambda: raw.post(
                world.url, raw.envelope("<tns:getAgenciesList/>", ut + "<x>" + "y" * 1_000_000 + "</x>")
            ),
            413,
            "Client.Request.TooLarge",
        ),
    ]
    for name, call, status, code in cases:
        reply = call()
        assert reply.status == status, (name, reply.status, reply.body[:300])
        if code is not None:
            assert reply.code == code, (name, reply.code)
        elif status == 200:
            assert reply.code is None, (name, reply.code, reply.message)
        try:
            _signed_by_gateway(world, reply)
        except Exception as exc:
            raise AssertionError(f"{name}: the answer is not signed by the gateway: {exc}") from exc
    # the answer to a GET of the contract is the WSDL, not a SOAP message: it is not signed
    assert b"wsse:Security" not in requests.get(world.url + "?wsdl", timeout=30).content


def test_an_answer_changed_after_signing_no_longer_verifies(world):
    """The check above can fail: one character of a real, signed answer changed, or its signature moved to
    another key, and verify_envelope (or the fingerprint) says so."""
    key = world.pki.systems["vpcp-signed"]
    reply = raw.post(world.url, wsforge.forge("<tns:getAgenciesList/>", key.key_pem, key.cert_pem))
    _signed_by_gateway(world, reply)
    changed = raw.Reply(200, one_character_changed(reply.body), None, None, None, {})
    with pytest.raises(errors.RequestSignatureInvalid):
        _signed_by_gateway(world, changed)
    impostor = raw.Reply(200, resigned(reply.body, impostor_signer()), None, None, None, {})
    with pytest.raises(AssertionError):
        _signed_by_gateway(world, impostor)


# --- the reference client refuses untrusted answers -------------------------------------------------------------


def one_character_changed(answer: bytes) -> bytes:
    """``answer`` with one byte of a text in its Body changed (the first text that starts with a letter or a
    digit), nothing else touched."""
    root = wsforge.parse(answer)
    body = root.find(f"{{{SOAP}}}Body")
    start = answer.index(b":Body")
    for el in body.iter():
        text = el.text or ""
        if isinstance(el.tag, str) and text[:6].isascii() and text[:1].isalnum() and len(text) >= 6:
            at = answer.index(b">" + text[:6].encode(), start) + 1
            old = answer[at : at + 1]
            new = b"Z" if old != b"Z" else b"Y"
            changed = answer[:at] + new + answer[at + 1 :]
            assert sum(a != b for a, b in zip(answer, changed, strict=True)) == 1
            return changed
    raise AssertionError("no text to change in the answer's Body")


def strip_security(answer: bytes) -> bytes:
    root = wsforge.parse(answer)
    for security in root.iter(f"{{{WSSE}}}Security"):
        security.getparent().remove(security)
    assert b"Security" not in wsforge.serialize(root)
    return wsforge.serialize(root)


def resigned(answer: bytes, signer: EnvelopeSigner, at: dt.datetime | None = None) -> bytes:
    """``answer`` with its Security header replaced by one made by ``signer`` (at ``at``)."""
    root = wsforge.parse(strip_security(answer))
    signer.sign(root, at or utcnow())
    return wsforge.serialize(root)


def impostor_signer() -> EnvelopeSigner:
    """A self-signed certificate with the very subject of the gateway's test certificate, another key."""
    issued = pki.make_self_signed("gateway", "lienthong gateway — TEST KEY, NOT FOR PRODUCTION")
    return EnvelopeSigner(key_pem=issued.key_pem, cert_pem=issued.cert_pem, must_understand=False)


class _Proxy:
    """A tiny HTTP server on 127.0.0.1 in front of the gateway: it serves the gateway's WSDL with its own
    address, forwards every POST to the gateway and hands back the answer after ``self.mode`` changed it."""

    def __init__(self, world) -> None:  # type: ignore[no-untyped-def]
        self.world = world
        self.mode: Callable[[bytes], bytes] = lambda answer: answer
        self.answers: list[tuple[int, bytes]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.endswith("?wsdl"):
                    self._send(200, proxy.wsdl)
                else:
                    self._send(404, b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() in ("content-type", "soapaction")
                }
                resp = requests.post(proxy.world.url, data=body, headers=headers, timeout=30)
                answer = proxy.mode(resp.content)
                proxy.answers.append((resp.status_code, answer))
                self._send(resp.status_code, answer)

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        wsdl = requests.get(world.url + "?wsdl", timeout=30).content
        assert world.url.encode() in wsdl, "the gateway's WSDL names its own address"
        self.wsdl = wsdl.replace(world.url.encode(), self.url.encode())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def proxied(world) -> Iterator[tuple[_Proxy, LienthongClient, LienthongClient]]:  # type: ignore[no-untyped-def]
    """The proxy, a signing client and a UsernameToken client (both pinning the gateway's certificate)."""
    key = world.pki.systems["vpcp-signed"]
    with _Proxy(world) as proxy:
        signing = LienthongClient(
            proxy.url,
            "vpcp-signed",
            None,
            timeout=30,
            request_key=(key.key_pem, key.cert_pem),
            gateway_cert=world.gateway_cert,
        )
        username = LienthongClient(
            proxy.url, "vpcp", world.secrets["vpcp"], timeout=30, gateway_cert=world.gateway_cert
        )
        yield proxy, signing, username


def test_the_reference_client_refuses_unsigned_or_wrongly_signed_answers(world):
    """The client verifies the answer's signature *before* it looks for a fault: zeep calls the wsse plugin's
    ``verify`` (lienthong_client.wsse.SignedRequests.verify) on the parsed answer first, and only then finds
    soap:Fault in the Body. So an unsigned or wrongly signed fault is ``UntrustedAnswer``, never a
    ``GatewayFault`` the caller would act on.

    Through a proxy that hands back the gateway's real answers: unchanged (accepted: the setup works), with
    the Security header stripped, with one character of the Body changed, signed by another key (with the
    gateway certificate's very subject), and re-signed by the gateway's own key (accepted: re-signing works,
    so the other key is what is refused) or by it an hour ago (a replayed answer)."""
    gateway_key = (world.data_dir / "gateway-key.pem").read_bytes()
    gateway = EnvelopeSigner(key_pem=gateway_key, cert_pem=world.gateway_cert, must_understand=False)
    with proxied(world) as (proxy, signing, username):
        # unchanged: answers and faults come through as usual
        assert any(a.code == H41 for a in signing.agencies())
        for client in (signing, username):
            with pytest.raises(GatewayFault) as caught:
                client.fetch(MISSING_DOC)
            assert caught.value.code == "Client.Doc.NotFound"
        proxy.mode = lambda answer: resigned(answer, gateway)
        assert any(a.code == H41 for a in signing.agencies())
        with pytest.raises(GatewayFault):
            signing.fetch(MISSING_DOC)

        impostor = impostor_signer()
        modes = {
            "unsigned": (strip_security, "no WS-Security header"),
            "one character changed": (one_character_changed, "does not verify"),
            "another key": (lambda answer: resigned(answer, impostor), "not by the gateway certificate"),
            "an hour old": (
                lambda answer: resigned(answer, gateway, utcnow() - dt.timedelta(hours=1)),
                "expired",
            ),
        }
        for name, (mode, reason) in modes.items():
            proxy.mode = mode
            proxy.answers.clear()
            for client in (signing, username):
                with pytest.raises(UntrustedAnswer, match=reason):
                    client.agencies()
                # a fault answer: still refused for its signature, before the fault is read
                with pytest.raises(UntrustedAnswer, match=reason):
                    client.fetch(MISSING_DOC)
            statuses = [status for status, _ in proxy.answers]
            assert statuses == [200, 500, 200, 500], (name, statuses)
            assert all(b"Client.Doc.NotFound" in answer for _, answer in proxy.answers[1::2]), name
