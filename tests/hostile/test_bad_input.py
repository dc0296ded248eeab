"""Bad input: each gets its own fault code and a correlation id, the database is exactly as before, and
the server keeps serving. Runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import os

import pytest
import requests

from tests.conftest import DATA, MAX_PACKET
from tests.support import raw
from tests.support.packets import new_document, status_for
from tests.support.refusals import refused, still_serving
from tests.support.world import G22, H41, H49, K41


def refused_raw(world, body: bytes, code: str, *, status: int | None = None, **kw) -> raw.Reply:
    before, audit_head = world.snapshot(), world.audit_head()
    reply = raw.post(world.url, body, **kw)
    assert reply.code == code, (reply.status, reply.body[:500])
    added = [(e["event"], e["code"], e["correlationId"]) for e in world.audit_entries(audit_head)]
    assert added == [("refused", code, reply.correlation_id)], added
    if status is not None:
        assert reply.status == status
    assert reply.correlation_id and reply.headers.get("X-Correlation-Id") == reply.correlation_id
    assert world.snapshot() == before
    still_serving(world)
    return reply


# --- the packet -----------------------------------------------------------------------------------------


def test_bytes_that_are_not_xml(world):
    fault = refused(
        world,
        lambda: world.client("vpcp").send(b"%PDF-1.7 this is not xml", sign=False),
        "Client.Packet.NotXml",
    )
    assert "well-formed" in fault.message


@pytest.mark.parametrize(
    "name", ["dtd_internal_entity.edxml", "dtd_xxe_file.edxml", "dtd_billion_laughs.edxml"]
)
def test_doctype_or_entity(world, name):
    data = (DATA / "invalid" / name).read_bytes()
    fault = refused(world, lambda: world.client("vpcp").send(data, sign=False), "Client.Packet.DtdForbidden")
    assert "root:" not in fault.message  # /etc/passwd was never read


def test_packet_over_the_size_limit(world):
    # an attachment that makes the packet larger than the limit, while the SOAP request stays under its own
    big = new_document(G22, [H41], attachments=[("big.bin", "application/octet-stream", os.urandom(420_000))])
    assert MAX_PACKET < len(big) < MAX_PACKET * 1.3
    fault = refused(world, lambda: world.client("vpcp").send(big), "Client.Packet.TooLarge")
    assert f"{MAX_PACKET:,}" in fault.message


def test_xml_that_is_not_edxml(world):
    data = (DATA / "invalid" / "notedxml_soap_envelope.edxml").read_bytes()
    refused(world, lambda: world.client("vpcp").send(data, sign=False), "Client.Packet.NotEdxml")


def test_schema_invalid_edxml_names_element_and_line(world):
    data = (DATA / "invalid" / "schema_subject_too_long.edxml").read_bytes()
    fault = refused(world, lambda: world.client("vpcp").send(data), "Client.Packet.SchemaInvalid")
    assert "Subject" in fault.message and "line" in fault.message


def test_missing_required_part_is_a_schema_fault(world):
    data = (DATA / "invalid" / "py_no_to.edxml").read_bytes()
    fault = refused(world, lambda: world.client("vpcp").send(data), "Client.Packet.SchemaInvalid")
    assert "To" in fault.message


# --- routing --------------------------------------------------------------------------------------------


def test_unknown_recipient(world):
    packet = new_document(G22, [H41, "000.00.00.X99"])
    fault = refused(world, lambda: world.client("vpcp").send(packet), "Client.Routing.UnknownRecipient")
    assert "000.00.00.X99" in fault.message


def test_inactive_recipient(world):
    packet = new_document(G22, [H41, K41])
    fault = refused(world, lambda: world.client("vpcp").send(packet), "Client.Routing.InactiveRecipient")
    assert K41 in fault.message


def test_sender_agency_the_caller_may_not_act_for(world):
    packet = new_document(G22, [H41])
    refused(world, lambda: world.client("nghean").send(packet), "Client.Auth.SenderNotAllowed")


def test_status_for_a_document_the_sender_never_received(world):
    document = new_document(G22, [H41])
    world.client("vpcp").send(document)
    status = status_for(document, H49, "03", "ok")  # H49 was not an addressee
    refused(world, lambda: world.client("quangninh").send(status), "Client.Routing.StatusForUnknownDocument")
    # and one about a document that does not exist at all
    ghost = status_for(new_document(G22, [H41]), H41, "01")
    refused(world, lambda: world.client("nghean").send(ghost), "Client.Routing.StatusForUnknownDocument")


def test_same_document_id_with_different_bytes(world):
    document = new_document(G22, [H41])
    world.client("vpcp").send(document)
    changed = document.replace("Công văn thử nghiệm".encode(), "Công văn đã sửa".encode())
    assert changed != document
    fault = refused(world, lambda: world.client("vpcp").send(changed), "Client.Packet.DuplicateDocumentId")
    assert "BussinessDocType" in fault.message


# --- identity and access --------------------------------------------------------------------------------


def test_wrong_secret(world):
    bad = world.client("vpcp", secret="x" * 43)
    refused(world, lambda: bad.send(new_document(G22, [H41])), "Client.Auth.InvalidCredentials")


def test_unknown_system(world):
    from lienthong_client import LienthongClient

    stranger = LienthongClient(world.url, "stranger", "y" * 43, timeout=30)
    refused(world, lambda: stranger.agencies(), "Client.Auth.InvalidCredentials")


def test_missing_credentials(world):
    packet = new_document(G22, [H41])
    refused_raw(world, raw.envelope(raw.send_edoc_payload(packet)), "Client.Auth.MissingCredentials")


def test_credentials_are_checked_before_the_packet(world):
    bad = world.client("vpcp", secret="z" * 43)
    refused(world, lambda: bad.send(b"not even xml", sign=False), "Client.Auth.InvalidCredentials")


def test_another_agencys_packet(world):
    sent = world.client("vpcp").send(new_document(G22, [H41]))
    quangninh = world.client("quangninh")
    refused(world, lambda: quangninh.fetch(sent.docId), "Client.Access.NotAddressee")
    refused(world, lambda: quangninh.ack(sent.docId, "done"), "Client.Access.NotAddressee")
    # the sender itself is not an addressee either
    refused(world, lambda: world.client("vpcp").fetch(sent.docId), "Client.Access.NotAddressee")


def test_unknown_doc_id(world):
    nghean = world.client("nghean")
    refused(world, lambda: nghean.fetch("5e0c2b1a-0000-4000-8000-000000000000"), "Client.Doc.NotFound")
    refused(world, lambda: nghean.ack("no-such-doc", "done"), "Client.Doc.NotFound")


def test_bad_arguments(world):
    nghean = world.client("nghean")
    sent = world.client("vpcp").send(new_document(G22, [H41]))
    refused(world, lambda: nghean.ack(sent.docId, "archived"), "Client.Request.InvalidArgument")
    refused(world, lambda: nghean.inbox("letters"), "Client.Request.InvalidArgument")


def test_directory_changes_need_an_administrator(world):
    refused(
        world, lambda: world.client("vpcp").register_agency("000.00.00.H98", "X"), "Client.Auth.AdminRequired"
    )
    refused(world, lambda: world.client("vpcp").delete_agency(H41), "Client.Auth.AdminRequired")
    refused(world, lambda: world.client("admin").delete_agency("000.00.00.Q00"), "Client.Agency.NotFound")


# --- the request itself (the guard) ---------------------------------------------------------------------


def test_request_not_xml(world):
    refused_raw(world, b"<soapenv:Envelope", "Client.Request.NotXml")


def test_request_with_doctype(world):
    body = (
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        + raw.envelope("<tns:getAgenciesList/>")[38:]
    )
    refused_raw(world, body, "Client.Request.DtdForbidden")


def test_request_over_the_limit_is_refused_before_reading(world):
    # Announce a body far over the limit and send only a little: the guard answers from the header.
    import http.client

    before = world.snapshot()
    conn = http.client.HTTPConnection("127.0.0.1", world.gateway.port, timeout=10)
    conn.putrequest("POST", "/")
    conn.putheader("Content-Type", "text/xml")
    conn.putheader("Content-Length", str(50 * 1024 * 1024))
    conn.endheaders()
    conn.send(b"<soapenv:Envelope>")  # 50 MB announced, 18 bytes sent: the answer cannot wait for the body
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 413
    assert b"Client.Request.TooLarge" in body and resp.getheader("X-Correlation-Id")
    assert world.snapshot() == before
    still_serving(world)


def test_wrong_content_type(world):
    refused_raw(
        world,
        raw.envelope("<tns:getAgenciesList/>"),
        "Client.Request.BadContentType",
        status=415,
        content_type="application/json",
    )


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_methods_other_than_post(world, method):
    before = world.snapshot()
    reply = raw.parse_reply(requests.request(method, world.url, data=b"<x/>", timeout=10))
    assert reply.status == 405 and reply.code == "Client.Request.MethodNotAllowed"
    assert world.snapshot() == before
    get = raw.parse_reply(requests.get(world.url, timeout=10))
    assert get.status == 405 and get.code == "Client.Request.MethodNotAllowed"


def test_two_bodies_or_two_payloads(world):
    sec = raw.security_header("vpcp", world.secrets["vpcp"])
    two_payloads = raw.envelope("<tns:getAgenciesList/><tns:getAgenciesList/>", sec)
    refused_raw(world, two_payloads, "Client.Request.MalformedEnvelope")
    one = raw.envelope("<tns:getAgenciesList/>", sec).decode()
    two_bodies = one.replace(
        "</soapenv:Body>", "</soapenv:Body><soapenv:Body><tns:getAgenciesList/></soapenv:Body>"
    )
    refused_raw(world, two_bodies.encode(), "Client.Request.MalformedEnvelope")


def test_soap_encoding_references(world):
    sec = raw.security_header("vpcp", world.secrets["vpcp"])
    body = raw.envelope('<tns:getEdoc><tns:docId href="#x"/></tns:getEdoc>', sec)
    refused_raw(world, body, "Client.Request.MalformedEnvelope")


def test_a_valid_raw_request_works(world):
    """The hand-made requests above are refused for their fault, not for how they are made."""
    sec = raw.security_header("vpcp", world.secrets["vpcp"])
    packet = world.seal((DATA / "valid" / "edoc_new.edxml").read_bytes(), G22)
    reply = raw.post(world.url, raw.envelope(raw.send_edoc_payload(packet), sec))
    assert reply.status == 200 and reply.code is None, reply.body[:500]
    assert b"docId" in reply.body


# --- found in review ------------------------------------------------------------------------------------


def test_comment_or_pi_in_the_body(world):
    sec = raw.security_header("vpcp", world.secrets["vpcp"])
    for junk in ("<!-- hi -->", "<?php echo 1; ?>"):
        refused_raw(
            world, raw.envelope(junk + "<tns:getAgenciesList/>", sec), "Client.Request.MalformedEnvelope"
        )


def test_payload_outside_the_service_namespace_or_with_unknown_parameters(world):
    sec = raw.security_header("vpcp", world.secrets["vpcp"])
    refused_raw(world, raw.envelope("<getAgenciesList/>", sec), "Client.Request.UnknownOperation")
    refused_raw(world, raw.envelope("<tns:dropTables/>", sec), "Client.Request.UnknownOperation")
    refused_raw(
        world,
        raw.envelope("<tns:getAgenciesList><tns:evil>1</tns:evil></tns:getAgenciesList>", sec),
        "Client.Request.MalformedEnvelope",
    )


def test_ambiguous_credentials(world):
    good = raw.security_header("vpcp", world.secrets["vpcp"])
    two_users = good.replace(
        "<wsse:Username>vpcp</wsse:Username>",
        "<wsse:Username>vpcp</wsse:Username><wsse:Username>nghean</wsse:Username>",
    )
    refused_raw(world, raw.envelope("<tns:getAgenciesList/>", two_users), "Client.Request.MalformedEnvelope")
    two_tokens = good.replace(
        "</wsse:Security>", good.split(">", 1)[1].replace("</wsse:Security>", "") + "</wsse:Security>"
    )
    refused_raw(world, raw.envelope("<tns:getAgenciesList/>", two_tokens), "Client.Request.MalformedEnvelope")
    padded = raw.security_header("  vpcp\n", world.secrets["vpcp"])
    refused_raw(world, raw.envelope("<tns:getAgenciesList/>", padded), "Client.Auth.InvalidCredentials")


def test_a_bare_ampersand_is_malformed_xml(world):
    packet = new_document(G22, [H41]).replace(b"</Subject>", b" &amp; B</Subject>").replace(b"&amp;", b"&")
    fault = refused(world, lambda: world.client("vpcp").send(packet, sign=False), "Client.Packet.NotXml")
    assert "well-formed" in fault.message


def test_too_many_recipients(world):
    header = new_document(G22, [H41])
    many = b"".join(b"<To><OrganId>000.00.00.H41</OrganId></To>" for _ in range(5001))
    packet = header.replace(b"<DocumentId>", many + b"<DocumentId>", 1)
    fault = refused(world, lambda: world.client("vpcp").send(packet), "Client.Packet.SchemaInvalid")
    assert "To" in fault.message


def test_an_inactive_agency_may_not_send(world):
    from gateway.store.models import Agency

    with world.db.unit_of_work(write=True) as session:
        session.get(Agency, H49).active = False
        session.commit()
    try:
        refused(
            world,
            lambda: world.client("quangninh").send(new_document(H49, [H41])),
            "Client.Auth.InactiveSender",
        )
    finally:
        with world.db.unit_of_work(write=True) as session:
            session.get(Agency, H49).active = True
            session.commit()


def test_done_is_final_and_reasons_are_bounded(world):
    sent = world.client("vpcp").send(new_document(G22, [H41]))
    nghean = world.client("nghean")
    refused(world, lambda: nghean.ack(sent.docId, "fail", "x" * 501), "Client.Request.InvalidArgument")
    nghean.ack(sent.docId, "done")
    refused(world, lambda: nghean.ack(sent.docId, "fail", "too late"), "Client.Request.InvalidArgument")
    nghean.ack(sent.docId, "done")  # acknowledging twice is harmless
    row = world.client("vpcp").sent(sent.docId)[0]
    assert row.transportState == "done" and row.deliveredAt is None  # never fetched: not "delivered"


def test_every_fault_has_exactly_the_soap_11_parts(world):
    """Faults from the guard and from the operations have one shape: faultcode, faultstring,
    faultactor, detail — and nothing after detail."""
    from lxml import etree

    sec = raw.security_header("vpcp", world.secrets["vpcp"])
    bad_secret = raw.security_header("vpcp", "wrong-" + world.secrets["vpcp"])
    for body in (
        raw.envelope("<tns:getAgenciesList/>", bad_secret),  # an operation's fault
        b"<soapenv:Envelope",  # the guard's fault
        raw.envelope("<tns:getEdoc><tns:docId>x</tns:docId><tns:docId>y</tns:docId></tns:getEdoc>", sec),
    ):
        reply = raw.post(world.url, body)
        fault = etree.fromstring(reply.body).find(f"{{{raw.SOAP}}}Body/{{{raw.SOAP}}}Fault")
        assert fault is not None, reply.body[:300]
        assert [child.tag for child in fault] == ["faultcode", "faultstring", "faultactor", "detail"]
        assert reply.code and reply.code.startswith("Client.") and reply.correlation_id
