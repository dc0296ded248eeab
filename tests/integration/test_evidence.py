"""Evidence for auditors, over real HTTP and the real database (SQLite and PostgreSQL): signed receipts,
the audit hash chain with its signed checkpoints (and a verifier that finds rows edited, deleted, inserted or
reordered in the database), and evidence bundles checked offline — by `lienthong evidence verify` and by the
`xmlsec1` command line."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import select, text

from gateway.core import evidence as ev
from gateway.core.seal import DocumentSigner, verify_document
from gateway.core.trust import fingerprint_sha256
from gateway.store.models import AuditCheckpoint, AuditEntry
from lienthong_client import GatewayFault
from lienthong_client.receipts import ReceiptRejected, check_receipt
from tests.support.packets import new_document, status_for
from tests.support.world import G22, H41, H49

BIN = Path(sys.executable).parent
XSD = Path(__file__).resolve().parents[2] / "xsd" / "lienthong-evidence.xsd"


def lienthong(world, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "LIENTHONG_HOME": str(world.data_dir), "LIENTHONG_DATABASE_URL": world.database_url}
    proc = subprocess.run(
        [str(BIN / "lienthong"), *args], capture_output=True, text=True, timeout=120, env=env
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def gateway_fingerprint(world) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(world.gateway_cert)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def a_life(world):
    """A document to two recipients, fetched, acknowledged and answered: (document bytes, docId)."""
    vpcp, nghean, quangninh = world.client("vpcp"), world.client("nghean"), world.client("quangninh")
    sealed = world.seal(new_document(G22, [H41, H49]), G22)
    doc_id = vpcp.send(sealed).docId
    for client, code in ((nghean, H41), (quangninh, H49)):
        client.fetch(doc_id)
        client.ack(doc_id, "done")
        client.send(status_for(sealed, code, "03", "Đã vào sổ"))
    return sealed, doc_id


def test_receipts_for_submission_delivery_and_status(world):
    vpcp, nghean = world.client("vpcp"), world.client("nghean")
    sealed = world.seal(new_document(G22, [H41, H49]), G22)
    sent = vpcp.send(sealed)
    # the client checked it (pinned gateway certificate, digest of what it sent); check it again here
    facts = check_receipt(sent.receipt, world.gateway_cert, sealed)
    assert facts.kind == "submission" and facts.doc_id == sent.docId
    assert facts.sender == G22 and facts.sender_system == "vpcp" and list(facts.recipients) == [H41, H49]
    assert facts.packet_sha256 == hashlib.sha256(sealed).hexdigest()
    assert facts.signer_fingerprint == fingerprint_sha256(world.pki.seals[G22].cert)
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    assert schema.validate(etree.fromstring(sent.receipt)), schema.error_log
    # sending the same bytes again gives the same receipt
    assert vpcp.send(sealed).receipt == sent.receipt

    nghean.fetch(sent.docId)
    nghean.ack(sent.docId, "processing")
    nghean.ack(sent.docId, "done")
    status = nghean.send(status_for(sealed, H41, "03", "Đã vào sổ"))
    assert check_receipt(status.receipt, world.gateway_cert).kind == "submission"

    receipts = [check_receipt(r, world.gateway_cert, sealed) for r in vpcp.receipts(sent.docId, sealed)]
    assert [(r.kind, tuple(r.recipients)) for r in receipts] == [
        ("submission", (H41, H49)),
        ("delivery", (H41,)),
        ("status", (H41,)),
    ]
    assert receipts[1].by_system == "nghean" and receipts[2].status_code == "03"
    assert receipts[2].status_doc_id == status.docId
    recorded = {rid for e in world.audit_entries() for rid in e.get("receipts", [])}
    assert {r.receipt_id for r in receipts} <= recorded  # each receipt is named by its event's audit entry
    # a recipient sees the submission receipt and its own only; a stranger nothing
    assert [
        check_receipt(r, world.gateway_cert).kind for r in world.client("quangninh").receipts(sent.docId)
    ] == ["submission"]
    with pytest.raises(GatewayFault) as caught:
        world.client("yte").receipts(sent.docId)
    assert caught.value.code == "Client.Access.NotAddressee"


def test_the_client_refuses_a_receipt_that_is_not_the_gateways(world, tmp_path):
    sealed = world.seal(new_document(G22, [H41]), G22)
    sent = world.client("vpcp").send(sealed)
    other = world.seal(new_document(G22, [H41]), G22)
    with pytest.raises(ReceiptRejected, match="digest"):
        check_receipt(sent.receipt, world.gateway_cert, other)
    # the same receipt, signed by another key (an agency's), is refused
    root = etree.fromstring(sent.receipt)
    root.remove(root[-1])
    forger = DocumentSigner(world.pki.seals[H41].key_pem, world.pki.seals[H41].cert_pem)
    with pytest.raises(ReceiptRejected, match="another key"):
        check_receipt(forger.sign(root), world.gateway_cert, sealed)
    # a changed receipt no longer verifies
    changed = sent.receipt.replace(H41.encode(), H49.encode())
    with pytest.raises(ReceiptRejected):
        check_receipt(changed, world.gateway_cert, sealed)


def test_the_audit_chain_records_every_event_and_a_refusal(world):
    head = world.audit_head()
    sealed, doc_id = a_life(world)
    entries = world.audit_entries(head)
    about = [
        (e["event"], e.get("recipient"), e.get("statusCode") or e.get("state"))
        for e in entries
        if e.get("docId") == doc_id
    ]
    assert about == [
        ("accepted", None, None),
        ("delivered", H41, None),
        ("acknowledged", H41, "done"),
        ("delivered", H49, None),
        ("acknowledged", H49, "done"),
    ]
    assert [e["statusCode"] for e in entries if e["event"] == "status" and e.get("answers") == doc_id] == [
        "03",
        "03",
    ]
    assert entries[0]["sha256"] == hashlib.sha256(sealed).hexdigest()
    assert [e["seq"] for e in entries] == list(range(head + 1, head + 1 + len(entries)))
    with pytest.raises(GatewayFault) as caught:
        world.client("vpcp").send(b"<not-xml", sign=False)
    refusal = world.audit_entries(head + len(entries))
    assert [(e["event"], e["code"], e["correlationId"]) for e in refusal] == [
        ("refused", caught.value.code, caught.value.correlation_id)
    ]


def test_operator_changes_are_in_the_chain(world):
    head = world.audit_head()
    lienthong(world, "agency", "set", H49, "--allow-sha1", "on")
    lienthong(world, "agency", "set", H49, "--allow-sha1", "off")
    changes = [(e["event"], e["action"], e["agency"], e["allowSha1"]) for e in world.audit_entries(head)]
    assert changes == [("directory", "seal-policy", H49, True), ("directory", "seal-policy", H49, False)]


def test_evidence_bundle_verifies_offline_and_with_xmlsec1(world, tmp_path):
    sealed, doc_id = a_life(world)
    bundle = tmp_path / "evidence.zip"
    lienthong(world, "evidence", "export", doc_id, "-o", str(bundle))
    trust = [
        "--trust", str(world.data_dir / "gateway-cert.pem"),
        "--seal-trust", str(world.trust_file),
    ]  # fmt: skip
    out = lienthong(world, "evidence", "verify", str(bundle), *trust).stdout
    assert "the bundle verifies" in out and "FAILED" not in out
    assert f"{G22} (system vpcp) sent it to {H41}, {H49}" in out
    assert f"{H41} acknowledged it as stored" in out and f"{H49} sent status 03" in out
    report = json.loads(lienthong(world, "evidence", "verify", str(bundle), *trust, "--json").stdout)
    assert (
        report["ok"]
        and report["gateway_anchored"]
        and report["submission"]["sha256"] == hashlib.sha256(sealed).hexdigest()
    )
    assert {d["recipient"] for d in report["deliveries"]} == {H41, H49}
    assert not any("no --trust CA" in n for n in report["notes"])  # the seals chain to the test CA

    # nothing but the zip and xmlsec1: every signature of the bundle, as the README shows
    files = tmp_path / "files"
    with zipfile.ZipFile(bundle) as z:
        z.extractall(files)
        assert (files / "packet.edxml").read_bytes() == sealed
    if shutil.which("xmlsec1") is None:
        pytest.skip("xmlsec1 is not installed (apt install xmlsec1)")
    gateway_pem = str(world.data_dir / "gateway-cert.pem")
    checks = [
        ("manifest.xml", gateway_pem),
        ("audit/checkpoint-end.xml", gateway_pem),
        ("packet.edxml", str(world.trust_file)),
    ]
    checks += [(str(p.relative_to(files)), gateway_pem) for p in (files / "receipts").iterdir()]
    for name, trusted in checks:
        proc = subprocess.run(
            ["xmlsec1", "--verify", "--trusted-pem", trusted, str(files / name)],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0 and "OK" in proc.stderr + proc.stdout, (name, proc.stderr)


def _rewrite(bundle: bytes, world, change) -> bytes:  # type: ignore[no-untyped-def]
    """The bundle with ``change(files)`` applied and the manifest signed again with the gateway's own key
    (an insider who holds the key: what remains to catch is what the contents say)."""
    with zipfile.ZipFile(io.BytesIO(bundle)) as z:
        files = {n: z.read(n) for n in z.namelist()}
    files.pop("manifest.xml")
    change(files)
    signer = DocumentSigner((world.data_dir / "gateway-key.pem").read_bytes(), world.gateway_cert)
    manifest = signer.sign(
        ev.manifest_tree(
            ev.read_manifest(verify_document(_manifest(bundle)).root)[0],
            files,
            ev.parse_iso("2026-01-01T00:00:00.000000Z"),
        )
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("manifest.xml", manifest)
        for name, data in files.items():
            z.writestr(name, data)
    return out.getvalue()


def _manifest(bundle: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(bundle)) as z:
        return z.read("manifest.xml")


def _edit(bundle: bytes, change) -> bytes:  # type: ignore[no-untyped-def]
    """The bundle with ``change(files)`` applied and the manifest left as it was."""
    with zipfile.ZipFile(io.BytesIO(bundle)) as z:
        files = {n: z.read(n) for n in z.namelist()}
    change(files)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out.getvalue()


def test_a_tampered_bundle_is_refused(world, tmp_path):
    from gateway.bundle import verify_bundle

    _sealed, doc_id = a_life(world)
    _other, other_id = a_life(world)
    path = tmp_path / "a.zip"
    lienthong(world, "evidence", "export", doc_id, "-o", str(path))
    bundle = path.read_bytes()
    lienthong(world, "evidence", "export", other_id, "-o", str(tmp_path / "b.zip"))
    other = (tmp_path / "b.zip").read_bytes()
    anchors = [world.gateway_cert]
    assert verify_bundle(bundle, anchors, [world.pki.ca.cert_pem]).ok

    def receipt_name(files, kind):  # type: ignore[no-untyped-def]
        return next(n for n in sorted(files) if n.startswith(f"receipts/{kind}-"))

    with zipfile.ZipFile(io.BytesIO(other)) as z:
        foreign_receipt = z.read(receipt_name(z.namelist(), "delivery"))
    forger = DocumentSigner(world.pki.seals[H41].key_pem, world.pki.seals[H41].cert_pem)

    def forged(files):  # type: ignore[no-untyped-def]
        name = receipt_name(files, "submission")
        root = etree.fromstring(files[name])
        root.remove(root[-1])
        files[name] = forger.sign(root)

    cases = {
        "added": (_edit(bundle, lambda f: f.__setitem__("extra.txt", b"x")), "extra.txt was added"),
        "removed": (_edit(bundle, lambda f: f.pop(receipt_name(f, "status"))), "was removed"),
        "changed": (
            _edit(bundle, lambda f: f.__setitem__("packet.edxml", f["packet.edxml"] + b" ")),
            "packet.edxml was changed",
        ),
        "receipt of another packet": (
            _rewrite(bundle, world, lambda f: f.__setitem__(receipt_name(f, "delivery"), foreign_receipt)),
            "is about another packet",
        ),
        "receipt signed by another key": (_rewrite(bundle, world, forged), "signed by another key"),
        "audit entry changed": (
            _rewrite(
                bundle,
                world,
                lambda f: f.__setitem__(
                    "audit/entries.jsonl", f["audit/entries.jsonl"].replace(b"done", b"fail", 1)
                ),
            ),
            "do not lead to the signed checkpoint",
        ),
        "manifest signed by another key": (
            _edit(bundle, lambda f: f.__setitem__("manifest.xml", forger.sign(_unsigned(f["manifest.xml"])))),
            "did not trust",
        ),
    }
    for what, (data, expected) in cases.items():
        report = verify_bundle(data, anchors, [world.pki.ca.cert_pem])
        assert not report.ok, what
        assert any(expected in p for p in report.problems), (what, report.problems)
    # and the command exits non-zero
    (tmp_path / "bad.zip").write_bytes(cases["changed"][0])
    proc = lienthong(
        world,
        "evidence",
        "verify",
        str(tmp_path / "bad.zip"),
        "--trust",
        str(world.data_dir / "gateway-cert.pem"),
        check=False,
    )
    assert proc.returncode == 1 and "does NOT verify" in proc.stdout


def _unsigned(signed: bytes) -> etree._Element:
    root = etree.fromstring(signed)
    root.remove(root[-1])
    return root


def test_audit_verify_finds_rows_edited_deleted_inserted_or_reordered(world):
    a_life(world)
    lienthong(world, "audit", "seal")
    a_life(world)  # entries after the checkpoint too
    assert "the chain is intact" in lienthong(world, "audit", "verify").stdout
    head = world.audit_head()
    with world.db.unit_of_work() as session:
        checkpoint = session.scalar(select(func_max()))
    target = checkpoint - 2  # an entry covered by the signed checkpoint

    def row(seq):  # type: ignore[no-untyped-def]
        with world.db.unit_of_work() as session:
            e = session.get(AuditEntry, seq)
            return (e.seq, e.kind, e.doc_id, bytes(e.content), e.hash)

    def put(*rows):  # type: ignore[no-untyped-def]
        with world.db.engine.begin() as conn:
            for seq, kind, doc_id, content, hash_ in rows:
                conn.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": seq})
                conn.execute(
                    text(
                        "INSERT INTO audit_log (seq, kind, doc_id, content, hash) VALUES (:s, :k, :d, :c, :h)"
                    ),
                    {"s": seq, "k": kind, "d": doc_id, "c": content, "h": hash_},
                )

    def broken_at() -> tuple[int, dict]:
        proc = lienthong(world, "audit", "verify", "--json", check=False)
        report = json.loads(proc.stdout)
        assert proc.returncode == 1 and not report["ok"], report
        return (report["firstBreak"] or {}).get("seq"), report

    original, following = row(target), row(target + 1)
    # edited: the content says something else
    put((target, original[1], original[2], original[3].replace(b'"seq"', b'"seq" ', 1), original[4]))
    assert broken_at()[0] == target
    # edited with a recomputed hash of its own: the next entry no longer follows
    forged_content = (
        original[3].replace(b"vpcp", b"evil", 1) if b"vpcp" in original[3] else original[3] + b" "
    )
    previous_hash = bytes.fromhex(row(target - 1)[4])
    put(
        (
            target,
            original[1],
            original[2],
            forged_content,
            ev.chain(previous_hash, ev.content_digest(forged_content)).hex(),
        )
    )
    assert broken_at()[0] == target + 1
    put(original)
    # deleted
    with world.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": target})
    seq, report = broken_at()
    assert seq == target and "missing" in report["firstBreak"]["reason"]
    put(original)
    # reordered: two entries swap places
    put((target, *following[1:]), (target + 1, *original[1:]))
    assert broken_at()[0] == target
    put(original, following)
    # inserted after the head
    put((head + 1, "accepted", None, ev.canonical({"seq": head + 1, "event": "accepted"}), "00" * 32))
    assert broken_at()[0] == head + 1
    with world.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": head + 1})
    # a checkpoint whose signature does not verify
    with world.db.unit_of_work() as session:
        content = bytes(session.get(AuditCheckpoint, checkpoint).content)
    with world.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_checkpoints SET content = :c WHERE seq = :s"),
            {
                "c": content.replace(b"<ChainHash>", b"<ChainHash>0", 1).replace(
                    b"</ChainHash>", b"</ChainHash>", 1
                ),
                "s": checkpoint,
            },
        )
    _seq, report = broken_at()
    assert any(f"checkpoint {checkpoint}" in p for p in report["problems"])
    with world.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_checkpoints SET content = :c WHERE seq = :s"), {"c": content, "s": checkpoint}
        )
    assert "the chain is intact" in lienthong(world, "audit", "verify").stdout
    # --from starts at the newest checkpoint at or before N
    report = json.loads(lienthong(world, "audit", "verify", "--from", str(checkpoint), "--json").stdout)
    assert report["ok"] and report["entries"] == head - checkpoint


def func_max():  # type: ignore[no-untyped-def]
    from sqlalchemy import func

    return func.max(AuditCheckpoint.seq)


def test_checkpoints_chain_and_a_broken_chain_is_never_signed(world):
    a_life(world)
    lienthong(world, "audit", "seal")
    a_life(world)
    lienthong(world, "audit", "seal")
    a_life(world)
    lienthong(world, "audit", "seal")
    assert "the chain is intact" in lienthong(world, "audit", "verify").stdout
    with world.db.unit_of_work() as session:
        middle = sorted(session.scalars(select(AuditCheckpoint.seq)))[-2]
        row = session.get(AuditCheckpoint, middle)
        saved = (row.seq, row.hash, row.created_at, bytes(row.content))
    # a checkpoint deleted from the middle is missed by the next one
    with world.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_checkpoints WHERE seq = :s"), {"s": middle})
    proc = lienthong(world, "audit", "verify", "--json", check=False)
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and any("was deleted or replaced" in p for p in report["problems"]), report
    with world.db.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO audit_checkpoints (seq, hash, created_at, content) VALUES (:s, :h, :t, :c)"),
            dict(zip(("s", "h", "t", "c"), saved, strict=True)),
        )
    # an entry after the newest checkpoint is changed: the gateway refuses to sign that head
    a_life(world)
    head = world.audit_head()
    with world.db.engine.begin() as conn:
        original = conn.execute(
            text("SELECT content FROM audit_log WHERE seq = :s"), {"s": head}
        ).scalar_one()
        conn.execute(
            text("UPDATE audit_log SET content = :c WHERE seq = :s"), {"c": bytes(original) + b" ", "s": head}
        )
    proc = lienthong(world, "audit", "seal", check=False)
    assert proc.returncode == 1 and "broken" in proc.stderr
    with world.db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET content = :c WHERE seq = :s"), {"c": original, "s": head})
    assert "checkpoint signed" in lienthong(world, "audit", "seal").stdout


def test_a_bundle_needs_a_trusted_gateway_certificate_and_survives_odd_text(world, tmp_path):
    from gateway.bundle import verify_bundle

    vpcp, nghean = world.client("vpcp"), world.client("nghean")
    sealed = world.seal(new_document(G22, [H41]), G22)
    doc_id = vpcp.send(sealed).docId
    nghean.fetch(doc_id)
    nghean.ack(doc_id, "fail", "dòng\u2028mới\u0085và\nthêm")  # line separators in a reason
    nghean.ack(doc_id, "done")
    path = tmp_path / "b.zip"
    lienthong(world, "evidence", "export", doc_id, "-o", str(path))
    assert verify_bundle(path.read_bytes(), [world.gateway_cert]).ok
    report = verify_bundle(path.read_bytes(), [])
    assert not report.ok and any("no gateway certificate to trust" in p for p in report.problems)
    proc = lienthong(world, "evidence", "verify", str(path), check=False)
    assert proc.returncode == 2  # --trust is required
    for junk in (b"", b"PK\x03\x04garbage", path.read_bytes()[:200]):
        assert not verify_bundle(junk, [world.gateway_cert]).ok
