"""The life of a document after it is sent: which business statuses may follow which, and what a recall,
update or replace does to the earlier document's recipients.

Pure rules over facts the caller looked up (see ``gateway.axis``): nothing here reads the database.

A recipient's copy of a document (a *delivery*) has

- the business statuses it sent about it (01 arrived, 02 rejected, 03 accepted and registered,
  04 assigned, 05 processing, 06 completed), which only go forward: 01 → 03 → 04 → 05 → 06, with 02
  (rejection) only before 03, and 04–06 only after 03;
- a *lifecycle* state when the sender asked to recall, update or replace it: ``recall-requested``
  until the recipient answers 15 (agreed: ``recalled``, ``updated``, ``replaced``) or 16 (refused:
  ``recall-refused``, …).

Transport states (pending, fetched, done, fail: ``updateStatus``) are a separate matter and never a
business status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from gateway import errors
from gateway.core.packet import RECALL, REPLACE, STATUS_CODES, UPDATE, Packet

#: the forward order of a recipient's progress statuses
PROGRESS = {"01": 1, "03": 2, "04": 3, "05": 4, "06": 5}
REJECTED = "02"
RECALL_REQUEST = "13"
AGREED, REFUSED = "15", "16"
ANSWERS = (AGREED, REFUSED)
#: codes that tell the sender the recipient has the document (the same-day rule)
RECEIPT_CODES = frozenset({"01", "02", "03", "04", "05", "06"})

KINDS = {RECALL: "recall", UPDATE: "update", REPLACE: "replace"}
_AGREED_STATE = {"recall": "recalled", "update": "updated", "replace": "replaced"}


def requested(kind: str) -> str:
    return f"{kind}-requested"


def answered(kind: str, code: str) -> str:
    """The lifecycle state after a recipient answers a ``kind`` request with 15 or 16."""
    return _AGREED_STATE[kind] if code == AGREED else f"{kind}-refused"


def parse_state(state: str | None) -> tuple[str | None, str | None]:
    """``(kind, phase)`` of a lifecycle state: phase is requested, agreed or refused."""
    if not state:
        return None, None
    if state.endswith("-requested"):
        return state[: -len("-requested")], "requested"
    if state.endswith("-refused"):
        return state[: -len("-refused")], "refused"
    for kind, agreed in _AGREED_STATE.items():
        if state == agreed:
            return kind, "agreed"
    return None, None


def _name(code: str) -> str:
    return f"{code} ({STATUS_CODES.get(code, '?')})"


@dataclasses.dataclass(frozen=True)
class RecipientFacts:
    """What the rules need about one recipient's copy of a document."""

    recipient: str
    document_id: str
    fetched: bool
    #: status code → docId of the status packet this recipient already sent about the document
    sent: Mapping[str, str]
    lifecycle: str | None = None


