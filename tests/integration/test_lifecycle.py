"""The life of a document after it is sent, over real HTTP with the reference client, on SQLite and
PostgreSQL: business statuses and their rules, recall, update and replace, tracking (getSentEdocList,
getTrace) and the order of deliveries. Every refused step leaves the database as it was."""

from __future__ import annotations

from gateway.core.packet import RECALL, REPLACE, UPDATE
from lienthong_client.packets import read_header
from tests.support.packets import new_document, status_for, successor
from tests.support.refusals import refused
from tests.support.world import G01, G22, H41, H49


def rows_by_recipient(client, doc_id):
    return {r.recipient: r for r in client.sent(doc_id)}


def kinds(trace):
    return [(e.kind, e.recipient, e.code) for e in trace.events]


def test_the_whole_life_of_a_document(world):
    vpcp, nghean, quangninh = world.client("vpcp"), world.client("nghean"), world.client("quangninh")
    platform = world.client("platform")  # acts for G01 (and H49): seals as G01
    document = new_document(G22, [H41, H49, G01])
    sent = vpcp.send(document)
    doc_id = sent.docId
    rows = rows_by_recipient(vpcp, doc_id)
    assert {r: rows[r].transportState for r in rows} == {H41: "pending", H49: "pending", G01: "pending"}
    assert all(rows[r].dueAt is not None and rows[r].answeredAt is None for r in rows)

    # H41 may not answer before it has the document, then rejects it with a reason
    refused(
        world, lambda: nghean.send(status_for(document, H41, "03", "Đã vào sổ")), "Client.Status.NotDelivered"
    )
    nghean.fetch(doc_id)
    nghean.ack(doc_id, "done")
    refused(world, lambda: nghean.send(status_for(document, H41, "02")), "Client.Status.ReasonRequired")
    rejection = nghean.send(status_for(document, H41, "02", "Không đúng thẩm quyền"))
    refused(
        world,
        lambda: nghean.send(status_for(document, H41, "03", "Đã vào sổ")),
        "Client.Status.AfterRejection",
    )
    # the same status again is idempotent: the first docId, nothing stored
    before = world.snapshot()
    again = nghean.send(status_for(document, H41, "02", "Không đúng thẩm quyền (gửi lại)"))
    assert again.docId == rejection.docId and again.duplicate is True
    assert world.snapshot() == before

    # H49 accepts and completes; statuses only go forward
    quangninh.fetch(doc_id)
    refused(world, lambda: quangninh.send(status_for(document, H49, "04")), "Client.Status.OutOfOrder")
    for code in ("03", "04", "05", "06"):
        quangninh.send(status_for(document, H49, code, f"bước {code}"))
    refused(world, lambda: quangninh.send(status_for(document, H49, "01")), "Client.Status.OutOfOrder")
    refused(
        world, lambda: quangninh.send(status_for(document, H49, "02", "muộn")), "Client.Status.OutOfOrder"
    )
    refused(world, lambda: quangninh.send(status_for(document, H49, "15")), "Client.Status.NoPendingRequest")
    # a recipient may not recall; the sender may not answer its own document
    refused(
        world,
        lambda: quangninh.send(status_for(document, H49, "13", "thu hồi")),
        "Client.Status.NotOriginalSender",
    )
    refused(
        world, lambda: vpcp.send(status_for(document, G22, "03")), "Client.Routing.StatusForUnknownDocument"
    )

    rows = rows_by_recipient(vpcp, doc_id)
    assert rows[H41].businessStatus == "02" and rows[H41].transportState == "done"
    assert rows[H49].businessStatus == "06" and rows[H49].businessStatusStaff == "Văn thư"
    assert rows[H49].answeredAt is not None and rows[G01].businessStatus is None
    assert rows[G01].deliveredAt is None

    # the sender recalls: a status 13 reaches every original recipient, also G01 that never fetched it,
    # after the original in its queue
    recall = vpcp.send(status_for(document, G22, "13", "Văn bản ban hành nhầm"))
    assert recall.messageType == "status" and recall.recipients == [H41, H49, G01]
    queue = [i.docId for i in platform.inbox("edoc")] + [i.docId for i in platform.inbox("status")]
    assert queue.index(doc_id) < queue.index(recall.docId)
    rows = rows_by_recipient(vpcp, doc_id)
    assert {r: rows[r].lifecycle for r in rows} == dict.fromkeys((H41, H49, G01), "recall-requested")
    assert all(rows[r].lifecycleDocId == recall.docId for r in rows)
    # recalling twice is the same recall
    assert vpcp.send(status_for(document, G22, "13", "nhắc lại")).docId == recall.docId

    # G01 agrees (15) without ever handling the document; H49 refuses (16, with its reason)
    platform.send(status_for(document, G01, "15"))
    refused(world, lambda: quangninh.send(status_for(document, H49, "16")), "Client.Status.ReasonRequired")
    quangninh.send(status_for(document, H49, "16", "Đã thực hiện xong"))
    refused(
        world,
        lambda: platform.send(status_for(document, G01, "16", "đổi ý")),
        "Client.Status.AlreadyAnswered",
    )
    refused(world, lambda: platform.send(status_for(document, G01, "01")), "Client.Status.DocumentRecalled")

    rows = rows_by_recipient(vpcp, doc_id)
    assert rows[G01].lifecycle == "recalled" and rows[G01].businessStatus == "15"
    assert rows[H49].lifecycle == "recall-refused" and rows[H49].businessStatus == "16"
    assert rows[H41].lifecycle == "recall-requested" and rows[H41].businessStatus == "02"

    # the recipient that agreed sees the original marked recalled
    pending = {i.docId: i for i in platform.inbox("edoc")}
    assert pending[doc_id].lifecycle == "recalled"
    assert pending[doc_id].lifecycleDocId == recall.docId
    mine = platform.trace(doc_id)  # the platform acts for G01 and H49: it sees both, not H41
    assert {r.recipient: r.lifecycle for r in mine.recipients} == {H49: "recall-refused", G01: "recalled"}
    assert H41 not in {e.recipient for e in mine.events}

    # the sender's trace: every event of every recipient, in order
    trace = vpcp.trace(doc_id)
    assert getattr(trace, "from") == G22 and trace.senderSystem == "vpcp"
    assert kinds(trace) == [
        ("accepted", None, None),
        ("delivered", H41, None),
        ("acknowledged", H41, "done"),
        ("status", H41, "02"),
        ("delivered", H49, None),
        ("status", H49, "03"),
        ("status", H49, "04"),
        ("status", H49, "05"),
        ("status", H49, "06"),
        ("recall-requested", H41, "13"),
        ("recall-requested", H49, "13"),
        ("recall-requested", G01, "13"),
        ("status", G01, "15"),
        ("status", H49, "16"),
    ]
    times = [e.at for e in trace.events]
    assert times == sorted(times)
    status_event = trace.events[3]
    assert status_event.agency == H41 and status_event.system == "nghean"
    assert status_event.detail == "Không đúng thẩm quyền" and status_event.relatedDocId == rejection.docId
    assert trace.events[-1].detail == "Đã thực hiện xong"
    # a recipient sees its own part only
    theirs = nghean.trace(doc_id)
    assert kinds(theirs) == [
        ("accepted", None, None),
        ("delivered", H41, None),
        ("acknowledged", H41, "done"),
        ("status", H41, "02"),
        ("recall-requested", H41, "13"),
    ]
    refused(world, lambda: world.client("yte").trace(doc_id), "Client.Access.NotAddressee")
    refused(world, lambda: vpcp.trace("no-such-doc"), "Client.Doc.NotFound")


