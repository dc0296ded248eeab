"""Printing a document's trace and an overdue list for people (``lienthong trace``, ``lienthong-client
trace``): both commands hand over the same plain dicts (the JSON they print with ``--json``)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

STATUS_NAMES = {
    "01": "arrived",
    "02": "rejected",
    "03": "accepted",
    "04": "assigned",
    "05": "processing",
    "06": "completed",
    "13": "recall requested",
    "15": "agreed",
    "16": "refused",
}
BUSINESS_DOC_TYPES = {0: "new", 1: "recall", 2: "update", 3: "replace"}


def _status(code: str | None) -> str:
    return f"{code} {STATUS_NAMES.get(code, '')}".strip() if code else ""


def _event_text(e: dict[str, Any]) -> str:
    kind, code = e["kind"], e.get("code")
    if kind == "status":
        text = f"status {_status(code)}"
    elif kind == "acknowledged":
        text = f"acknowledged {code}"
    else:
        text = kind
    if e.get("detail"):
        text += f": {e['detail']}"
    if e.get("relatedDocId"):
        text += f" [{e['relatedDocId']}]"
    return text


def print_trace(console: Console, t: dict[str, Any]) -> None:
    kind = t["messageType"]
    if kind == "edoc":
        kind = f"document ({BUSINESS_DOC_TYPES.get(t['businessDocType'], t['businessDocType'])})"
    else:
        kind = f"status {_status(t.get('statusCode'))}"
    console.print(f"[bold]{escape(t['docId'])}[/bold] {escape(kind)} from {escape(t['from'])}")
    for label, key in (("DocumentId", "documentId"), ("subject", "subject"), ("accepted", "acceptedAt")):
        if t.get(key):
            console.print(f"  {label}: {escape(str(t[key]))}")
    if t.get("originDocId"):
        console.print(f"  changes the earlier packet {escape(t['originDocId'])}")
    if t.get("answersDocId"):
        console.print(f"  answers the packet {escape(t['answersDocId'])}")
    for successor in t.get("successors") or []:
        console.print(f"  changed by {escape(successor)}")
    recipients = Table(title="recipients")
    for col in ("recipient", "transport", "delivered", "status", "by", "recall/update", "receipt due"):
        recipients.add_column(col)
    for r in t["recipients"]:
        recipients.add_row(
            r["recipient"],
            r["transportState"],
            r.get("deliveredAt") or "",
            _status(r.get("businessStatus")),
            r.get("businessStatusStaff") or "",
            r.get("lifecycle") or "",
            r.get("dueAt") or "",
        )
    console.print(recipients)
    events = Table(title="events")
    for col in ("time", "recipient", "by", "event"):
        events.add_column(col)
    for e in t["events"]:
        who = " / ".join(x for x in (e.get("agency"), e.get("system"), e.get("staff")) if x)
        events.add_row(e["at"], e.get("recipient") or "(all)", who, _event_text(e))
    console.print(events)


def print_overdue(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"{len(rows)} recipients missed the same-day rule")
    for col in ("docId", "from", "recipient", "subject", "delivered", "due", "answered"):
        table.add_column(col)
    for r in rows:
        answered = (
            f"{r['answeredAt']} ({_status(r.get('businessStatus'))})" if r.get("answeredAt") else "NOT YET"
        )
        table.add_row(
            r["docId"],
            r["from"],
            r["recipient"],
            r.get("subject") or "",
            r.get("deliveredAt") or "not fetched",
            r["dueAt"],
            answered,
        )
    console.print(table)