def check_status(code: str, facts: RecipientFacts) -> str | None:
    """May the recipient send status ``code`` now? Returns the docId of the same status sent before (a
    duplicate: nothing new is stored), None for a new status; raises the rule it breaks."""
    who, doc = facts.recipient, facts.document_id
    kind, phase = parse_state(facts.lifecycle)
    if code in ANSWERS:
        if phase is None:
            raise errors.StatusNoPendingRequest(
                f"status {_name(code)} answers a recall, update or replace request, but {doc!r} has none "
                f"pending for {who}",
                status_code=code,
            )
        if phase == "requested":
            return None
        earlier = AGREED if phase == "agreed" else REFUSED
        if code == earlier and code in facts.sent:
            return facts.sent[code]
        raise errors.StatusAlreadyAnswered(
            f"{who} already answered the {kind} request for {doc!r} with {_name(earlier)}; "
            f"it cannot now answer {_name(code)}",
            status_code=code,
        )
    if kind == "recall" and phase == "agreed":
        raise errors.StatusDocumentRecalled(
            f"{who} agreed to recall {doc!r} (15); the document is withdrawn and takes no status {_name(code)}",
            status_code=code,
        )
    if code in facts.sent:
        return facts.sent[code]  # the same status again: idempotent
    if REJECTED in facts.sent:
        raise errors.StatusAfterRejection(
            f"{who} rejected {doc!r} (02); after a rejection only answers to a recall or update (15/16) "
            f"may follow, not {_name(code)}",
            status_code=code,
        )
    if not facts.fetched:
        raise errors.StatusNotDelivered(
            f"{who} has not fetched {doc!r} yet (getEdoc); status {_name(code)} can only follow delivery",
            status_code=code,
        )
    reached = max((PROGRESS[c] for c in facts.sent if c in PROGRESS), default=0)
    if code == REJECTED:
        if reached >= PROGRESS["03"]:
            raise errors.StatusOutOfOrder(
                f"{who} already accepted {doc!r} (03); a rejection (02) must come before acceptance",
                status_code=code,
            )
        return None
    rank = PROGRESS[code]
    if rank >= PROGRESS["04"] and "03" not in facts.sent:
        raise errors.StatusOutOfOrder(
            f"{who} has not accepted {doc!r} (03) yet; {_name(code)} can only follow 03",
            status_code=code,
        )
    if rank < reached:
        latest = max((c for c in facts.sent if c in PROGRESS), key=PROGRESS.__getitem__)
        raise errors.StatusOutOfOrder(
            f"{who} already sent {_name(latest)} for {doc!r}; statuses go forward "
            f"(01 → 03 → 04 → 05 → 06), so {_name(code)} cannot follow it",
            status_code=code,
        )
    return None


def check_recall_sender(packet: Packet) -> None:
    """Status 13 comes from the document's own sender (From equals ResponseFor/OrganId)."""
    rf = packet.response_for[0]
    if packet.from_organ != rf.organ_id:
        raise errors.StatusNotOriginalSender(
            f"status 13 (recall) may only come from the sender of {rf.document_id!r} ({rf.organ_id}), "
            f"not from {packet.from_organ}",
            status_code=RECALL_REQUEST,
        )


# --- recall, update and replace documents -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Original:
    """An earlier document of the same sender, as a successor finds it."""

    packet_id: int
    doc_id: str
    document_id: str
    #: recipient → lifecycle state of its copy
    recipients: Mapping[str, str | None]


@dataclasses.dataclass(frozen=True)
class SuccessorPlan:
    """Where a recall/update/replace document goes and which earlier copies it asks about."""

    kind: str
    origin: Original
    #: the agencies the new packet is delivered to, in order
    recipients: tuple[str, ...]
    #: (earlier packet id, recipient): copies now asked to agree (15) or refuse (16)
    targets: tuple[tuple[int, str], ...]
    #: receivers an update removes: they get the update only to learn it (their copy is no recipient's)
    removed: tuple[str, ...] = ()


def references(packet: Packet) -> tuple[str, ...]:
    """DocumentIds of the earlier documents a successor packet refers to (the first is its origin)."""
    bus = packet.business
    if bus.doc_type not in KINDS:
        return ()
    refs = [bus.document_id] if bus.document_id else []
    if bus.doc_type == REPLACE:
        refs += [doc for doc, _organs in bus.replacements]
    if not refs:
        raise errors.MissingOriginalReference(
            f"a {KINDS[bus.doc_type]} (BussinessDocType {bus.doc_type}) must name the earlier document in "
            f"Bussiness/DocumentId",
        )
    return tuple(dict.fromkeys(refs))


def _mismatch(message: str, agencies: list[str]) -> errors.ReceiverMismatch:
    return errors.ReceiverMismatch(message, agencies=agencies[:100])


RECALL_STATES = frozenset({"recall-requested", "recalled", "recall-refused"})


def _not_recalled(original: Original, organs: list[str], *, pending_only: bool = False) -> None:
    """A copy whose recipient agreed to a recall, or is asked to, cannot be updated or replaced."""
    blocking = {"recall-requested"} if pending_only else {"recall-requested", "recalled"}
    gone = [o for o in organs if original.recipients.get(o) in blocking]
    if gone:
        raise errors.OriginalRecalled(
            f"{', '.join(gone)} agreed to recall {original.document_id!r} or is asked to; it cannot be "
            f"updated or replaced there (send a new document instead)",
            agencies=gone[:100],
        )