def test_recall_as_a_document_packet(world):
    vpcp, nghean = world.client("vpcp"), world.client("nghean")
    document = new_document(G22, [H41, H49])
    first = vpcp.send(document)
    nghean.fetch(first.docId)
    # a recall may not reach an agency that never received the document
    refused(
        world,
        lambda: vpcp.send(successor(document, RECALL, [H41, G01])),
        "Client.Lifecycle.ReceiverMismatch",
    )
    recall = vpcp.send(successor(document, RECALL, [H41]))
    assert recall.messageType == "edoc" and recall.recipients == [H41, H49]  # every original recipient
    assert [i.docId for i in nghean.inbox("edoc")].count(recall.docId) == 1
    nghean.send(status_for(document, H41, "15"))
    rows = rows_by_recipient(vpcp, first.docId)
    assert rows[H41].lifecycle == "recalled" and rows[H49].lifecycle == "recall-requested"
    trace = vpcp.trace(first.docId)
    assert trace.successors == [recall.docId]
    assert vpcp.trace(recall.docId).originDocId == first.docId


def test_update_honours_the_receiver_list(world):
    vpcp, nghean, quangninh = world.client("vpcp"), world.client("nghean"), world.client("quangninh")
    document = new_document(G22, [H41, H49])
    first = vpcp.send(document)
    # H49 neither kept in To nor removed: refused, nothing stored
    refused(world, lambda: vpcp.send(successor(document, UPDATE, [H41])), "Client.Lifecycle.ReceiverMismatch")
    refused(
        world,
        lambda: vpcp.send(
            successor(document, UPDATE, [H41, G01], added_receivers=[G01], removed_receivers=[G01])
        ),
        "Client.Lifecycle.ReceiverMismatch",
    )
    # H49 removed, G01 added: delivered to H41, G01 and (to learn it is removed) H49
    update = vpcp.send(
        successor(
            document,
            UPDATE,
            [H41, G01],
            added_receivers=[G01],
            removed_receivers=[H49],
            same_document_id=True,
        )
    )
    assert sorted(update.recipients) == sorted([H41, G01, H49])
    rows = rows_by_recipient(vpcp, first.docId)
    assert rows[H41].lifecycle == rows[H49].lifecycle == "update-requested"
    assert rows[H41].lifecycleDocId == update.docId
    # the answer names the DocumentId both packets share; it lands on the original's copy
    nghean.send(status_for(document, H41, "15"))
    quangninh.send(status_for(document, H49, "16", "Chưa nhận được văn bản thay thế bằng giấy"))
    rows = rows_by_recipient(vpcp, first.docId)
    assert rows[H41].lifecycle == "updated" and rows[H49].lifecycle == "update-refused"
    assert vpcp.trace(first.docId).successors == [update.docId]
    # statuses about the (shared) DocumentId now concern the newest document, the update
    nghean.fetch(update.docId)
    nghean.send(status_for(document, H41, "03", "Đã vào sổ bản cập nhật"))
    assert rows_by_recipient(vpcp, update.docId)[H41].businessStatus == "03"


