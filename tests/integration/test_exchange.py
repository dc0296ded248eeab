"""The axis end to end over real HTTP with the reference (zeep) client, on SQLite and on PostgreSQL."""

from __future__ import annotations

import hashlib

import pytest

from gateway.core.packet import UPDATE
from lienthong_client import GatewayFault
from lienthong_client.packets import read_header
from tests.support.packets import new_document, status_for, successor
from tests.support.world import G01, G22, H41, H49


def inbox_ids(client, message_type="edoc"):
    return [i.docId for i in client.inbox(message_type)]


def test_send_receive_acknowledge_and_answer(world):
    vpcp, nghean, quangninh = world.client("vpcp"), world.client("nghean"), world.client("quangninh")
    packet = world.seal(new_document(G22, [H41, H49]), G22)

    sent = vpcp.send(packet)
    assert sent.messageType == "edoc"
    assert sent.recipients == [H41, H49]
    assert sent.duplicate is False

    # each recipient sees it pending, fetches the exact bytes, acknowledges done
    for client, code in ((nghean, H41), (quangninh, H49)):
        items = [i for i in client.inbox("edoc") if i.docId == sent.docId]
        assert len(items) == 1
        item = items[0]
        assert getattr(item, "from") == G22 and item.to == code and item.transportState == "pending"
        assert item.subject == "Công văn thử nghiệm"
        fetched = client.fetch(sent.docId)
        assert fetched.content == packet  # byte for byte
        assert fetched.sha256 == hashlib.sha256(packet).hexdigest()
        assert [i.transportState for i in client.inbox("edoc") if i.docId == sent.docId] == ["fetched"]
        client.ack(sent.docId, "done")
        assert sent.docId not in inbox_ids(client)

    # the sender's view, per recipient
    rows = {r.recipient: r for r in vpcp.sent(sent.docId)}
    assert set(rows) == {H41, H49}
    for row in rows.values():
        assert row.transportState == "done"
        assert row.deliveredAt is not None and row.acknowledgedAt is not None
        assert row.businessStatus is None

    # business statuses flow back to the sender and show per recipient
    answer = nghean.send(status_for(packet, H41, "03", "Đã vào sổ"))
    assert answer.duplicate is False
    assert answer.messageType == "status" and answer.recipients == [G22]
    statuses = [i for i in vpcp.inbox("status") if i.docId == answer.docId]
    assert statuses and statuses[0].statusCode == "03" and getattr(statuses[0], "from") == H41
    rows = {r.recipient: r for r in vpcp.sent(sent.docId)}
    assert rows[H41].businessStatus == "03" and rows[H41].businessStatusAt is not None
    assert rows[H49].businessStatus is None
    assert vpcp.fetch(answer.docId).content.startswith(b"<?xml")
    vpcp.ack(answer.docId, "done")
    assert answer.docId not in inbox_ids(vpcp, "status")


def test_fail_keeps_the_packet_pending_with_its_reason(world):
    vpcp, nghean = world.client("vpcp"), world.client("nghean")
    sent = vpcp.send(new_document(G22, [H41]))
    nghean.fetch(sent.docId)
    nghean.ack(sent.docId, "processing")
    nghean.ack(sent.docId, "fail", "ổ đĩa đầy")
    assert [i.transportState for i in nghean.inbox() if i.docId == sent.docId] == ["fail"]
    row = vpcp.sent(sent.docId)[0]
    assert row.transportState == "fail" and row.failReason == "ổ đĩa đầy"
    nghean.ack(sent.docId, "done")
    assert sent.docId not in inbox_ids(nghean)


def test_resending_the_same_packet_returns_the_first_doc_id(world):
    vpcp = world.client("vpcp")
    packet = world.seal(new_document(G22, [H41]), G22)
    first = vpcp.send(packet)
    before = world.snapshot()
    again = vpcp.send(packet)
    assert again.docId == first.docId and again.duplicate is True
    assert world.snapshot() == before  # no new packet, no new delivery
    assert len(vpcp.sent(first.docId)) == 1


def test_update_may_reuse_the_document_id(world):
    vpcp = world.client("vpcp")
    original = new_document(G22, [H41])
    first = vpcp.send(original)
    update = successor(original, UPDATE, same_document_id=True)
    assert read_header(update)["document_id"] == read_header(original)["document_id"]
    result = vpcp.send(update)
    assert result.docId != first.docId and result.duplicate is False


def test_integration_platform_acts_for_several_agencies(world):
    platform, vpcp = world.client("platform"), world.client("vpcp")
    to_g01 = vpcp.send(new_document(G22, [G01])).docId
    to_h49 = vpcp.send(new_document(G22, [H49])).docId
    pending = {(i.docId, i.to) for i in platform.inbox()}
    assert {(to_g01, G01), (to_h49, H49)} <= pending
    out = platform.send(new_document(G01, [G22]))
    assert out.recipients == [G22]


def test_inbox_keeps_acceptance_order(world):
    vpcp, nghean = world.client("vpcp"), world.client("nghean")
    ids = [vpcp.send(new_document(G22, [H41])).docId for _ in range(4)]
    listed = [i for i in inbox_ids(nghean) if i in ids]
    assert listed == ids


def test_date_filters(world):
    import datetime as dt
    from zoneinfo import ZoneInfo

    vpcp, nghean = world.client("vpcp"), world.client("nghean")
    doc_id = vpcp.send(new_document(G22, [H41])).docId
    today = dt.datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()
    assert doc_id in [i.docId for i in nghean.inbox("edoc", today, today)]
    assert doc_id not in [i.docId for i in nghean.inbox("edoc", today + dt.timedelta(days=1))]
    assert doc_id not in [i.docId for i in nghean.inbox("edoc", None, today - dt.timedelta(days=1))]
    with pytest.raises(GatewayFault) as caught:
        nghean.inbox("edoc", today, today - dt.timedelta(days=1))
    assert caught.value.code == "Client.Request.InvalidArgument"


def test_directory_and_its_administration(world):
    admin, vpcp = world.client("admin"), world.client("vpcp")
    codes = {a.code: a for a in vpcp.agencies()}
    assert codes[G22].name == "Văn phòng Chính phủ" and codes[G22].active is True
    assert {a.code for a in vpcp.agencies("Nghệ An")} == {H41, "000.00.00.K41"}
    assert {a.code for a in vpcp.agencies("h41")} == {H41}

    created = admin.register_agency(
        "000.00.00.H99", "UBND tỉnh Thử nghiệm", parent_code=None, email="vt@example.vn"
    )
    assert created.active is True
    assert vpcp.send(new_document(G22, ["000.00.00.H99"])).recipients == ["000.00.00.H99"]
    deleted = admin.delete_agency("000.00.00.H99")
    assert deleted.active is False
    assert {a.code: a.active for a in vpcp.agencies("H99")} == {"000.00.00.H99": False}
    with pytest.raises(GatewayFault) as caught:
        vpcp.send(new_document(G22, ["000.00.00.H99"]))
    assert caught.value.code == "Client.Routing.InactiveRecipient"
