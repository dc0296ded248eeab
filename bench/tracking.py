"""Tracking latency with a long history: ``getSentEdocList`` and ``getTrace`` for a sender with 100,000
documents of 5 recipients each, on SQLite and PostgreSQL.

``python -m bench.tracking`` fills a fresh database (the gateway's own migrations, the bench's directory)
with the history straight through SQLAlchemy (sending 100,000 sealed packets over HTTP would take longer
than the measurement deserves), starts ``lienthong serve`` on it and times, from one client on 127.0.0.1
posting pre-built SOAP requests with a UsernameToken:

- ``getSentEdocList`` without filters: the first page, the newest 50 documents × 5 recipients (250
  entries);
- ``getSentEdocList(limit=1000)``: the largest page, 1,000 documents × 5 recipients (5,000 entries), for
  information (20 times the answer; no target);
- ``getSentEdocList(docId)`` of a random document of the history (its 5 recipients);
- ``getTrace(docId)`` of a random document (5 recipients, 16 events).

The raw bound, measured in the same run on the same database, is the same queries in process with no
HTTP, no SOAP and no authentication (:func:`gateway.store.repo.sent`, :func:`gateway.axis.build_trace`).
The target: median under 50 ms for every call on both databases.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.table import Table

from bench import world
from bench.packets import _TAIL, _head, fault_of
from gateway.axis import SENT_PAGE, AgencyInfo, _sent_item, build_trace, upsert_agency
from gateway.store import repo
from gateway.store.db import Database
from gateway.store.models import Delivery, Event, Packet

#: two more recipients besides the bench's three, so each document goes to five agencies
EXTRA = {"000.00.00.H26": "UBND tỉnh Hưng Yên", "000.00.00.G12": "Bộ Tài chính"}
TARGET_MS = 50.0


def populate(url: str, documents: int, recipients: tuple[str, ...], console: Console) -> float:
    """``documents`` accepted documents of the sender, each delivered, acknowledged and answered 03 by
    every recipient, with their trace events. Returns the seconds it took."""
    started = time.perf_counter()
    db = Database(url)
    now = dt.datetime.now(dt.timezone.utc)
    with db.unit_of_work(write=True) as session:
        for code, name in EXTRA.items():
            upsert_agency(session, AgencyInfo(code, name, None, None, None, True), now)
        session.commit()
    content = ("x" * 1024).encode()
    first = now - dt.timedelta(days=365)
    step = dt.timedelta(days=365) / documents
    chunk = 5000
    packet_table, delivery_table, event_table = Packet.__table__, Delivery.__table__, Event.__table__
    for start in range(0, documents, chunk):
        packets, deliveries, events = [], [], []
        ids = range(start + 1, min(documents, start + chunk) + 1)
        for i in ids:
            at = first + step * i
            packets.append(
                {
                    "id": i,
                    "doc_id": str(uuid.UUID(int=random.getrandbits(128), version=4)),
                    "message_type": "edoc",
                    "sender_code": world.SENDER,
                    "sender_system": world.SENDER_SYSTEM,
                    "document_id": f"{world.SENDER},{at:%Y/%m/%d},{i}/BENCH",
                    "business_doc_type": 0,
                    "subject": f"Văn bản số {i}",
                    "code": f"{i}/BENCH",
                    "sha256": hashlib.sha256(str(i).encode()).hexdigest(),
                    "size": len(content),
                    "content": content,
                    "created_at": at,
                    "legacy_sha1": False,
                }
            )
            events.append(
                {
                    "packet_id": i,
                    "recipient_code": None,
                    "kind": "accepted",
                    "at": at,
                    "agency_code": world.SENDER,
                    "system_id": world.SENDER_SYSTEM,
                    "detail": f"for {', '.join(recipients)}",
                }
            )
            for n, r in enumerate(recipients):
                fetched = at + dt.timedelta(minutes=1 + n)
                answered = fetched + dt.timedelta(minutes=5)
                deliveries.append(
                    {
                        "packet_id": i,
                        "recipient_code": r,
                        "message_type": "edoc",
                        "state": "done",
                        "created_at": at,
                        "fetched_at": fetched,
                        "acked_at": fetched,
                        "acked_by": "bench",
                        "business_status": "03",
                        "business_status_at": answered,
                        "business_status_staff": "Văn thư",
                        "answered_at": answered,
                        "due_at": at + dt.timedelta(hours=8),
                    }
                )
                for kind, when, code in (
                    ("delivered", fetched, None),
                    ("acknowledged", fetched, "done"),
                    ("status", answered, "03"),
                ):
                    events.append(
                        {
                            "packet_id": i,
                            "recipient_code": r,
                            "kind": kind,
                            "at": when,
                            "agency_code": r,
                            "system_id": "bench",
                            "status_code": code,
                        }
                    )
        with db.engine.begin() as conn:
            conn.execute(packet_table.insert(), packets)
            conn.execute(delivery_table.insert(), deliveries)
            conn.execute(
                event_table.insert(),
                [{**dict.fromkeys(("staff", "detail", "related_doc_id")), **e} for e in events],
            )
        console.log(f"  {ids[-1]:,} documents", end="\r")
    if db.backend == "postgresql":
        with db.engine.begin() as conn:
            conn.exec_driver_sql(f"SELECT setval('packets_id_seq', {documents})")
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    db.dispose()
    return time.perf_counter() - started


def _summary(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "median_ms": statistics.median(values) * 1000,
        "p90_ms": values[int(len(values) * 0.9) - 1] * 1000,
        "p99_ms": values[max(0, int(len(values) * 0.99) - 1)] * 1000,
        "max_ms": values[-1] * 1000,
    }


def _time(call, arguments: list[Any], warmup: int) -> list[float]:  # type: ignore[no-untyped-def]
    for a in arguments[:warmup]:
        call(a)
    out = []
    for a in arguments[warmup:]:
        t0 = time.perf_counter()
        call(a)
        out.append(time.perf_counter() - t0)
    return out


def measure(url: str, gateway_url: str, secret: str, doc_ids: list[str], calls: int) -> dict[str, Any]:
    """Median, p90, p99 of each call over HTTP, and of the same queries in process (the raw bound)."""
    head = _head(world.SENDER_SYSTEM, secret)
    http = requests.Session()
    recipients = len(world.RECIPIENTS) + len(EXTRA)

    def post(body: bytes) -> int:
        reply = http.post(
            gateway_url, data=head + body + _TAIL, headers={"Content-Type": "text/xml; charset=utf-8"}
        )
        fault = fault_of(reply.content)
        if reply.status_code != 200 or fault:
            raise RuntimeError(f"{reply.status_code} {fault}")
        return len(reply.content)

    def page_body(limit: int | None) -> bytes:
        inner = f"<tns:limit>{limit}</tns:limit>" if limit else ""
        return f"<tns:getSentEdocList>{inner}</tns:getSentEdocList>".encode()

    def doc_body(operation: str, doc_id: str) -> bytes:
        return f"<tns:{operation}><tns:docId>{doc_id}</tns:docId></tns:{operation}>".encode()

    db = Database(url)
    senders = [world.SENDER]

    def raw_page(limit: int) -> None:
        with db.unit_of_work() as session:
            rows = repo.sent(
                session, senders, doc_id=None, message_type=None, start=None, end=None, limit=limit
            )
            assert len([_sent_item(r) for r in rows]) == limit * recipients

    def raw_one(doc_id: str) -> None:
        with db.unit_of_work() as session:
            rows = repo.sent(
                session, senders, doc_id=doc_id, message_type=None, start=None, end=None, limit=1
            )
            assert len([_sent_item(r) for r in rows]) == recipients

    def raw_trace(doc_id: str) -> None:
        with db.unit_of_work() as session:
            packet = repo.packet_by_doc_id(session, doc_id)
            assert packet is not None and build_trace(session, packet, None).events

    warm = 10
    picks = [random.choice(doc_ids) for _ in range(calls + warm)]
    big = max(20, calls // 10) + 3
    cases = (
        ("getSentEdocList", lambda _: post(page_body(None)), raw_page, [SENT_PAGE] * (calls + warm), warm),
        ("getSentEdocList(limit=1000)", lambda _: post(page_body(1000)), raw_page, [1000] * big, 3),
        ("getSentEdocList(docId)", lambda d: post(doc_body("getSentEdocList", d)), raw_one, picks, warm),
        ("getTrace", lambda d: post(doc_body("getTrace", d)), raw_trace, picks, warm),
    )
    results: dict[str, Any] = {}
    for name, over_http, in_process, args, warmup in cases:
        figures = {
            "http": _summary(_time(over_http, args, warmup)),
            "raw": _summary(_time(in_process, args, warmup)),
        }
        figures["ratio"] = figures["http"]["median_ms"] / figures["raw"]["median_ms"]
        figures["answer_bytes"] = over_http(args[0])
        results[name] = figures
    db.dispose()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tracking", description=__doc__.split("\n\n")[0])
    p.add_argument("--documents", type=int, default=100_000)
    p.add_argument("--calls", type=int, default=200, help="timed calls per operation")
    p.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    args = p.parse_args(argv)
    console = Console(width=max(Console().width, 150))
    creds = world.Credentials.make()
    recipients = (*world.RECIPIENTS, *EXTRA)
    report: dict[str, Any] = {"documents": args.documents, "recipients": len(recipients), "databases": {}}
    kinds = ("sqlite", "postgres") if args.database == "both" else (args.database,)
    ok = True
    with tempfile.TemporaryDirectory(prefix="lienthong-tracking-") as tmp:
        for kind in kinds:
            if kind == "postgres" and (reason := world.postgres_skip_reason()):
                console.print(f"[yellow]PostgreSQL skipped: {reason}[/yellow]")
                continue
            databases = world.Databases(kind, Path(tmp))
            try:
                with world.target(
                    databases, "tracking", creds, workers=args.workers, threads=args.threads, start=False
                ) as tgt:
                    console.log(
                        f"{kind}: filling {args.documents:,} documents × {len(recipients)} recipients"
                    )
                    seconds = populate(tgt.url, args.documents, recipients, console)
                    console.log(f"{kind}: filled in {seconds:.0f} s")
                    db = Database(tgt.url)
                    with db.unit_of_work() as session:
                        from sqlalchemy import select

                        doc_ids = list(session.scalars(select(Packet.doc_id)))
                    db.dispose()
                    tgt.gateway.start()
                    r = measure(
                        tgt.url, tgt.gateway.url, creds.secrets[world.SENDER_SYSTEM], doc_ids, args.calls
                    )
                    report["databases"][kind] = r
            finally:
                databases.close()
    table = Table(
        title=f"tracking latency, {args.documents:,} documents × {len(recipients)} recipients (target: median < {TARGET_MS:.0f} ms)"
    )
    for col in (
        "database",
        "call",
        "median ms",
        "p90 ms",
        "p99 ms",
        "raw median ms",
        "ratio",
        "answer bytes",
        "target",
    ):
        table.add_column(col)
    for kind, r in report["databases"].items():
        for name, figures in r.items():
            informative = "limit=1000" in name
            met = figures["http"]["median_ms"] < TARGET_MS
            ok &= met or informative
            table.add_row(
                kind,
                name,
                f"{figures['http']['median_ms']:.1f}",
                f"{figures['http']['p90_ms']:.1f}",
                f"{figures['http']['p99_ms']:.1f}",
                f"{figures['raw']['median_ms']:.2f}",
                f"{figures['ratio']:.1f}×",
                f"{figures['answer_bytes']:,}",
                "(information)" if informative else "[green]met[/green]" if met else "[red]NOT met[/red]",
            )
    console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"tracking-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2))
    console.print(f"figures in {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