def test_replace_names_what_it_replaces(world):
    vpcp, nghean = world.client("vpcp"), world.client("nghean")
    document = new_document(G22, [H41, H49])
    first = vpcp.send(document)
    original_id = read_header(document)["document_id"]
    refused(
        world,
        lambda: vpcp.send(successor(document, REPLACE, [H41], replacements=[(original_id, [G01])])),
        "Client.Lifecycle.ReceiverMismatch",
    )
    refused(
        world,
        lambda: vpcp.send(successor(document, REPLACE, [H41], replacements=[(original_id, [H49])])),
        "Client.Lifecycle.ReceiverMismatch",  # replaced for H49, but not sent to it
    )
    refused(
        world,
        lambda: vpcp.send(successor(new_document(G22, [H41]), REPLACE, [H41])),
        "Client.Lifecycle.UnknownOriginal",
    )
    replace = vpcp.send(successor(document, REPLACE, [H41], replacements=[(original_id, [H41])]))
    rows = rows_by_recipient(vpcp, first.docId)
    assert rows[H41].lifecycle == "replace-requested" and rows[H49].lifecycle is None
    nghean.send(status_for(document, H41, "15"))
    assert rows_by_recipient(vpcp, first.docId)[H41].lifecycle == "replaced"
    assert vpcp.trace(replace.docId).originDocId == first.docId


def test_a_successor_must_name_the_earlier_document(world):
    vpcp = world.client("vpcp")
    from lienthong_client.packets import build_document

    orphan = build_document(
        sender=G22,
        recipients=[H41],
        number="991",
        notation="TEST",
        subject="Cập nhật",
        business_doc_type=UPDATE,
    )
    refused(world, lambda: vpcp.send(orphan), "Client.Lifecycle.MissingReference")
    other = new_document(G22, [H41])  # never sent
    refused(world, lambda: vpcp.send(successor(other, UPDATE)), "Client.Lifecycle.UnknownOriginal")
    refused(
        world, lambda: vpcp.send(status_for(other, G22, "13", "thu hồi")), "Client.Lifecycle.UnknownOriginal"
    )


def test_recalled_copies_cannot_be_updated(world):
    vpcp, nghean = world.client("vpcp"), world.client("nghean")
    document = new_document(G22, [H41])
    vpcp.send(document)
    vpcp.send(status_for(document, G22, "13", "thu hồi"))
    nghean.send(status_for(document, H41, "15"))
    refused(
        world,
        lambda: vpcp.send(successor(document, UPDATE, same_document_id=True)),
        "Client.Lifecycle.OriginalRecalled",
    )