def plan_successor(packet: Packet, originals: Mapping[str, Original]) -> SuccessorPlan:
    """The plan for a recall (1), update (2) or replace (3) document. ``originals`` maps each of
    :func:`references` to the earlier document of the same sender (missing: unknown)."""
    refs = references(packet)
    kind = KINDS[packet.business.doc_type]
    missing = [r for r in refs if r not in originals]
    if missing:
        raise errors.UnknownOriginal(
            f"agency {packet.from_organ} sent no document with DocumentId {missing[0]!r} through this gateway; "
            f"a {kind} must refer to one of its own earlier documents",
            document_id=missing[0],
        )
    origin = originals[refs[0]]
    # recipients that agreed to a recall no longer hold the document
    before = [o for o, state in origin.recipients.items() if state != "recalled"]
    to = list(packet.to_organs)
    if kind == "recall":
        strangers = [o for o in to if o not in origin.recipients]
        if strangers:
            raise _mismatch(
                f"the recall names {', '.join(strangers)} in To, which never received {origin.document_id!r}",
                strangers,
            )
        # every original recipient is asked, also those that have not fetched the document yet
        return SuccessorPlan(
            kind, origin, tuple(origin.recipients), tuple((origin.packet_id, o) for o in before)
        )
    if kind == "update":
        added, removed = packet.business.added, packet.business.removed
        problems: list[tuple[str, list[str]]] = []
        not_before = [o for o in removed if o not in origin.recipients]
        if not_before:
            problems.append(
                (f"ReceiverList removes {', '.join(not_before)}, which never received it", not_before)
            )
        still = [o for o in removed if o in to]
        if still:
            problems.append((f"ReceiverList removes {', '.join(still)} but To still names it", still))
        not_to = [o for o in added if o not in to]
        if not_to:
            problems.append((f"ReceiverList adds {', '.join(not_to)} but To does not name it", not_to))
        dropped = [o for o in before if o not in to and o not in removed]
        if dropped:
            problems.append(
                (
                    f"{', '.join(dropped)} received it but is neither in To nor removed by ReceiverList",
                    dropped,
                )
            )
        if problems:
            raise _mismatch(
                f"the update of {origin.document_id!r} does not agree with its recipients: "
                + "; ".join(p for p, _ in problems),
                [a for _, agencies in problems for a in agencies],
            )
        _not_recalled(origin, [o for o in to if o in origin.recipients])
        _not_recalled(origin, list(removed), pending_only=True)
        notified = [o for o in removed if o in before]
        recipients = tuple(dict.fromkeys(to + notified))
        return SuccessorPlan(
            kind, origin, recipients, tuple((origin.packet_id, o) for o in before), removed=tuple(notified)
        )
    # replace
    entries = packet.business.replacements or ((origin.document_id, tuple(o for o in before if o in to)),)
    targets: list[tuple[int, str]] = []
    for document_id, organs in entries:
        original = originals[document_id]
        strangers = [o for o in organs if o not in original.recipients]
        if strangers:
            raise _mismatch(
                f"ReplacementInfo names {', '.join(strangers)} for {document_id!r}, which it never received",
                strangers,
            )
        absent = [o for o in organs if o not in to]
        if absent:
            raise _mismatch(
                f"the replacement of {document_id!r} is for {', '.join(absent)}, but To does not name it",
                absent,
            )
        _not_recalled(original, list(organs))
        targets += [(original.packet_id, o) for o in organs]
    if not targets:
        raise _mismatch(
            f"the replacement of {origin.document_id!r} reaches none of its recipients "
            f"({', '.join(before)}); name them in To or in ReplacementInfoList",
            before,
        )
    return SuccessorPlan(kind, origin, tuple(to), tuple(dict.fromkeys(targets)))
