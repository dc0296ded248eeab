"""The receive loop every connected system runs: list pending → fetch → store → acknowledge done.

A packet is acknowledged ``done`` only after its bytes are durably on disk (written to a temporary file,
flushed, fsynced, then renamed), so a crash in between means the packet is fetched again next time, never
lost. Packets are stored as ``DIR/yyyy/m/DOCID.edxml`` (the month without a leading zero, as the national
SDK does), by the time the gateway accepted them, in Vietnam time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from lienthong_client.client import FetchedPacket, GatewayFault, LienthongClient
from lienthong_client.seals import SealRejected

VN = ZoneInfo("Asia/Ho_Chi_Minh")


@dataclasses.dataclass
class SyncReport:
    stored: list[Path] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def packet_path(out_dir: Path, doc_id: str, accepted_at: dt.datetime | None) -> Path:
    """``DIR/yyyy/m/DOCID.edxml``. The docId comes from the gateway, so it must be a UUID before it becomes
    part of a path (a hostile or spoofed gateway could otherwise write outside ``out_dir``)."""
    try:
        doc_id = str(uuid.UUID(doc_id))
    except (ValueError, TypeError, AttributeError):
        raise ValueError(
            f"the gateway returned an unexpected docId {doc_id!r}; refusing to store it"
        ) from None
    when = (accepted_at or dt.datetime.now(dt.timezone.utc)).astimezone(VN)
    return out_dir / f"{when:%Y}" / str(when.month) / f"{doc_id}.edxml"


def store_packet(out_dir: Path, packet: FetchedPacket, accepted_at: dt.datetime | None) -> Path:
    """Write the exact bytes durably; returns the final path."""
    path = packet_path(out_dir, packet.doc_id, accepted_at)
    write_durably(path, packet.content)
    return path


def write_durably(path: Path, data: bytes) -> None:
    """Write a file so that it is whole on disk once this returns (temporary file, fsync, rename, fsync)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _keep_rejected(out_dir: Path, packet: FetchedPacket) -> None:
    path = packet_path(out_dir / "rejected", packet.doc_id, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(packet.content)


def sync(
    client: LienthongClient,
    out_dir: Path,
    *,
    message_types: tuple[str, ...] = ("edoc", "status"),
    on_listed: Callable[[str, int], None] | None = None,
    on_item: Callable[[str, Path | None, str | None], None] | None = None,
) -> SyncReport:
    """Fetch, store and acknowledge every pending packet. Callbacks drive progress output.

    A packet whose seal fails the client's check is acknowledged ``fail`` with the reason and kept apart
    in ``DIR/rejected/`` (never among the valid packets)."""
    report = SyncReport()
    seen: set[str] = set()
    for message_type in message_types:
        while True:
            items = [i for i in client.inbox(message_type) if i.docId not in seen]
            if not items:
                break
            if on_listed:
                on_listed(message_type, len(items))
            for item in items:
                seen.add(item.docId)
                try:
                    fetched = client.fetch(item.docId, check_seal=False)
                    if client.checker is not None:
                        client.checker.check(fetched.content)
                    path = store_packet(out_dir, fetched, item.createdAt)
                except SealRejected as exc:
                    reason = f"seal refused: {exc}"
                    _keep_rejected(out_dir, fetched)
                    client.ack(item.docId, "fail", reason[:2000])
                    report.failed.append((item.docId, reason))
                    if on_item:
                        on_item(item.docId, None, reason)
                    continue
                except GatewayFault as exc:
                    report.failed.append((item.docId, str(exc)))
                    if on_item:
                        on_item(item.docId, None, str(exc))
                    continue
                except OSError as exc:
                    reason = f"could not store the packet locally: {exc}"
                    client.ack(item.docId, "fail", reason)
                    report.failed.append((item.docId, reason))
                    if on_item:
                        on_item(item.docId, None, reason)
                    continue
                client.ack(item.docId, "done")
                report.stored.append(path)
                if on_item:
                    on_item(item.docId, path, None)
    return report
