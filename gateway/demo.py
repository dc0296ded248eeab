"""``lienthong demo``: the whole exchange on a temporary gateway, for a newcomer.

It starts a real gateway (gunicorn, on a free local port, with a temporary SQLite database), registers the
Government Office and two provinces, sends a document from the Government Office to both, lets each
province run its receive loop and answer status 01 (arrived) then 03 (accepted), and prints the
Government Office's per-recipient view. It exits 0 and leaves nothing running.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from pathlib import Path

from cryptography import x509
from rich.console import Console
from rich.table import Table

from gateway import pki
from gateway.axis import AgencyInfo, upsert_agency
from gateway.config import Config
from gateway.keystore import make_test_key
from gateway.launcher import GatewayProcess
from gateway.store import repo
from gateway.store.db import Database
from gateway.store.migrate import upgrade
from gateway.store.models import AgencyCertificate, System
from gateway.systems import generate_secret, store_secret

AGENCIES = [
    ("000.00.00.G22", "Văn phòng Chính phủ", "vpcp-edoc"),
    ("000.00.00.H41", "UBND tỉnh Nghệ An", "nghean-edoc"),
    ("000.00.00.H49", "UBND tỉnh Quảng Ninh", "quangninh-edoc"),
]
STATUS_TEXT = {
    "01": "01 arrived",
    "02": "02 rejected",
    "03": "03 accepted (registered)",
    "13": "13 recall requested",
    "15": "15 agreed to the recall",
    "16": "16 refused the recall",
}


def _setup(data_dir: Path, pki_dir: Path) -> tuple[dict[str, str], dict[str, Path]]:
    """Test PKI, database, directory, seal certificates and systems, as an operator would with
    `lienthong pki/init/agency add/agency cert add/system add`."""
    paths = pki.write_test_pki(pki_dir, [(code, name) for code, name, _system in AGENCIES])
    (data_dir / "trust-anchors.pem").write_bytes(paths["ca"].read_bytes())
    db = Database(f"sqlite:///{data_dir / 'lienthong.db'}")
    upgrade(db)
    now = dt.datetime.now(dt.timezone.utc)
    secrets: dict[str, str] = {}
    with db.unit_of_work(write=True) as session:
        for code, name, system_id in AGENCIES:
            upsert_agency(session, AgencyInfo(code, name, None, None, None, True), now)
            cert = x509.load_pem_x509_certificate(paths[f"{code}.cert"].read_bytes())
            session.add(AgencyCertificate.of(code, cert, now))
            secret = generate_secret()
            secrets[code] = secret
            repo.add_system(
                session,
                System(
                    id=system_id,
                    secret_hash=store_secret(secret),
                    auth_method="username-token",
                    is_admin=False,
                    active=True,
                    created_at=now,
                ),
                [code],
            )
        session.commit()
    db.dispose()
    return secrets, paths


def run_demo(console: Console, *, keep: bool = False, workers: int = 2) -> int:
    from gateway.bundle import print_report, verify_bundle
    from lienthong_client import LienthongClient
    from lienthong_client.cli import trace_json
    from lienthong_client.packets import build_document, build_status, read_header
    from lienthong_client.render import print_trace
    from lienthong_client.seals import SealChecker, Signer
    from lienthong_client.sync import sync

    base = Path(tempfile.mkdtemp(prefix="lienthong-demo-"))
    try:
        data_dir = base / "gateway"
        data_dir.mkdir()
        console.rule("lienthong demo")
        secrets, paths = _setup(data_dir, base / "test-pki")
        console.print(f"[bold]1.[/bold] registered {', '.join(f'{c} {n}' for c, n, _ in AGENCIES)}")
        console.print(
            f"   with seal certificates from a [yellow]TEST CA (not for production)[/yellow] in {base / 'test-pki'}"
        )
        checker = SealChecker.from_files(paths["ca"])
        make_test_key(Config.from_sources({}, data_dir=data_dir))  # the gateway signs every answer
        gateway_cert = (data_dir / "gateway-cert.pem").read_bytes()
        with GatewayProcess(data_dir, workers=workers) as gw:
            console.print(
                f"[bold]2.[/bold] gateway serving at {gw.url} (WSDL at {gw.url}?wsdl), SQLite in {data_dir}"
            )
            clients = {
                code: LienthongClient(
                    gw.url,
                    system_id,
                    secrets[code],
                    timeout=30,
                    signer=Signer.from_pem(paths[f"{code}.key"], paths[f"{code}.cert"]),
                    checker=checker,
                    gateway_cert=gateway_cert,  # answers not signed by the gateway are refused
                )
                for code, _name, system_id in AGENCIES
            }
            g22, provinces = AGENCIES[0][0], [a[0] for a in AGENCIES[1:]]
            packet = build_document(
                sender=g22,
                sender_name="Văn phòng Chính phủ",
                recipients=provinces,
                number="1234",
                notation="VPCP-KSTT",
                subject="V/v triển khai gửi, nhận văn bản điện tử qua trục liên thông",
                content="Đề nghị các địa phương hoàn thành kết nối trước ngày 31/12.",
                attachments=[("1234-VPCP-KSTT.txt", "text/plain", "Công văn số 1234/VPCP-KSTT\n".encode())],
            )
            sealed = clients[g22].signer.sign(packet)
            sent = clients[g22].send(sealed)
            console.print(
                f"[bold]3.[/bold] {g22} sealed (RSA-SHA256, XML-DSig) and sent document {sent.docId} "
                f"({len(sealed):,} bytes) to {', '.join(sent.recipients)}; the gateway verified the seal"
            )
            console.print(
                f"   its signed receipt names SHA-256 {sent.receipt_facts.packet_sha256[:16]}… of the exact bytes "
                f"(checked against the gateway's pinned certificate)"
            )
            for code in provinces:
                inbox = base / f"inbox-{code}"
                report = sync(clients[code], inbox)
                for path in report.stored:
                    header = read_header(path.read_bytes())
                    seal = checker.check(path.read_bytes())
                    console.print(
                        f"[bold]4.[/bold] {code} fetched the document, checked its seal "
                        f"({seal.subject.split(',')[0]}, {seal.signature_algorithm}) against its own trust "
                        f"anchors, stored it as {path.relative_to(base)} and acknowledged it"
                    )
                    for status_code, text in (("01", None), ("03", "Đã vào sổ văn bản đến")):
                        status = build_status(
                            sender=code,
                            original_sender=header["from"] or g22,
                            original_document_id=header["document_id"] or "",
                            original_code=header["code"],
                            original_date=header["promulgation_date"],
                            status_code=status_code,
                            description=text,
                            staff="Văn thư",
                        )
                        clients[code].send(status)
                        console.print(
                            f"   {code} answered status {STATUS_TEXT[status_code]} (sealed by {code})"
                        )
            statuses = sync(clients[g22], base / f"inbox-{g22}", message_types=("status",))
            console.print(f"[bold]5.[/bold] {g22} received {len(statuses.stored)} status packets")
            table = Table(title=f"What {g22} sees of document {sent.docId}")
            for col in ("recipient", "transport", "delivered (fetched)", "acknowledged", "business status"):
                table.add_column(col)
            for item in clients[g22].sent(sent.docId):
                table.add_row(
                    item.recipient,
                    item.transportState,
                    _fmt(item.deliveredAt),
                    _fmt(item.acknowledgedAt),
                    STATUS_TEXT.get(item.businessStatus or "", item.businessStatus or "-")
                    + (f" at {_fmt(item.businessStatusAt)}" if item.businessStatusAt else ""),
                )
            console.print(table)

            # the sender recalls the document: one recipient agrees, the other refuses with a reason
            def status(code: str, status_code: str, text: str | None) -> bytes:
                return build_status(
                    sender=code,
                    original_sender=g22,
                    original_document_id=header["document_id"] or "",
                    original_code=header["code"],
                    status_code=status_code,
                    description=text,
                    staff="Văn thư",
                )

            recall = clients[g22].send(status(g22, "13", "Văn bản ban hành nhầm, đề nghị thu hồi"))
            console.print(
                f"[bold]6.[/bold] {g22} recalled the document (status 13 {recall.docId}); the gateway "
                f"delivered the recall to {', '.join(recall.recipients)}"
            )
            clients[provinces[0]].send(status(provinces[0], "15", None))
            console.print(f"   {provinces[0]} answered {STATUS_TEXT['15']}")
            if len(provinces) > 1:
                clients[provinces[1]].send(status(provinces[1], "16", "Văn bản đã được triển khai thực hiện"))
                console.print(f"   {provinces[1]} answered {STATUS_TEXT['16']} (with its reason)")
            console.print(f"[bold]7.[/bold] the document's trace, as {g22} sees it (getTrace):")
            print_trace(console, trace_json(clients[g22].trace(sent.docId)))
            receipts = clients[g22].receipts(sent.docId, sealed)
            bundle_path = base / f"evidence-{sent.docId}.zip"
            bundle_path.write_bytes(_export(data_dir, sent.docId))
            report = verify_bundle(bundle_path.read_bytes(), [gateway_cert], [paths["ca"].read_bytes()])
            console.print(
                f"[bold]8.[/bold] {len(receipts)} signed receipts for the document (getReceipts); its evidence "
                f"bundle ({bundle_path.stat().st_size:,} bytes: packet, statuses, receipts, audit proof, "
                f"signed manifest) checked offline:"
            )
            print_report(console, report)
        console.print("[green]demo complete[/green]: the gateway has stopped")
        if keep:
            console.print(f"kept {base}")
        return 0
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def _export(data_dir: Path, doc_id: str) -> bytes:
    """What `lienthong evidence export` does, on the demo's database."""
    from gateway import evidence
    from gateway.keystore import load_document_signer

    config = Config.from_sources({}, data_dir=data_dir)
    signer = load_document_signer(config)
    assert signer is not None
    db = Database(config.database_url)
    try:
        with db.unit_of_work(write=True) as session:
            data = evidence.export_bundle(session, signer, doc_id, dt.datetime.now(dt.timezone.utc))
            session.commit()
        return data
    finally:
        db.dispose()


def _fmt(value: dt.datetime | None) -> str:
    if value is None:
        return "-"
    from zoneinfo import ZoneInfo

    return value.astimezone(ZoneInfo("Asia/Ho_Chi_Minh")).strftime("%Y-%m-%d %H:%M:%S")
