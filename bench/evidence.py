"""What evidence costs: ``sendEdoc`` with receipts and the audit chain against the same run with them off,
and ``lienthong audit verify`` speed over 1,000,000 entries, on SQLite and PostgreSQL.

``python -m bench.evidence`` runs the ``send`` scenario of :mod:`bench` (a real gateway, load-generator
processes posting prepared sealed packets with a UsernameToken) alternately with ``LIENTHONG_EVIDENCE=false``
and with evidence on (the default), each on a fresh database, ``--rounds`` times each; the ratio is the mean
per-packet time on over off (target: under 1.3). Then it writes a chain of ``--entries`` audit entries
(realistic "accepted" contents, computed with the gateway's own functions) straight into a fresh database,
signs checkpoints every 1000 entries as the gateway does, and times :func:`gateway.evidence.verify_database`
(what ``lienthong audit verify`` runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import world
from bench.packets import PacketPool, send_requests
from bench.scenarios import Settings, run_send
from gateway import evidence
from gateway.core import evidence as ev
from gateway.core.seal import DocumentSigner
from gateway.store.db import Database
from gateway.store.migrate import upgrade
from gateway.store.models import AuditCheckpoint, AuditEntry

TARGET_RATIO = 1.3


def send_overhead(
    settings: Settings, databases: world.Databases, rounds: int, console: Console
) -> dict[str, Any]:
    runs: dict[str, list[float]] = {"off": [], "on": []}
    p99: dict[str, list[float]] = {"off": [], "on": []}
    for n in range(rounds):
        for mode in ("off", "on"):
            env = {"LIENTHONG_EVIDENCE": "false"} if mode == "off" else {}
            r = run_send(settings, databases, name=f"evidence_{mode}_{n}", env=env)
            runs[mode].append(r["accepted_per_s"])
            p99[mode].append(r["latency"]["sendEdoc"].get("p99_ms", float("nan")))
            console.log(
                f"{databases.kind}: evidence {mode}, round {n + 1}: {r['accepted_per_s']:.0f} packets/s, {r['errors']} errors"
            )
    off, on = statistics.mean(runs["off"]), statistics.mean(runs["on"])
    return {
        "off_per_s": runs["off"],
        "on_per_s": runs["on"],
        "off_p99_ms": p99["off"],
        "on_p99_ms": p99["on"],
        "ratio": off / on if on else math.inf,  # time per packet, on over off
    }


def audit_verify_speed(url: str, signer: DocumentSigner, entries: int, console: Console) -> dict[str, Any]:
    db = Database(url)
    upgrade(db)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    previous, rows, checkpoints = ev.GENESIS, [], []
    built = time.perf_counter()
    with db.engine.begin() as conn:
        for seq in range(1, entries + 1):
            doc_id = str(uuid.UUID(int=seq, version=4))
            content = ev.canonical(
                {
                    "seq": seq,
                    "event": "accepted",
                    "at": ev.iso(start + dt.timedelta(milliseconds=seq)),
                    "docId": doc_id,
                    "messageType": "edoc",
                    "sender": world.SENDER,
                    "system": world.SENDER_SYSTEM,
                    "recipients": list(world.RECIPIENTS),
                    "sha256": "ab" * 32,
                    "size": 4400,
                    "signer": "cd" * 32,
                    "documentId": f"{world.SENDER},2026/01/01,{seq}/BENCH",
                    "businessDocType": 0,
                }
            )
            previous = ev.chain(previous, ev.content_digest(content))
            rows.append(
                {"seq": seq, "kind": "accepted", "doc_id": doc_id, "content": content, "hash": previous.hex()}
            )
            if seq % evidence.CHECKPOINT_EVERY == 0:
                at = start + dt.timedelta(milliseconds=seq)
                before = checkpoints[-1] if checkpoints else {"seq": 0, "hash": ev.GENESIS.hex()}
                cp = ev.Checkpoint(seq, previous, at, before["seq"], bytes.fromhex(before["hash"]))
                checkpoints.append(
                    {
                        "seq": seq,
                        "hash": previous.hex(),
                        "created_at": at,
                        "content": signer.sign(ev.checkpoint_tree(cp)),
                    }
                )

            if len(rows) == 20000:
                conn.execute(AuditEntry.__table__.insert(), rows)
                rows = []
                console.log(f"  {seq:,} entries", end="\r")
        if rows:
            conn.execute(AuditEntry.__table__.insert(), rows)
        if checkpoints:
            conn.execute(AuditCheckpoint.__table__.insert(), checkpoints)
    written = time.perf_counter() - built
    t0 = time.perf_counter()
    with db.unit_of_work() as session:
        report = evidence.verify_database(session, {signer.fingerprint})
    seconds = time.perf_counter() - t0
    db.dispose()
    assert report.ok and report.entries == entries, report
    return {
        "entries": entries,
        "checkpoints": report.checkpoints,
        "write_seconds": written,
        "verify_seconds": seconds,
        "entries_per_s": entries / seconds,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.evidence", description=__doc__.split("\n\n")[0])
    p.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--skip-send", action="store_true")
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    args = p.parse_args(argv)
    console = Console(width=max(Console().width, 140))
    creds = world.Credentials.make()
    from gateway import pki

    gateway = pki.make_self_signed(
        "gateway", "bench gateway", key_type="ec", now=dt.datetime.now(dt.timezone.utc)
    )
    signer = DocumentSigner(gateway.key_pem, gateway.cert_pem)
    results: dict[str, Any] = {"databases": {}}
    kinds = ("sqlite", "postgres") if args.database == "both" else (args.database,)
    pool = None
    requests: list[bytes] = []
    if not args.skip_send:
        pool = PacketPool(creds.sender_key_pem, creds.sender_cert_pem)
        pool.ensure(3000)
        requests = send_requests(pool.packets, world.SENDER_SYSTEM, creds.secrets[world.SENDER_SYSTEM])
        console.log(f"{len(pool)} sealed packets of {pool.mean_size:.0f} bytes")
    ok = True
    with tempfile.TemporaryDirectory(prefix="lienthong-evidence-") as tmp:
        for kind in kinds:
            if kind == "postgres" and (reason := world.postgres_skip_reason()):
                console.print(f"[yellow]PostgreSQL skipped: {reason}[/yellow]")
                continue
            databases = world.Databases(kind, Path(tmp))
            r: dict[str, Any] = {}
            results["databases"][kind] = r
            try:
                if pool is not None:
                    settings = Settings(
                        creds=creds, pool=pool, send_requests=requests, workers=args.workers, threads=args.threads,
                        clients=args.clients, duration=args.duration, warmup=args.warmup, receive_batch=0, large_sizes=(),
                    )  # fmt: skip
                    r["send"] = send_overhead(settings, databases, args.rounds, console)
                url, _dir, _direct = databases.new("audit_verify")
                console.log(f"{kind}: writing {args.entries:,} audit entries")
                r["audit_verify"] = audit_verify_speed(url, signer, args.entries, console)
            finally:
                databases.close()
    table = Table(title="evidence cost")
    for col in (
        "database",
        "send off /s",
        "send on /s",
        "time ratio on/off",
        "target < 1.3",
        "audit verify entries/s",
        "entries",
    ):
        table.add_column(col)
    for kind, r in results["databases"].items():
        send = r.get("send")
        met = send is None or send["ratio"] < TARGET_RATIO
        ok &= met
        table.add_row(
            kind,
            " / ".join(f"{x:.0f}" for x in send["off_per_s"]) if send else "-",
            " / ".join(f"{x:.0f}" for x in send["on_per_s"]) if send else "-",
            f"{send['ratio']:.2f}×" if send else "-",
            ("[green]met[/green]" if met else "[red]NOT met[/red]") if send else "-",
            f"{r['audit_verify']['entries_per_s']:,.0f}",
            f"{r['audit_verify']['entries']:,}",
        )
    console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"evidence-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(results, indent=2))
    console.print(f"figures in {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
