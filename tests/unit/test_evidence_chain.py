"""The audit chain and the evidence documents as pure functions."""

from __future__ import annotations

import datetime as dt
import hashlib

from gateway.core import evidence as ev

AT = dt.datetime(2026, 12, 4, 11, 0, 0, 123456, tzinfo=dt.timezone.utc)


def build(n: int) -> list[tuple[int, bytes, str]]:
    out, previous = [], ev.GENESIS
    for seq in range(1, n + 1):
        content = ev.canonical({"seq": seq, "event": "accepted", "docId": f"d{seq}", "at": ev.iso(AT)})
        previous = ev.chain(previous, ev.content_digest(content))
        out.append((seq, content, previous.hex()))
    return out


def test_the_hash_is_the_documented_formula():
    content = ev.canonical({"seq": 1, "b": "ă", "a": None, "c": [1, 2]})
    assert content == '{"b":"ă","c":[1,2],"seq":1}'.encode()  # sorted, compact, UTF-8, None left out
    expected = hashlib.sha256(bytes(32) + hashlib.sha256(content).digest()).digest()
    assert ev.chain(ev.GENESIS, ev.content_digest(content)) == expected


def test_an_intact_chain_verifies_from_any_anchor():
    entries = build(10)
    assert ev.verify_chain(entries) == (10, bytes.fromhex(entries[-1][2]), None)
    assert ev.verify_chain(entries[4:], start_seq=4, start_hash=bytes.fromhex(entries[3][2]))[2] is None


def test_every_kind_of_tampering_breaks_the_chain():
    entries = build(10)
    edited = list(entries)
    edited[4] = (5, entries[4][1].replace(b"d5", b"d9"), entries[4][2])
    assert ev.verify_chain(edited)[2].seq == 5
    deleted = entries[:4] + entries[5:]
    assert ev.verify_chain(deleted)[2] == ev.ChainBreak(5, "entry 5 is missing (found 6 next)")
    reordered = [*entries[:4], entries[5], entries[4], *entries[6:]]
    assert ev.verify_chain(reordered)[2].seq == 5
    swapped_content = list(entries)
    swapped_content[4], swapped_content[5] = (
        (5, entries[5][1], entries[5][2]),
        (6, entries[4][1], entries[4][2]),
    )
    assert ev.verify_chain(swapped_content)[2].seq == 5
    inserted = (
        entries[:5]
        + [(6, ev.canonical({"seq": 6, "event": "forged"}), "00" * 32)]
        + [(s + 1, c, h) for s, c, h in entries[5:]]
    )
    assert ev.verify_chain(inserted)[2].seq == 6
    # rehashing an edited entry does not help: the next one no longer follows
    forged = ev.canonical({"seq": 5, "event": "accepted", "docId": "evil", "at": ev.iso(AT)})
    rehashed = list(entries)
    rehashed[4] = (5, forged, ev.chain(bytes.fromhex(entries[3][2]), ev.content_digest(forged)).hex())
    assert ev.verify_chain(rehashed)[2].seq == 6


def test_documents_round_trip():
    facts = ev.ReceiptFacts(
        kind="status",
        receipt_id="r1",
        doc_id="d1",
        message_type="edoc",
        sender="G22",
        sender_system="vpcp",
        recipients=("H41",),
        packet_sha256="ab" * 32,
        at=AT,
        status_code="03",
        status_doc_id="s1",
        status_sha256="cd" * 32,
        by_system="nghean",
    )
    assert ev.read_receipt(ev.receipt_tree(facts)) == facts
    cp = ev.Checkpoint(9, b"\1" * 32, AT, 4, b"\2" * 32)
    assert ev.read_checkpoint(ev.checkpoint_tree(cp)) == cp
    doc_id, files = ev.read_manifest(ev.manifest_tree("d1", {"a": b"x"}, AT))
    assert doc_id == "d1" and files == {"a": hashlib.sha256(b"x").hexdigest()}
