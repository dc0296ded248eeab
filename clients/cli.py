"""``lienthong-client``: an agency system's command line for the gateway.

Exit codes: 0 success, 1 the gateway refused (a fault; its code is printed), 2 wrong usage,
3 the gateway could not be reached.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from gateway import errors
from gateway.core.evidence import read_receipt
from gateway.core.xmlparse import parse_xml
from lienthong_client.client import GatewayFault, GatewayUnreachable, LienthongClient
from lienthong_client.receipts import store_sent
from lienthong_client.render import print_overdue, print_trace
from lienthong_client.seals import SealChecker, SealRejected, Signer
from lienthong_client.sync import store_packet, sync, write_durably
from lienthong_client.wsse import UntrustedAnswer

# Wide tables when the output goes to a file or a pipe (rich would otherwise assume 80 columns).
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, (dt.datetime, dt.date)) else value


def trace_json(t: Any) -> dict[str, Any]:
    """getTrace's answer as plain JSON-ready data (what ``trace --json`` prints)."""
    sent_fields = (
        "recipient", "transportState", "deliveredAt", "acknowledgedAt", "failReason", "businessStatus",
        "businessStatusAt", "businessStatusStaff", "lifecycle", "lifecycleAt", "lifecycleDocId", "dueAt",
        "answeredAt",
    )  # fmt: skip
    event_fields = ("at", "kind", "recipient", "agency", "system", "staff", "code", "detail", "relatedDocId")
    return {
        "docId": t.docId,
        "messageType": t.messageType,
        "from": getattr(t, "from"),
        "senderSystem": t.senderSystem,
        "documentId": t.documentId,
        "subject": t.subject,
        "statusCode": t.statusCode,
        "businessDocType": t.businessDocType,
        "acceptedAt": _iso(t.acceptedAt),
        "originDocId": t.originDocId,
        "answersDocId": t.answersDocId,
        "successors": list(t.successors),
        "recipients": [{f: _iso(getattr(r, f)) for f in sent_fields} for r in t.recipients],
        "events": [{f: _iso(getattr(e, f)) for f in event_fields} for e in t.events],
    }


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.replace("/", "-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _read_secret(path: str) -> str:
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SystemExit(f"lienthong-client: cannot read the secret file: {exc}") from None
    if not secret:
        raise SystemExit(f"lienthong-client: the secret file {path} is empty")
    return secret


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lienthong-client",
        description="Send, receive and acknowledge edXML packets through a lienthong gateway.",
        epilog="Environment: LIENTHONG_ENDPOINT, LIENTHONG_SYSTEM, LIENTHONG_SECRET_FILE stand in for the "
        "options of the same name.",
    )
    p.add_argument(
        "--endpoint",
        default=os.environ.get("LIENTHONG_ENDPOINT"),
        help="gateway URL, e.g. http://127.0.0.1:8080/",
    )
    p.add_argument(
        "--system", default=os.environ.get("LIENTHONG_SYSTEM"), help="this system's id at the gateway"
    )
    p.add_argument(
        "--secret-file",
        default=os.environ.get("LIENTHONG_SECRET_FILE"),
        help="file holding this system's secret",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP call (default 60)")
    auth = p.add_argument_group("authentication", "how this system proves who it is, and checks the gateway")
    auth.add_argument(
        "--request-key",
        default=os.environ.get("LIENTHONG_REQUEST_KEY"),
        metavar="KEY.pem",
        help="sign every request (WS-Security X.509) with this key instead of a secret",
    )
    auth.add_argument("--request-cert", default=os.environ.get("LIENTHONG_REQUEST_CERT"), metavar="CERT.pem")
    auth.add_argument(
        "--gateway-cert",
        default=os.environ.get("LIENTHONG_GATEWAY_CERT"),
        metavar="CERT.pem",
        help="the gateway's certificate: every answer must be signed with it",
    )
    auth.add_argument(
        "--ca-file",
        default=os.environ.get("LIENTHONG_CA_FILE"),
        metavar="CA.pem",
        help="the CA of the gateway's TLS certificate (https endpoints)",
    )
    auth.add_argument("--client-cert", metavar="CERT.pem", help="TLS client certificate (mutual TLS)")
    auth.add_argument("--client-key", metavar="KEY.pem")
    seal = p.add_argument_group(
        "seals", "the agency's key to seal packets, and the CAs to check received ones"
    )
    seal.add_argument("--sign-key", default=os.environ.get("LIENTHONG_SIGN_KEY"), metavar="KEY.pem")
    seal.add_argument("--sign-cert", default=os.environ.get("LIENTHONG_SIGN_CERT"), metavar="CERT.pem")
    seal.add_argument(
        "--pkcs12",
        default=os.environ.get("LIENTHONG_PKCS12"),
        metavar="FILE.p12",
        help="key and certificate in PKCS#12 (password: --pkcs12-password-file or "
        "$LIENTHONG_PKCS12_PASSWORD)",
    )
    seal.add_argument("--pkcs12-password-file", metavar="F")
    seal.add_argument(
        "--trust",
        default=os.environ.get("LIENTHONG_TRUST"),
        metavar="CA.pem",
        help="check the seal of every received packet against these CAs",
    )
    seal.add_argument(
        "--crl", action="append", default=[], metavar="FILE", help="a CRL for that check (repeat)"
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("send", help="send edXML packet files (documents or statuses)")
    s.add_argument("files", nargs="+", type=Path, metavar="FILE")
    s.add_argument("--json", action="store_true", help="print the results as JSON")
    s.add_argument(
        "--store",
        type=Path,
        metavar="DIR",
        help="keep each sent packet and the gateway's receipt as DIR/yyyy/m/DOCID.edxml and DOCID.receipt.xml",
    )

    s = sub.add_parser("sign", help="seal a packet without sending it")
    s.add_argument("file", type=Path, metavar="FILE")
    s.add_argument("-o", "--output", type=Path, required=True, metavar="OUT")

    s = sub.add_parser("inbox", help="list pending packets (documents by default)")
    s.add_argument("--status", action="store_true", help="list status packets instead of documents")
    s.add_argument("--from-date", type=_date)
    s.add_argument("--to-date", type=_date)
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("fetch", help="download one packet as DIR/yyyy/m/DOCID.edxml")
    s.add_argument("doc_id", metavar="DOCID")
    s.add_argument("-o", "--output", type=Path, default=Path("."), metavar="DIR")

    s = sub.add_parser("ack", help="acknowledge a received packet: done (default), processing or fail")
    s.add_argument("doc_id", metavar="DOCID")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--fail", metavar="REASON", help="report the packet as failed, with the reason")
    g.add_argument("--processing", action="store_true", help="report that it is being processed")

    s = sub.add_parser("sent", help="sent packets with per-recipient state")
    s.add_argument("--doc-id")
    s.add_argument("--status", action="store_true", help="list sent status packets instead of documents")
    s.add_argument("--all", action="store_true", help="documents and statuses")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("receipts", help="the gateway's signed receipts about one packet")
    s.add_argument("doc_id", metavar="DOCID")
    s.add_argument(
        "-o", "--output", type=Path, required=True, metavar="DIR", help="written as DIR/DOCID/KIND-N.xml"
    )
    s.add_argument(
        "--packet", type=Path, metavar="FILE", help="the packet as sent: every receipt must name its digest"
    )

    s = sub.add_parser("trace", help="the life of one packet: recipients' states and every event")
    s.add_argument("doc_id", metavar="DOCID")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("overdue", help="recipients of my documents that missed the same-day rule")
    s.add_argument("--from", dest="from_date", type=_date, metavar="YYYY-MM-DD")
    s.add_argument("--to", dest="to_date", type=_date, metavar="YYYY-MM-DD")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("agencies", help="the directory of agencies")
    s.add_argument("filter", nargs="?", help="part of a code or name")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("sync", help="the receive loop: fetch, store and acknowledge everything pending")
    s.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    s.add_argument("--only", choices=["edoc", "status"], help="only documents or only statuses")
    return p


def _signer(args: argparse.Namespace) -> Signer | None:
    if args.pkcs12:
        password = os.environ.get("LIENTHONG_PKCS12_PASSWORD")
        if args.pkcs12_password_file:
            password = Path(args.pkcs12_password_file).read_text(encoding="utf-8").strip()
        return Signer.from_pkcs12(args.pkcs12, password.encode() if password else None)
    if args.sign_key or args.sign_cert:
        if not (args.sign_key and args.sign_cert):
            raise SystemExit("lienthong-client: --sign-key and --sign-cert go together")
        return Signer.from_pem(args.sign_key, args.sign_cert)
    return None


def _client(args: argparse.Namespace) -> LienthongClient:
    needed = ("endpoint", "system") if args.request_key else ("endpoint", "system", "secret_file")
    missing = [name for name in needed if not getattr(args, name)]
    if missing:
        raise SystemExit(
            "lienthong-client: missing " + ", ".join("--" + m.replace("_", "-") for m in missing)
        )
    checker = SealChecker.from_files(args.trust, tuple(args.crl)) if args.trust else None
    request_key = None
    if args.request_key:
        if not args.request_cert:
            raise SystemExit("lienthong-client: --request-key and --request-cert go together")
        request_key = (Path(args.request_key).read_bytes(), Path(args.request_cert).read_bytes())
    return LienthongClient(
        args.endpoint,
        args.system,
        _read_secret(args.secret_file) if args.secret_file else None,
        timeout=args.timeout,
        signer=_signer(args),
        checker=checker,
        request_key=request_key,
        gateway_cert=Path(args.gateway_cert).read_bytes() if args.gateway_cert else None,
        verify=args.ca_file or True,
        client_cert=(args.client_cert, args.client_key) if args.client_cert else None,
    )


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    out.print(table)


def run(args: argparse.Namespace) -> int:
    if args.command == "sign":
        signer = _signer(args)
        if signer is None:
            raise SystemExit("lienthong-client: sign needs --sign-key/--sign-cert or --pkcs12")
        args.output.write_bytes(signer.sign(args.file.read_bytes()))
        out.print(f"sealed {args.file} → {args.output}")
        return 0
    client = _client(args)
    if args.command == "send":
        results = []
        for path in args.files:
            result = client.send(path.read_bytes())
            stored = None
            if args.store is not None:
                stored = store_sent(
                    args.store, result.docId, result.sent, result.receipt, result.receipt_facts
                )
            results.append(
                {
                    "file": str(path),
                    "docId": result.docId,
                    "messageType": result.messageType,
                    "recipients": result.recipients,
                    "duplicate": result.duplicate,
                    "receipt": result.receipt is not None,
                    "stored": str(stored) if stored else None,
                }
            )
        if args.json:
            print(json.dumps(results, ensure_ascii=False, indent=2))
        else:
            for r in results:
                again = " (already sent: same docId)" if r["duplicate"] else ""
                out.print(
                    f"{r['file']}: {r['messageType']} {r['docId']} → {', '.join(r['recipients'])}{again}"
                )
        return 0
    if args.command == "inbox":
        items = client.inbox("status" if args.status else "edoc", args.from_date, args.to_date)
        rows = [
            {
                "docId": i.docId,
                "messageType": i.messageType,
                "to": i.to,
                "from": getattr(i, "from"),
                "documentId": i.documentId,
                "subject": i.subject,
                "statusCode": i.statusCode,
                "createdAt": _iso(i.createdAt),
                "transportState": i.transportState,
            }
            for i in items
        ]
        if args.json:
            print(json.dumps(rows, ensure_ascii=False, indent=2))
        else:
            _table(
                f"{len(rows)} pending",
                ["docId", "from", "to", "subject / status", "accepted", "state"],
                [
                    [
                        r["docId"],
                        r["from"],
                        r["to"],
                        r["subject"] or r["statusCode"],
                        r["createdAt"],
                        r["transportState"],
                    ]
                    for r in rows
                ],
            )
        return 0
    if args.command == "fetch":
        packet = client.fetch(args.doc_id)
        path = store_packet(args.output, packet, None)
        out.print(f"{packet.doc_id}: {len(packet.content):,} bytes → {path}")
        return 0
    if args.command == "ack":
        status = "fail" if args.fail else "processing" if args.processing else "done"
        client.ack(args.doc_id, status, args.fail)
        out.print(f"{args.doc_id}: {status}")
        return 0
    if args.command == "sent":
        message_type = None if args.all else ("status" if args.status else "edoc")
        items = client.sent(args.doc_id, message_type)
        rows = [
            {
                "docId": i.docId,
                "messageType": i.messageType,
                "documentId": i.documentId,
                "subject": i.subject,
                "recipient": i.recipient,
                "acceptedAt": _iso(i.acceptedAt),
                "deliveredAt": _iso(i.deliveredAt),
                "acknowledgedAt": _iso(i.acknowledgedAt),
                "transportState": i.transportState,
                "failReason": i.failReason,
                "businessStatus": i.businessStatus,
                "businessStatusAt": _iso(i.businessStatusAt),
                "businessStatusStaff": i.businessStatusStaff,
                "lifecycle": i.lifecycle,
                "lifecycleDocId": i.lifecycleDocId,
            }
            for i in items
        ]
        if args.json:
            print(json.dumps(rows, ensure_ascii=False, indent=2))
        else:
            _table(
                "sent packets",
                ["docId", "recipient", "state", "delivered", "status", "status at", "recall/update"],
                [
                    [
                        r["docId"],
                        r["recipient"],
                        r["transportState"],
                        r["deliveredAt"],
                        r["businessStatus"],
                        r["businessStatusAt"],
                        r["lifecycle"],
                    ]
                    for r in rows
                ],
            )
        return 0
    if args.command == "receipts":
        packet = args.packet.read_bytes() if args.packet else None
        receipts = client.receipts(args.doc_id, packet)
        folder = args.output / args.doc_id
        for n, receipt in enumerate(receipts, 1):
            kind = read_receipt(parse_xml(receipt, max_bytes=len(receipt) + 1).getroot()).kind
            write_durably(folder / f"{kind}-{n}.xml", receipt)
        checked = (
            "checked against the pinned gateway certificate"
            if client.gateway_cert
            else "NOT checked (no --gateway-cert)"
        )
        out.print(f"{len(receipts)} receipts for {args.doc_id} in {folder} ({checked})")
        return 0
    if args.command == "trace":
        t = trace_json(client.trace(args.doc_id))
        if args.json:
            print(json.dumps(t, ensure_ascii=False, indent=2))
        else:
            print_trace(out, t)
        return 0
    if args.command == "overdue":
        rows = [
            {
                "docId": i.docId,
                "documentId": i.documentId,
                "subject": i.subject,
                "from": getattr(i, "from"),
                "recipient": i.recipient,
                "acceptedAt": _iso(i.acceptedAt),
                "deliveredAt": _iso(i.deliveredAt),
                "dueAt": _iso(i.dueAt),
                "answeredAt": _iso(i.answeredAt),
                "businessStatus": i.businessStatus,
            }
            for i in client.overdue(args.from_date, args.to_date)
        ]
        if args.json:
            print(json.dumps(rows, ensure_ascii=False, indent=2))
        else:
            print_overdue(out, rows)
        return 0
    if args.command == "agencies":
        items = client.agencies(args.filter)
        rows = [
            {
                "code": a.code,
                "name": a.name,
                "parentCode": a.parentCode,
                "email": a.email,
                "oldCode": a.oldCode,
                "active": a.active,
            }
            for a in items
        ]
        if args.json:
            print(json.dumps(rows, ensure_ascii=False, indent=2))
        else:
            _table(
                "agencies",
                ["code", "name", "parent", "email", "old code", "active"],
                [list(r.values()) for r in rows],
            )
        return 0
    if args.command == "sync":
        types = (args.only,) if args.only else ("edoc", "status")
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err, transient=False
        ) as progress:
            task = progress.add_task("sync", total=0)

            def listed(message_type: str, n: int) -> None:
                progress.update(
                    task, total=(progress.tasks[0].total or 0) + n, description=f"sync {message_type}"
                )

            def item(doc_id: str, path: Path | None, problem: str | None) -> None:
                progress.advance(task)
                if problem:
                    progress.console.print(f"[red]{escape(doc_id)}: {escape(problem)}")

            report = sync(client, args.output, message_types=types, on_listed=listed, on_item=item)
        for path in report.stored:
            out.print(f"stored {path}")
        out.print(f"{len(report.stored)} stored and acknowledged, {len(report.failed)} failed")
        return 0 if report.ok else 1
    raise AssertionError(args.command)  # pragma: no cover


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except GatewayFault as exc:
        text = f"{exc.code}: {exc.message}" + (
            f" [correlation id {exc.correlation_id}]" if exc.correlation_id else ""
        )
        err.print(f"[red]refused[/red] {escape(text)}", highlight=False)
        return 1
    except SealRejected as exc:
        err.print(f"[red]seal refused[/red] {escape(str(exc))}", highlight=False)
        return 1
    except errors.LienthongError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False)
        return 1
    except UntrustedAnswer as exc:
        err.print(f"[red]untrusted answer[/red] {escape(str(exc))}", highlight=False)
        return 1
    except GatewayUnreachable as exc:
        err.print(f"[red]unreachable[/red] {escape(str(exc))}", highlight=False)
        return 3
    except OSError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
