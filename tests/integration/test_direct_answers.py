"""sendEdoc, getReceivedEdocList, getEdoc and updateStatus are answered by gateway.soap.direct, not by
spyne; the answers must
be the ones spyne writes, element for element, for successes and faults alike, and any request shape the
direct reader does not recognise must still reach spyne and be answered as before.

The gateway under test (``world``, over HTTP) answers with the direct path; an in-process application on
the same database with the direct path switched off answers with spyne. Each request is sent to both and
the two answers compared once the parts that differ by nature are set aside: the WS-Security header (a
fresh signature and Timestamp every time), the Body's wsu:Id and the correlation id.
"""

from __future__ import annotations

import base64
import re

import pytest
from lxml import etree
from sqlalchemy import text

from gateway.store.raw import read_time
from tests.support import raw
from tests.support.packets import new_document, status_for
from tests.support.world import G01, G22, H41

WSU_ID = "{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd}Id"
_CID = re.compile(rb"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def spyne_app(world):
    app = world.app()
    app.direct = None  # every operation through spyne
    yield app
    app.axis.db.dispose()


def _comparable(body: bytes) -> bytes:
    """The answer without what differs by nature (the reference client's tests check the signature)."""
    root = etree.fromstring(body)
    header = root.find(f"{{{raw.SOAP}}}Header")
    assert header is not None, "every answer is signed"
    root.remove(header)
    soap_body = root.find(f"{{{raw.SOAP}}}Body")
    soap_body.attrib.pop(WSU_ID, None)
    return _CID.sub(b"<cid>", etree.tostring(root, method="c14n"))


def _both(world, spyne_app, payload: str, system: str) -> tuple[raw.Reply, bytes, bytes]:
    body = raw.envelope(payload, raw.security_header(system, world.secrets[system]))
    direct = raw.post(world.url, body)
    status, spyne_body = raw.in_process(spyne_app, body)
    assert status.split()[0] == str(direct.status)
    return direct, _comparable(direct.body), _comparable(spyne_body)


def test_send_get_and_acknowledge_answers_are_spynes(world, spyne_app):
    packet = world.seal(new_document(G22, [H41, G01], subject="Trả lời trực tiếp"), G22)
    payload = raw.send_edoc_payload(packet)
    first = raw.post(world.url, raw.envelope(payload, raw.security_header("vpcp", world.secrets["vpcp"])))
    assert first.status == 200 and first.code is None
    # the same bytes again: both paths answer with the first docId and receipt (duplicate=true)
    direct, a, b = _both(world, spyne_app, payload, "vpcp")
    assert b"<tns:duplicate>true</tns:duplicate>" in a
    assert a == b
    doc_id = etree.fromstring(first.body).findtext(f".//{{{raw.TNS}}}docId")

    get = f"<tns:getEdoc><tns:docId>{doc_id}</tns:docId></tns:getEdoc>"
    direct, a, b = _both(world, spyne_app, get, "nghean")
    assert a == b
    fetched = etree.fromstring(direct.body).findtext(f".//{{{raw.TNS}}}packet")
    assert base64.b64decode(fetched) == packet

    for status in ("processing", " Done "):
        ack = (
            f"<tns:updateStatus><tns:docId>{doc_id}</tns:docId><tns:status>{status}</tns:status>"
            f"</tns:updateStatus>"
        )
        direct, a, b = _both(world, spyne_app, ack, "nghean")
        assert direct.code is None
        assert a == b


def test_pending_list_answers_are_spynes(world, spyne_app):
    """Entries with and without their optional members (a status has no DocumentId or subject, a recalled
    document carries its lifecycle), documents and statuses, and an empty list."""
    bodies = [
        new_document(G22, [H41], subject="Danh sách <chờ> & nhận"),
        new_document(G22, [H41, G01]),
    ]
    sent = []
    for body in bodies:
        packet = world.seal(body, G22)
        reply = raw.post(
            world.url,
            raw.envelope(raw.send_edoc_payload(packet), raw.security_header("vpcp", world.secrets["vpcp"])),
        )
        assert reply.status == 200 and reply.code is None, reply.body[-600:]
        sent.append(etree.fromstring(reply.body).findtext(f".//{{{raw.TNS}}}docId"))
    recall = world.seal(status_for(bodies[0], G22, "13", "Thu hồi"), G22)
    reply = raw.post(
        world.url,
        raw.envelope(raw.send_edoc_payload(recall), raw.security_header("vpcp", world.secrets["vpcp"])),
    )
    assert reply.status == 200 and reply.code is None, reply.body[-600:]
    for message_type, expected in (("edoc", sent), (" Status ", None)):
        listing = f"<tns:getReceivedEdocList><tns:messageType>{message_type}</tns:messageType></tns:getReceivedEdocList>"
        direct, a, b = _both(world, spyne_app, listing, "nghean")
        assert direct.status == 200 and direct.code is None
        assert a == b
        if expected is not None:
            listed = [e.text for e in etree.fromstring(a).iter(f"{{{raw.TNS}}}docId")]
            assert set(expected) <= set(listed)
            assert b"<tns:lifecycle>recall-requested</tns:lifecycle>" in a
        else:
            assert b"<tns:statusCode>13</tns:statusCode>" in a
    # and it is the direct path that answered them (spyne would give the same answer)
    app = world.app()
    direct, answered = app.direct, []

    def watched(*args):  # type: ignore[no-untyped-def]
        answered.append(direct(*args))
        return answered[-1]

    app.direct = watched
    listing = "<tns:getReceivedEdocList><tns:messageType>edoc</tns:messageType></tns:getReceivedEdocList>"
    try:
        status, _ = raw.in_process(
            app, raw.envelope(listing, raw.security_header("nghean", world.secrets["nghean"]))
        )
    finally:
        app.axis.db.dispose()
    assert status.startswith("200") and len(answered) == 1 and answered[0] is not None
    # a system with nothing pending: the empty list
    listing = "<tns:getReceivedEdocList><tns:messageType>status</tns:messageType></tns:getReceivedEdocList>"
    direct, a, b = _both(world, spyne_app, listing, "yte")
    assert direct.status == 200 and b"ReceivedEdoc>" not in a
    assert a == b


@pytest.mark.parametrize(
    ("payload", "system", "code"),
    [
        ("<tns:getEdoc><tns:docId>no-such-doc</tns:docId></tns:getEdoc>", "nghean", "Client.Doc.NotFound"),
        (
            "<tns:updateStatus><tns:docId>no-such-doc</tns:docId><tns:status>done</tns:status></tns:updateStatus>",
            "nghean",
            "Client.Doc.NotFound",
        ),
        (
            "<tns:updateStatus><tns:docId>x</tns:docId><tns:status>read</tns:status></tns:updateStatus>",
            "nghean",
            "Client.Request.InvalidArgument",
        ),
        (raw.send_edoc_payload(b"<not-edxml/>"), "vpcp", "Client.Packet.NotEdxml"),
        (
            "<tns:getReceivedEdocList><tns:messageType>mail</tns:messageType></tns:getReceivedEdocList>",
            "nghean",
            "Client.Request.InvalidArgument",
        ),
    ],
    ids=["get-unknown", "ack-unknown", "ack-bad-status", "send-not-edxml", "list-bad-type"],
)
def test_fault_answers_are_spynes(world, spyne_app, payload, system, code):
    direct, a, b = _both(world, spyne_app, payload, system)
    assert direct.status == 500 and direct.code == code
    assert a == b


@pytest.mark.parametrize(
    "payload",
    [
        "<tns:getEdoc/>",  # a required parameter missing
        "<tns:getEdoc><tns:docId/></tns:getEdoc>",  # empty
        "<tns:getEdoc><tns:docId>a</tns:docId><tns:docId>b</tns:docId></tns:getEdoc>",  # twice
        '<tns:getEdoc><tns:docId tns:x="1">a</tns:docId></tns:getEdoc>',  # an attribute
        "<tns:sendEdoc><tns:packet>!!!not base64!!!=</tns:packet></tns:sendEdoc>",
        "<tns:getReceivedEdocList><tns:messageType>edoc</tns:messageType>"
        "<tns:fromDate>2026-01-01</tns:fromDate></tns:getReceivedEdocList>",  # a date range: spyne parses it
    ],
    ids=["missing", "empty", "twice", "attribute", "bad-base64", "list-dates"],
)
def test_shapes_the_direct_reader_leaves_to_spyne_are_answered_by_spyne(world, spyne_app, payload):
    """The in-process application keeps its direct path here, and the test checks that it declined."""
    app = world.app()
    declined = []
    direct = app.direct

    def watched(*args):
        answer = direct(*args)
        declined.append(answer is None)
        return answer

    app.direct = watched
    try:
        body = raw.envelope(payload, raw.security_header("nghean", world.secrets["nghean"]))
        status, answer = raw.in_process(app, body)
        _status, spyne_answer = raw.in_process(spyne_app, body)
    finally:
        app.axis.db.dispose()
    assert declined == [True]
    assert status == _status
    assert _comparable(answer) == _comparable(spyne_answer)


def test_a_spooled_packet_is_stored_as_sent_and_a_bad_one_leaves_nothing(world, monkeypatch):
    """Packets from SPOOL_BYTES on wait in a temporary file while their seal is verified (here every
    packet: the threshold is lowered); the bytes stored and fetched are the bytes sent, and a packet whose
    seal fails is refused with nothing stored."""
    import gateway.axis as axis_mod

    monkeypatch.setattr(axis_mod, "SPOOL_BYTES", 1)
    spooled = []
    real = axis_mod.tempfile.TemporaryFile

    def watched(*args, **kw):
        spooled.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(axis_mod.tempfile, "TemporaryFile", watched)
    app = world.app()
    try:
        packet = world.seal(new_document(G22, [H41], subject="Gửi qua tệp tạm"), G22)
        send = raw.envelope(raw.send_edoc_payload(packet), raw.security_header("vpcp", world.secrets["vpcp"]))
        status, answer = raw.in_process(app, send)
        assert status.startswith("200") and spooled == [1]
        doc_id = etree.fromstring(answer).findtext(f".//{{{raw.TNS}}}docId")
        get = raw.envelope(
            f"<tns:getEdoc><tns:docId>{doc_id}</tns:docId></tns:getEdoc>",
            raw.security_header("nghean", world.secrets["nghean"]),
        )
        status, answer = raw.in_process(app, get)
        assert status.startswith("200")
        assert base64.b64decode(etree.fromstring(answer).findtext(f".//{{{raw.TNS}}}packet")) == packet

        forged = packet.replace("Gửi qua tệp tạm".encode(), "Gửi qua tệp giả".encode())
        before, head = world.snapshot(), world.audit_head()
        send = raw.envelope(raw.send_edoc_payload(forged), raw.security_header("vpcp", world.secrets["vpcp"]))
        status, answer = raw.in_process(app, send)
        assert status.startswith("500") and b"Client.Seal." in answer
        assert len(spooled) == 2
        assert world.snapshot() == before  # nothing stored (the refusal's audit entry is not in the digest)
        assert world.audit_head() == head + 1
    finally:
        app.axis.db.dispose()


def test_a_connection_that_moved_a_large_packet_is_not_pooled_again(world, monkeypatch):
    """sqlite3 keeps a statement's last bound values until the statement runs again, and libpq's buffers
    grow to the largest message a connection sent or received and never shrink: a pooled connection that
    stored or fetched a large packet would hold memory the size of it for good. Such a connection is closed
    on its way back to the pool (here for any packet: the threshold is lowered), and the next request opens
    another."""
    import sqlalchemy

    import gateway.store.repo as repo_mod

    app = world.app()
    connects = []
    sqlalchemy.event.listen(app.axis.db.engine, "connect", lambda *_: connects.append(1))
    try:
        small = world.seal(new_document(G22, [H41], subject="Gói nhỏ"), G22)
        status, _ = raw.in_process(
            app,
            raw.envelope(raw.send_edoc_payload(small), raw.security_header("vpcp", world.secrets["vpcp"])),
        )
        assert status.startswith("200")
        opened = len(connects)
        status, _ = raw.in_process(
            app, raw.envelope("<tns:getAgenciesList/>", raw.security_header("vpcp", world.secrets["vpcp"]))
        )
        assert len(connects) == opened, "an ordinary packet leaves its connection pooled"

        monkeypatch.setattr(repo_mod, "KEEP_CONNECTION_BYTES", 1)
        large = world.seal(new_document(G22, [H41], subject="Gói lớn"), G22)
        status, answer = raw.in_process(
            app,
            raw.envelope(raw.send_edoc_payload(large), raw.security_header("vpcp", world.secrets["vpcp"])),
        )
        assert status.startswith("200")
        # the one connection the writes used was closed: the next requests need a new one
        for _ in range(3):
            raw.in_process(
                app,
                raw.envelope("<tns:getAgenciesList/>", raw.security_header("vpcp", world.secrets["vpcp"])),
            )
        assert len(connects) == opened + 1
        # a system it is not addressed to cannot make the gateway read it: no connection is closed
        doc_id = etree.fromstring(answer).findtext(f".//{{{raw.TNS}}}docId")
        status, refused = raw.in_process(
            app,
            raw.envelope(
                f"<tns:getEdoc><tns:docId>{doc_id}</tns:docId></tns:getEdoc>",
                raw.security_header("vpcp", world.secrets["vpcp"]),
            ),
        )
        assert status.startswith("500") and b"Client.Access.NotAddressee" in refused, refused[-600:]
        assert len(connects) == opened + 1
        # fetching it: the connection that read the packet is closed too
        get = raw.envelope(
            f"<tns:getEdoc><tns:docId>{doc_id}</tns:docId></tns:getEdoc>",
            raw.security_header("nghean", world.secrets["nghean"]),
        )
        status, fetched = raw.in_process(app, get)
        assert status.startswith("200")
        assert base64.b64decode(etree.fromstring(fetched).findtext(f".//{{{raw.TNS}}}packet")) == large
        for _ in range(3):
            raw.in_process(
                app,
                raw.envelope("<tns:getAgenciesList/>", raw.security_header("vpcp", world.secrets["vpcp"])),
            )
        assert len(connects) == opened + 2
    finally:
        app.axis.db.dispose()


def test_a_receipt_signed_before_a_long_wait_is_signed_again(world):
    """A new document's receipt is signed before its transaction; if the transaction began more than
    PRESIGNED_RECEIPT_AGE later (a long wait for the writer), it is signed again, so the receipt's time and
    the packet's stored acceptance time are the same and not older than that."""
    import datetime as dt

    from gateway.axis import PRESIGNED_RECEIPT_AGE

    app = world.app()
    start = dt.datetime.now(dt.timezone.utc)
    now = [start]
    app.axis.clock = lambda: now[0]
    sign = app.axis._send_receipts
    waits = []

    def signing(session, *args):  # type: ignore[no-untyped-def]
        out = sign(session, *args)
        if session is None:  # the receipt signed before the transaction: it begins waits[-1] later
            now[0] = start + waits[-1]
        return out

    app.axis._send_receipts = signing
    for wait in (dt.timedelta(0), PRESIGNED_RECEIPT_AGE * 3):
        waits.append(wait)
        now[0] = start
        packet = world.seal(new_document(G22, [H41], subject="Biên nhận"), G22)
        body = raw.envelope(raw.send_edoc_payload(packet), raw.security_header("vpcp", world.secrets["vpcp"]))
        status, answer = raw.in_process(app, body)
        assert status.startswith("200"), answer[-600:]
        receipt = etree.fromstring(
            base64.b64decode(etree.fromstring(answer).findtext(f".//{{{raw.TNS}}}receipt"))
        )
        stated = dt.datetime.fromisoformat(receipt.findtext("{urn:lienthong:evidence:1}Time"))
        doc_id = etree.fromstring(answer).findtext(f".//{{{raw.TNS}}}docId")
        with world.db.unit_of_work() as session:
            stored = read_time(
                session.execute(
                    text("SELECT created_at FROM packets WHERE doc_id = :d"), {"d": doc_id}
                ).scalar()
            )
        assert stated == stored
        assert stated == (start if not wait else start + wait)
    app.axis.db.dispose()


def _write_levels(world, **env) -> list[str]:
    """The ``PRAGMA synchronous`` level each write transaction of sendEdoc, getEdoc (first fetch), getEdoc
    (again) and updateStatus done ran at, read from the statements the app's SQLite connections ran."""
    import sqlalchemy

    if world.db.backend != "sqlite":
        pytest.skip("PostgreSQL flushes every commit (its commits share a flush); there is no level to set")
    app = world.app(**env)
    ran: list[tuple[int, str]] = []  # (connection, statement), in the order they ran
    connections = [0]

    def traced(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        connections[0] += 1
        number = connections[0]
        dbapi_conn.set_trace_callback(lambda statement: ran.append((number, statement)))

    sqlalchemy.event.listen(app.axis.db.engine, "connect", traced)
    try:
        packet = world.seal(new_document(G22, [H41], subject="Đánh dấu đã lấy"), G22)
        send = raw.envelope(raw.send_edoc_payload(packet), raw.security_header("vpcp", world.secrets["vpcp"]))
        status, answer = raw.in_process(app, send)
        assert status.startswith("200"), answer[-600:]
        doc_id = etree.fromstring(answer).findtext(f".//{{{raw.TNS}}}docId")
        nghean = raw.security_header("nghean", world.secrets["nghean"])
        get = raw.envelope(f"<tns:getEdoc><tns:docId>{doc_id}</tns:docId></tns:getEdoc>", nghean)
        done = raw.envelope(
            f"<tns:updateStatus><tns:docId>{doc_id}</tns:docId><tns:status>done</tns:status></tns:updateStatus>",
            nghean,
        )
        for body in (get, get, done):
            status, answer = raw.in_process(app, body)
            assert status.startswith("200"), answer[-600:]
    finally:
        app.axis.db.dispose()
    level: dict[int, str] = {}
    levels = []
    for number, statement in ran:
        if statement.startswith("PRAGMA synchronous="):
            level[number] = statement.split("=", 1)[1]
        elif statement == "BEGIN IMMEDIATE":
            levels.append(level.get(number, "FULL"))  # every new connection is set to FULL
    return levels


def test_without_flush_fetch_marks_only_the_first_fetch_mark_skips_the_flush(world):
    """With ``flush_fetch_marks = false`` getEdoc's first-fetch mark is committed at synchronous=NORMAL on
    SQLite; the send before it, the acknowledgement after it (answered with a signed receipt) and any other
    write on the same connection are back at FULL. A second getEdoc writes nothing."""
    assert _write_levels(world, LIENTHONG_FLUSH_FETCH_MARKS="false") == ["FULL", "NORMAL", "FULL"]


def test_by_default_every_commit_waits_for_the_disk(world):
    assert _write_levels(world) == ["FULL", "FULL", "FULL"]


def test_flush_fetch_marks_is_a_flag(tmp_path):
    from gateway.config import Config
    from gateway.errors import ConfigError

    assert Config.from_sources({}, data_dir=tmp_path).flush_fetch_marks is True
    assert not Config.from_sources({"LIENTHONG_FLUSH_FETCH_MARKS": "no"}, data_dir=tmp_path).flush_fetch_marks
    with pytest.raises(ConfigError) as caught:
        Config.from_sources({"LIENTHONG_FLUSH_FETCH_MARKS": "sometimes"}, data_dir=tmp_path)
    assert "flush_fetch_marks" in str(caught.value)


@pytest.mark.parametrize("same_bytes", [True, False], ids=["same-bytes", "same-document-id"])
def test_a_send_that_loses_a_race_after_its_checks_is_checked_again(world, same_bytes):
    """A plain new document is checked (sent before? its recipients, its DocumentId) before its
    transaction. Here the same packet, or another with its DocumentId, is stored by another request right
    after those checks: the store trips a unique index and the send is checked again inside its
    transaction, answering as if it had come second (the first docId, or the DocumentId fault) and storing
    nothing of its own."""
    from gateway.store.raw import Reader

    app = world.app()
    document = new_document(G22, [H41], subject="Cuộc đua")
    first = world.seal(document, G22)
    second = (
        first if same_bytes else world.seal(document.replace("Cuộc đua".encode(), "Cuộc đua 2".encode()), G22)
    )
    header = raw.security_header("vpcp", world.secrets["vpcp"])
    step = app.axis._document_step
    raced = []

    def checked_then_raced(session, packet, identity):  # type: ignore[no-untyped-def]
        out = step(session, packet, identity)
        if isinstance(session, Reader) and not raced:  # the pre-checks of the second send
            raced.append(raw.post(world.url, raw.envelope(raw.send_edoc_payload(first), header)))
        return out

    try:
        app.axis._document_step = checked_then_raced
        before = world.snapshot()
        status, answer = raw.in_process(app, raw.envelope(raw.send_edoc_payload(second), header))
    finally:
        app.axis.db.dispose()
    (winner,) = raced
    assert winner.status == 200 and winner.code is None
    first_doc_id = etree.fromstring(winner.body).findtext(f".//{{{raw.TNS}}}docId")
    if same_bytes:
        assert status.startswith("200"), answer[-600:]
        assert etree.fromstring(answer).findtext(f".//{{{raw.TNS}}}docId") == first_doc_id
        assert b"<tns:duplicate>true</tns:duplicate>" in answer
    else:
        assert status.startswith("500") and b"Client.Packet.DuplicateDocumentId" in answer, answer[-600:]
        assert first_doc_id.encode() in answer
    with world.db.unit_of_work() as session:
        stored = session.execute(
            text(
                "SELECT count(DISTINCT p.id), count(DISTINCT d.id), count(DISTINCT r.id) FROM packets p "
                "JOIN deliveries d ON d.packet_id = p.id JOIN receipts r ON r.packet_id = p.id "
                "WHERE p.document_id = (SELECT document_id FROM packets WHERE doc_id = :d)"
            ),
            {"d": first_doc_id},
        ).one()
    assert tuple(stored) == (1, 1, 1)  # the winner's packet, its delivery to H41 and its receipt: no more
    assert world.snapshot() != before


def test_a_recipient_that_leaves_the_directory_after_the_checks_gets_nothing(world):
    """A plain new document's recipients are checked before its transaction and again inside it: an agency
    deactivated in between (deleteAgency) is refused as if it had happened first, and nothing is stored."""
    from gateway.store.raw import Reader

    app = world.app()
    packet = world.seal(new_document(G22, [H41, G01], subject="Cơ quan vừa rời"), G22)
    step = app.axis._document_step
    deactivated = []

    def checked_then_deactivated(session, packet, identity):  # type: ignore[no-untyped-def]
        out = step(session, packet, identity)
        if isinstance(session, Reader) and not deactivated:
            with world.db.unit_of_work(write=True) as other:
                other.execute(text("UPDATE agencies SET active = false WHERE code = :c"), {"c": G01})
                other.commit()
            deactivated.append(G01)
        return out

    app.axis._document_step = checked_then_deactivated
    try:
        before = world.snapshot()
        body = raw.envelope(raw.send_edoc_payload(packet), raw.security_header("vpcp", world.secrets["vpcp"]))
        status, answer = raw.in_process(app, body)
    finally:
        with world.db.unit_of_work(write=True) as other:
            other.execute(text("UPDATE agencies SET active = true WHERE code = :c"), {"c": G01})
            other.commit()
        app.axis.db.dispose()
    assert deactivated == [G01]
    assert status.startswith("500") and b"Client.Routing.InactiveRecipient" in answer, answer[-600:]
    assert world.snapshot() == before  # G01 is active again, and nothing of the packet was stored
