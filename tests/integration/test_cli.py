"""The two command lines as an operator and an agency's integrator use them, and `lienthong demo`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.launcher import GatewayProcess
from tests.support.packets import new_document, status_for

BIN = Path(sys.executable).parent
G22, H41 = "000.00.00.G22", "000.00.00.H41"


def lienthong(*args: str, data_dir: Path, check: bool = True, env: dict | None = None):
    proc = subprocess.run(
        [str(BIN / "lienthong"), "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}, **(env or {})},
    )
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


AGENCY_OF = {"vpcp": G22, "nghean": H41}
PKI_DIR: list[Path] = []  # set by the `operated` fixture: the test PKI that `lienthong pki` made


def client(url: str, system: str, secret_file: Path, *args: str, check: bool = True):
    """lienthong-client as the system's operator runs it: sealing with its key, checking with the CA."""
    pki, agency = PKI_DIR[0], AGENCY_OF[system]
    proc = subprocess.run(
        [
            str(BIN / "lienthong-client"),
            "--endpoint",
            url,
            "--system",
            system,
            "--secret-file",
            str(secret_file),
            "--sign-key",
            str(pki / f"{agency}.key"),
            "--sign-cert",
            str(pki / f"{agency}.pem"),
            "--trust",
            str(pki / "ca.pem"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def test_console_scripts_are_installed_and_document_themselves():
    for script, commands in (
        (
            "lienthong",
            [
                "init",
                "db",
                "agency",
                "system",
                "serve",
                "trace",
                "overdue",
                "audit",
                "evidence",
                "demo",
                "wsdl",
            ],
        ),
        (
            "lienthong-client",
            ["send", "inbox", "fetch", "ack", "sent", "receipts", "trace", "overdue", "agencies", "sync"],
        ),
    ):
        out = subprocess.run([str(BIN / script), "--help"], capture_output=True, text=True, check=True).stdout
        for command in commands:
            assert command in out
            sub = subprocess.run([str(BIN / script), command, "--help"], capture_output=True, text=True)
            assert sub.returncode == 0 and "usage:" in sub.stdout, (script, command, sub.stderr)
    for nested in (
        ["db", "upgrade"],
        ["agency", "add"],
        ["agency", "list"],
        ["agency", "disable"],
        ["system", "add"],
        ["system", "list"],
    ):
        sub = subprocess.run([str(BIN / "lienthong"), *nested, "--help"], capture_output=True, text=True)
        assert sub.returncode == 0 and "usage:" in sub.stdout


@pytest.fixture(scope="module")
def operated(tmp_path_factory):
    """A gateway set up only through `lienthong` commands, then served."""
    data = tmp_path_factory.mktemp("operator")
    pki_dir = data.parent / f"{data.name}-pki"
    made = lienthong(
        "pki",
        "--out",
        str(pki_dir),
        "--agency",
        f"{G22}=Văn phòng Chính phủ",
        "--agency",
        f"{H41}=UBND tỉnh Nghệ An",
        data_dir=data,
    )
    assert "NOT FOR PRODUCTION" in made.stdout
    lienthong("init", data_dir=data)
    (data / "trust-anchors.pem").write_bytes((pki_dir / "ca.pem").read_bytes())
    lienthong("db", "upgrade", data_dir=data)  # idempotent
    lienthong(
        "agency", "add", G22, "--name", "Văn phòng Chính phủ", "--email", "vanthu@chinhphu.vn", data_dir=data
    )
    lienthong("agency", "add", H41, "--name", "UBND tỉnh Nghệ An", "--parent", G22, data_dir=data)
    lienthong("agency", "cert", "add", G22, str(pki_dir / f"{G22}.pem"), data_dir=data)
    lienthong("agency", "cert", "add", H41, str(pki_dir / f"{H41}.pem"), data_dir=data)
    secrets = {}
    for system, agency in (("vpcp", G22), ("nghean", H41)):
        proc = lienthong("system", "add", system, "--agency", agency, "--generate-secret", data_dir=data)
        secret = proc.stdout.strip()
        assert len(secret) >= 32 and secret not in proc.stderr
        path = data / f"{system}.secret"
        path.write_text(secret + "\n")
        secrets[system] = path
    PKI_DIR[:] = [pki_dir]
    with GatewayProcess(data) as gw:
        yield data, gw, secrets


def test_operator_commands(operated):
    data, _gw, _secrets = operated
    agencies = json.loads(lienthong("agency", "list", "--json", data_dir=data).stdout)
    assert [(a["code"], a["name"], a["active"]) for a in agencies] == [
        (G22, "Văn phòng Chính phủ", True),
        (H41, "UBND tỉnh Nghệ An", True),
    ]
    assert agencies[1]["parentCode"] == G22
    systems = json.loads(lienthong("system", "list", "--json", data_dir=data).stdout)
    assert {s["id"]: s["agencies"] for s in systems} == {"nghean": [H41], "vpcp": [G22]}
    assert all("secret" not in json.dumps(s).lower() for s in systems)
    # secrets are stored only as salted hashes
    db_bytes = b"".join(p.read_bytes() for p in data.glob("lienthong.db*"))
    assert len(db_bytes) > 0
    for path in _secrets.values():
        assert path.read_text().strip().encode() not in db_bytes
    table = lienthong("agency", "list", data_dir=data).stdout
    assert "2 agencies" in table and G22 in table and "UBND tỉnh Nghệ An" in table


def test_operator_refusals_are_clear(operated, tmp_path):
    data, _gw, _secrets = operated
    weak = tmp_path / "weak.secret"
    weak.write_text("password")
    proc = lienthong(
        "system", "add", "x", "--agency", G22, "--secret-file", str(weak), data_dir=data, check=False
    )
    assert proc.returncode == 1 and "at least 32" in proc.stderr
    proc = lienthong(
        "system", "add", "y", "--agency", "000.00.00.Z99", "--generate-secret", data_dir=data, check=False
    )
    assert proc.returncode == 1 and "000.00.00.Z99" in proc.stderr
    proc = lienthong("agency", "disable", "000.00.00.Z99", data_dir=data, check=False)
    assert proc.returncode == 1
    proc = lienthong("agency", "list", data_dir=data, check=False, env={"LIENTHONG_MAX_PACKET_BYTES": "huge"})
    assert proc.returncode == 1 and "max_packet_bytes" in proc.stderr


def test_client_commands_end_to_end(operated, tmp_path):
    _data, gw, secrets = operated
    (tmp_path / "unsigned.edxml").write_bytes(new_document(G22, [H41]))
    signed = tmp_path / "doc.edxml"
    client(gw.url, "vpcp", secrets["vpcp"], "sign", str(tmp_path / "unsigned.edxml"), "-o", str(signed))
    doc = signed.read_bytes()
    assert b"<ds:Signature" in doc
    sent = json.loads(
        client(gw.url, "vpcp", secrets["vpcp"], "send", str(tmp_path / "doc.edxml"), "--json").stdout
    )
    doc_id = sent[0]["docId"]
    assert sent[0]["recipients"] == [H41] and sent[0]["messageType"] == "edoc"

    inbox = json.loads(client(gw.url, "nghean", secrets["nghean"], "inbox", "--json").stdout)
    assert [i["docId"] for i in inbox] == [doc_id] and inbox[0]["from"] == G22

    out = tmp_path / "received"
    client(gw.url, "nghean", secrets["nghean"], "fetch", doc_id, "-o", str(out))
    stored = list(out.glob(f"*/*/{doc_id}.edxml"))
    assert len(stored) == 1 and stored[0].read_bytes() == doc
    year, month = stored[0].parent.parent.name, stored[0].parent.name
    assert len(year) == 4 and month == str(int(month))  # DIR/yyyy/m/DOCID.edxml

    client(gw.url, "nghean", secrets["nghean"], "ack", doc_id, "--fail", "chưa đọc được")
    rows = json.loads(client(gw.url, "vpcp", secrets["vpcp"], "sent", "--json", "--doc-id", doc_id).stdout)
    assert rows[0]["transportState"] == "fail" and rows[0]["failReason"] == "chưa đọc được"
    client(gw.url, "nghean", secrets["nghean"], "ack", doc_id)
    assert json.loads(client(gw.url, "nghean", secrets["nghean"], "inbox", "--json").stdout) == []

    (tmp_path / "status.edxml").write_bytes(status_for(doc, H41, "03", "Đã vào sổ"))
    client(gw.url, "nghean", secrets["nghean"], "send", str(tmp_path / "status.edxml"))
    status_inbox = json.loads(client(gw.url, "vpcp", secrets["vpcp"], "inbox", "--status", "--json").stdout)
    assert [s["statusCode"] for s in status_inbox] == ["03"]

    # the trace, as the sender sees it (lienthong-client) and as the operator does (lienthong)
    trace = json.loads(client(gw.url, "vpcp", secrets["vpcp"], "trace", doc_id, "--json").stdout)
    assert [(e["kind"], e["code"]) for e in trace["events"]] == [
        ("accepted", None),
        ("delivered", None),
        ("acknowledged", "fail"),
        ("acknowledged", "done"),
        ("status", "03"),
    ]
    assert (
        trace["events"][2]["detail"] == "chưa đọc được" and trace["recipients"][0]["businessStatus"] == "03"
    )
    operator = json.loads(lienthong("trace", doc_id, "--json", data_dir=_data).stdout)
    assert operator["events"] == trace["events"] and operator["from"] == G22
    text = lienthong("trace", doc_id, data_dir=_data).stdout
    assert "status 03 accepted: Đã vào sổ" in text and "acknowledged fail: chưa đọc được" in text
    assert lienthong("trace", "no-such-doc", data_dir=_data, check=False).returncode == 1

    agencies = json.loads(client(gw.url, "vpcp", secrets["vpcp"], "agencies", "--json").stdout)
    assert {a["code"] for a in agencies} == {G22, H41}


def test_client_sync_loop(operated, tmp_path):
    _data, gw, secrets = operated
    for i in range(3):
        (tmp_path / f"u{i}.edxml").write_bytes(new_document(G22, [H41]))
        client(
            gw.url,
            "vpcp",
            secrets["vpcp"],
            "sign",
            str(tmp_path / f"u{i}.edxml"),
            "-o",
            str(tmp_path / f"d{i}.edxml"),
        )
    docs = [(tmp_path / f"d{i}.edxml").read_bytes() for i in range(3)]
    client(gw.url, "vpcp", secrets["vpcp"], "send", *[str(tmp_path / f"d{i}.edxml") for i in range(3)])
    out = tmp_path / "inbox"
    proc = client(gw.url, "nghean", secrets["nghean"], "sync", "-o", str(out))
    assert "3 stored and acknowledged, 0 failed" in proc.stdout
    assert sorted(p.read_bytes() for p in out.rglob("*.edxml")) == sorted(docs)
    assert not list(out.rglob("*.part"))
    assert json.loads(client(gw.url, "nghean", secrets["nghean"], "inbox", "--json").stdout) == []
    # nothing pending: a second run stores nothing
    assert "0 stored" in client(gw.url, "nghean", secrets["nghean"], "sync", "-o", str(out)).stdout


def test_client_reports_faults_with_their_code(operated, tmp_path):
    _data, gw, secrets = operated
    (tmp_path / "nowhere.edxml").write_bytes(new_document(G22, ["000.00.00.X99"]))
    proc = client(gw.url, "vpcp", secrets["vpcp"], "send", str(tmp_path / "nowhere.edxml"), check=False)
    assert proc.returncode == 1
    assert "Client.Routing.UnknownRecipient" in proc.stderr and "correlation id" in proc.stderr
    # a file that is not XML cannot be sealed: refused locally, before anything is sent
    (tmp_path / "bad.edxml").write_bytes(b"not xml")
    proc = client(gw.url, "vpcp", secrets["vpcp"], "send", str(tmp_path / "bad.edxml"), check=False)
    assert proc.returncode == 1 and "Client.Packet.NotXml" in proc.stderr
    proc = client("http://127.0.0.1:9/", "vpcp", secrets["vpcp"], "agencies", check=False)
    assert proc.returncode == 3


def test_demo_runs_the_whole_exchange_and_leaves_nothing_running(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
    env["TMPDIR"] = str(tmp_path)
    env["COLUMNS"] = "160"
    proc = subprocess.run(
        [str(BIN / "lienthong"), "demo"], capture_output=True, text=True, timeout=180, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for text in (
        G22,
        H41,
        "000.00.00.H49",
        "01 arrived",
        "03 accepted",
        "recall-requested",
        "recalled",
        "recall-refused",
        "signed receipt",
        "the bundle verifies",
        "demo complete",
    ):
        assert text in out, out
    table = out[out.index("What 000.00.00.G22 sees") : out.index("6. ")]
    assert table.count("done") == 2 and table.count("03 accepted") == 2
    assert list(tmp_path.iterdir()) == []  # the temporary gateway and its database are gone
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path) not in ps and "lienthong-demo" not in ps


def test_seal_policy_commands(operated, tmp_path):
    from lienthong_client import GatewayFault, LienthongClient

    data, gw, secrets = operated
    unsigned = LienthongClient(gw.url, "nghean", secrets["nghean"].read_text().strip(), timeout=30)
    # require-signature off for H41: its unsigned packet goes through, and agency list shows it
    lienthong("agency", "set", H41, "--require-signature", "off", data_dir=data)
    assert unsigned.send(new_document(H41, [G22])).docId
    rows = {a["code"]: a for a in json.loads(lienthong("agency", "list", "--json", data_dir=data).stdout)}
    assert rows[H41]["requireSignature"] is False and rows[G22]["requireSignature"] is True
    assert len(rows[G22]["certificates"]) == 1
    table = lienthong("agency", "list", data_dir=data).stdout
    assert "OFF" in table
    lienthong("agency", "set", H41, "--require-signature", "on", "--allow-sha1", "on", data_dir=data)
    rows = {a["code"]: a for a in json.loads(lienthong("agency", "list", "--json", data_dir=data).stdout)}
    assert rows[H41]["requireSignature"] is True and rows[H41]["allowSha1"] is True
    lienthong("agency", "set", H41, "--allow-sha1", "off", data_dir=data)
    with pytest.raises(GatewayFault) as caught:
        unsigned.send(new_document(H41, [G22]))
    assert caught.value.code == "Client.Seal.Missing"
    proc = lienthong("agency", "set", H41, data_dir=data, check=False)
    assert proc.returncode == 1 and "nothing to set" in proc.stderr


def test_offline_verify_command(operated, tmp_path):
    data, gw, secrets = operated
    pki = PKI_DIR[0]
    (tmp_path / "unsigned.edxml").write_bytes(new_document(G22, [H41]))
    good = tmp_path / "good.edxml"
    client(gw.url, "vpcp", secrets["vpcp"], "sign", str(tmp_path / "unsigned.edxml"), "-o", str(good))
    bad = tmp_path / "bad.edxml"
    bad.write_bytes(good.read_bytes().replace("thử nghiệm".encode(), b"thu nghiem"))
    proc = lienthong("verify", str(good), "--trust", str(pki / "ca.pem"), data_dir=data)
    assert "VALID" in proc.stdout and G22 in proc.stdout and "rsa-sha256" in proc.stdout
    proc = lienthong(
        "verify", str(good), str(bad), "--trust", str(pki / "ca.pem"), "--json", data_dir=data, check=False
    )
    assert proc.returncode == 1
    reports = json.loads(proc.stdout)
    assert reports[0]["valid"] is True and reports[0]["agency"] == G22
    assert reports[0]["signerAgencyAttribute"] == [G22] and reports[0]["signatureAlgorithm"] == "rsa-sha256"
    assert reports[1]["valid"] is False and reports[1]["code"] == "Client.Seal.DigestMismatch"
    # without the CA the seal cannot be trusted
    other = tmp_path / "other-ca"
    lienthong("pki", "--out", str(other), "--agency", f"{G22}=X", data_dir=data)
    proc = lienthong("verify", str(good), "--trust", str(other / "ca.pem"), data_dir=data, check=False)
    assert (
        proc.returncode == 1
        and "INVALID" in proc.stdout
        and "Client.Seal.UntrustedCertificate" in proc.stdout
    )


def test_crl_add_revokes_a_seal_on_the_running_gateway(operated, tmp_path):
    """The operator loads a CRL; the running gateway refuses the revoked seal on the next request."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from gateway import pki as testpki

    data, gw, secrets = operated
    pki_dir = PKI_DIR[0]
    ca = testpki.Issued(
        key=serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), None),
        cert=x509.load_pem_x509_certificate((pki_dir / "ca.pem").read_bytes()),
    )
    import datetime as dt

    # a second seal for G22, registered, then revoked
    second = testpki.issue_agency_cert(ca, G22, "Văn phòng Chính phủ")
    (tmp_path / "second.pem").write_bytes(second.cert_pem)
    (tmp_path / "second.key").write_bytes(second.key_pem)
    lienthong("agency", "cert", "add", G22, str(tmp_path / "second.pem"), data_dir=data)
    from lienthong_client.seals import Signer

    signer = Signer.from_pem(tmp_path / "second.key", tmp_path / "second.pem")
    packet = tmp_path / "p.edxml"
    packet.write_bytes(signer.sign(new_document(G22, [H41])))
    crl = tmp_path / "ca.crl.pem"
    crl.write_bytes(testpki.make_crl(ca, [(second.cert.serial_number, dt.datetime.now(dt.timezone.utc))]))
    proc = lienthong("crl", "add", str(crl), data_dir=data)
    assert "1 revoked" in proc.stdout
    proc = client(gw.url, "vpcp", secrets["vpcp"], "send", str(packet), check=False)
    assert proc.returncode == 1 and "Client.Seal.CertificateRevoked" in proc.stderr
    for leftover in (data / "crls").iterdir():
        leftover.unlink()


def test_signing_systems_are_registered_with_their_certificates(operated, tmp_path):
    from gateway import pki as testpki

    data, _gw, _secrets = operated
    ca = testpki.make_ca()
    first, renewed = (testpki.issue_agency_cert(ca, "edoc", "edoc system") for _ in range(2))
    (tmp_path / "first.pem").write_bytes(first.cert_pem)
    (tmp_path / "renewed.pem").write_bytes(renewed.cert_pem)
    lienthong(
        "system", "add", "signer", "--agency", G22, "--cert", str(tmp_path / "first.pem"), data_dir=data
    )
    lienthong("system", "cert", "add", "signer", str(tmp_path / "renewed.pem"), data_dir=data)
    systems = {s["id"]: s for s in json.loads(lienthong("system", "list", "--json", data_dir=data).stdout)}
    assert systems["signer"]["auth"] == "x509" and len(systems["signer"]["certificates"]) == 2
    assert systems["vpcp"]["auth"] == "username-token"
    assert "x509" in lienthong("system", "list", data_dir=data).stdout
    proc = lienthong(
        "system",
        "add",
        "nocert",
        "--agency",
        G22,
        "--auth",
        "x509",
        "--generate-secret",
        data_dir=data,
        check=False,
    )
    assert proc.returncode == 1 and "--cert" in proc.stderr
    proc = lienthong("system", "add", "nothing", "--agency", G22, data_dir=data, check=False)
    assert proc.returncode == 1 and "secret" in proc.stderr


def test_receipts_kept_beside_sent_packets_and_the_operators_audit_chain(operated, tmp_path):
    import hashlib

    from gateway.store.db import Database
    from gateway.store.models import AuditEntry
    from lienthong_client.receipts import check_receipt

    data, gw, secrets = operated
    gateway_cert = data / "gateway-cert.pem"
    (tmp_path / "doc.edxml").write_bytes(new_document(G22, [H41]))
    store = tmp_path / "sent"
    sent = json.loads(
        client(
            gw.url, "vpcp", secrets["vpcp"], "--gateway-cert", str(gateway_cert),
            "send", str(tmp_path / "doc.edxml"), "--store", str(store), "--json",
        ).stdout
    )[0]  # fmt: skip
    doc_id = sent["docId"]
    packet = next(store.glob(f"*/*/{doc_id}.edxml")).read_bytes()
    receipt = next(store.glob(f"*/*/{doc_id}.receipt.xml")).read_bytes()
    facts = check_receipt(receipt, gateway_cert.read_bytes(), packet)  # the sealed bytes that were sent
    assert facts.doc_id == doc_id and facts.packet_sha256 == hashlib.sha256(packet).hexdigest()
    out = client(
        gw.url, "vpcp", secrets["vpcp"], "--gateway-cert", str(gateway_cert),
        "receipts", doc_id, "-o", str(tmp_path / "receipts"), "--packet", str(next(store.glob(f"*/*/{doc_id}.edxml"))),
    ).stdout  # fmt: skip
    assert (
        "1 receipts" in out and (tmp_path / "receipts" / doc_id / "submission-1.xml").read_bytes() == receipt
    )

    # what the operator did to set the gateway up is in the chain, and the chain is whole
    db = Database(f"sqlite:///{data / 'lienthong.db'}")
    with db.unit_of_work() as session:
        from sqlalchemy import select

        events = [json.loads(c) for c in session.scalars(select(AuditEntry.content).order_by(AuditEntry.seq))]
    db.dispose()
    actions = [(e["event"], e.get("action")) for e in events[:8]]
    assert actions[0] == ("key", "gateway-test-key")
    assert ("directory", "register") in actions and ("key", "seal-certificate") in actions
    assert ("directory", "system") in actions
    lienthong("audit", "seal", data_dir=data)
    verified = lienthong("audit", "verify", data_dir=data)
    assert "the chain is intact" in verified.stdout and "entries/s" in verified.stdout
