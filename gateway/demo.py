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

from rich.console import Console
from rich.table import Table

from gateway.axis import AgencyInfo, upsert_agency
from gateway.core.credentials import generate_secret, hash_secret
from gateway.launcher import GatewayProcess
from gateway.store import repo
from gateway.store.db import Database
from gateway.store.migrate import upgrade
from gateway.store.models import System

AGENCIES = [
    ("000.00.00.G22", "Văn phòng Chính phủ", "vpcp-edoc"),
    ("000.00.00.H41", "UBND tỉnh Nghệ An", "nghean-edoc"),
    ("000.00.00.H49", "UBND tỉnh Quảng Ninh", "quangninh-edoc"),
]
STATUS_TEXT = {"01": "01 arrived", "02": "02 rejected", "03": "03 accepted (registered)"}


def _setup(data_dir: Path) -> dict[str, str]:
    """Database, directory and systems, as an operator would with `lienthong init/agency/system`."""
    db = Database(f"sqlite:///{data_dir / 'lienthong.db'}")
    upgrade(db)
    now = dt.datetime.now(dt.timezone.utc)
    secrets: dict[str, str] = {}
    with db.unit_of_work(write=True) as session:
        for code, name, system_id in AGENCIES:
            upsert_agency(session, AgencyInfo(code, name, None, None, None, True), now)
            secret = generate_secret()
            secrets[code] = secret
            repo.add_system(
                session,
                System(
                    id=system_id, secret_hash=hash_secret(secret), is_admin=False, active=True, created_at=now
                ),
                [code],
            )
        session.commit()
    db.dispose()
    return secrets


def run_demo(console: Console, *, keep: bool = False, workers: int = 2) -> int:
    from lienthong_client import LienthongClient
    from lienthong_client.packets import build_document, build_status, read_header
    from lienthong_client.sync import sync

    base = Path(tempfile.mkdtemp(prefix="lienthong-demo-"))
    try:
        data_dir = base / "gateway"
        data_dir.mkdir()
        console.rule("lienthong demo")
        secrets = _setup(data_dir)
        console.print(f"[bold]1.[/bold] registered {', '.join(f'{c} {n}' for c, n, _ in AGENCIES)}")
        with GatewayProcess(data_dir, workers=workers) as gw:
            console.print(
                f"[bold]2.[/bold] gateway serving at {gw.url} (WSDL at {gw.url}?wsdl), SQLite in {data_dir}"
            )
            clients = {
                code: LienthongClient(gw.url, system_id, secrets[code], timeout=30)
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
            sent = clients[g22].send(packet)
            console.print(
                f"[bold]3.[/bold] {g22} sent document {sent.docId} ({len(packet):,} bytes) to "
                f"{', '.join(sent.recipients)}"
            )
            for code in provinces:
                inbox = base / f"inbox-{code}"
                report = sync(clients[code], inbox)
                for path in report.stored:
                    header = read_header(path.read_bytes())
                    console.print(
                        f"[bold]4.[/bold] {code} fetched, stored and acknowledged {path.relative_to(base)}"
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
                        console.print(f"   {code} answered status {STATUS_TEXT[status_code]}")
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
        console.print("[green]demo complete[/green]: the gateway has stopped")
        if keep:
            console.print(f"kept {base}")
        return 0
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def _fmt(value: dt.datetime | None) -> str:
    if value is None:
        return "-"
    from zoneinfo import ZoneInfo

    return value.astimezone(ZoneInfo("Asia/Ho_Chi_Minh")).strftime("%Y-%m-%d %H:%M:%S")