def test_statuses_about_one_document_keep_their_order(world):
    vpcp, quangninh = world.client("vpcp"), world.client("quangninh")
    document = new_document(G22, [H49])
    first = vpcp.send(document)
    quangninh.fetch(first.docId)
    sent = [
        quangninh.send(status_for(document, H49, code, f"bước {code}")).docId for code in ("01", "03", "04")
    ]
    listed = [i.docId for i in vpcp.inbox("status") if i.docId in sent]
    assert listed == sent
    codes = [e.code for e in vpcp.trace(first.docId).events if e.kind == "status"]
    assert codes == ["01", "03", "04"]


def test_sent_list_pages_by_packet(world):
    vpcp = world.client("vpcp")
    ids = [vpcp.send(new_document(G22, [H41, H49])).docId for _ in range(5)]
    first = vpcp.sent(message_type="edoc", limit=2)
    assert [r.docId for r in first] == [ids[4], ids[4], ids[3], ids[3]]  # newest first, every recipient
    second = vpcp.sent(message_type="edoc", limit=2, before_doc_id=first[-1].docId)
    assert [r.docId for r in second][::2] == [ids[2], ids[1]]
    assert len(vpcp.sent(message_type="edoc")) >= 10  # the default page holds them all
    refused(world, lambda: vpcp.sent(limit=0), "Client.Request.InvalidArgument")
    refused(world, lambda: vpcp.sent(limit=1001), "Client.Request.InvalidArgument")
    refused(world, lambda: vpcp.sent(before_doc_id="not-a-doc"), "Client.Request.InvalidArgument")
    # another sender's docId is no cursor for this one
    theirs = world.client("nghean").send(new_document(H41, [G22])).docId
    refused(world, lambda: vpcp.sent(before_doc_id=theirs), "Client.Request.InvalidArgument")


def test_overdue_list_refuses_reversed_dates(world):
    import datetime as dt

    vpcp = world.client("vpcp")
    today = dt.date.today()
    refused(
        world,
        lambda: vpcp.overdue(today, today - dt.timedelta(days=1)),
        "Client.Request.InvalidArgument",
    )
    assert vpcp.overdue(today - dt.timedelta(days=1), today) == []  # nothing is due yet


def test_recalling_again_is_the_same_recall_whatever_its_form(world):
    vpcp, nghean = world.client("vpcp"), world.client("nghean")
    document = new_document(G22, [H41, H49])
    vpcp.send(document)
    recall = vpcp.send(status_for(document, G22, "13", "thu hồi"))
    nghean.send(status_for(document, H41, "16", "đã thực hiện"))
    before = world.snapshot()
    again = vpcp.send(successor(document, RECALL, [H41, H49]))  # as a recall document this time
    assert again.docId == recall.docId and again.duplicate is True
    assert world.snapshot() == before  # the refusal (16) stands: a second recall does not reopen it


def test_later_updates_after_a_recall_and_a_removal(world):
    vpcp, nghean, quangninh = world.client("vpcp"), world.client("nghean"), world.client("quangninh")
    document = new_document(G22, [H41, H49, G01])
    first = vpcp.send(document)
    vpcp.send(status_for(document, G22, "13", "thu hồi"))
    world.client("platform").send(status_for(document, G01, "15"))  # G01 gave the document back
    nghean.send(status_for(document, H41, "16", "giữ lại"))
    quangninh.send(status_for(document, H49, "16", "giữ lại"))
    # G01 no longer holds it: the update neither names nor removes it; H49 is removed
    update = vpcp.send(successor(document, UPDATE, [H41], removed_receivers=[H49], same_document_id=True))
    assert sorted(update.recipients) == sorted([H41, H49])
    rows = rows_by_recipient(vpcp, update.docId)
    assert rows[H49].lifecycle == "removed" and rows[H49].dueAt is None  # told, not a recipient
    assert rows[H41].dueAt is not None
    # a second update of the same DocumentId no longer concerns H49
    second = vpcp.send(successor(document, UPDATE, [H41], same_document_id=True))
    assert second.recipients == [H41]
    assert rows_by_recipient(vpcp, first.docId)[G01].lifecycle == "recalled"


def test_a_recipients_trace_does_not_list_the_other_recipients(world):
    vpcp, nghean = world.client("vpcp"), world.client("nghean")
    doc_id = vpcp.send(new_document(G22, [H41, H49])).docId
    assert H49 in vpcp.trace(doc_id).events[0].detail
    accepted = nghean.trace(doc_id).events[0]
    assert accepted.kind == "accepted" and accepted.detail is None
