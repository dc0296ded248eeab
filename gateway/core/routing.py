"""Routing rules: may this caller send this packet, and to whom does it go?

A document goes to every ``To/OrganId``; each must be a registered, active agency, else the whole packet
is refused. A status goes to ``ResponseFor/OrganId`` and must concern a document the gateway delivered to
the status's ``From``. The sender (``From/OrganId``) must be one of the calling system's agencies.
The facts about the directory and earlier deliveries are looked up by the caller and passed in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from gateway import errors
from gateway.core.packet import Packet


@dataclasses.dataclass(frozen=True)
class Identity:
    """A connected system, once its credentials were checked."""

    system_id: str
    agencies: frozenset[str]
    is_admin: bool = False

    def may_act_for(self, agency: str) -> bool:
        return agency in self.agencies


@dataclasses.dataclass(frozen=True)
class AgencyState:
    code: str
    active: bool


@dataclasses.dataclass(frozen=True)
class Route:
    recipients: tuple[str, ...]
    #: for a status: the gateway's id of the document it answers
    answers_packet: int | None = None


def listing(codes: list[str] | tuple[str, ...], limit: int = 10) -> str:
    """A list of codes for a message, cut after ``limit`` entries."""
    shown = ", ".join(codes[:limit])
    return shown + (f" and {len(codes) - limit} more" if len(codes) > limit else "")


def check_sender(packet: Packet, identity: Identity) -> None:
    if not identity.may_act_for(packet.from_organ):
        raise errors.SenderNotAllowed(
            f"system {identity.system_id} may not send as agency {packet.from_organ}; it acts for "
            f"{', '.join(sorted(identity.agencies)) or 'no agency'}",
            agency=packet.from_organ,
        )


def route_document(packet: Packet, identity: Identity, directory: Mapping[str, AgencyState]) -> Route:
    """Recipients of a document packet; ``directory`` holds the known agencies among ``To``."""
    check_sender(packet, identity)
    unknown = [code for code in packet.to_organs if code not in directory]
    if unknown:
        raise errors.UnknownRecipient(
            f"recipient agency {listing(unknown)} is not in the directory; check the To/OrganId codes "
            f"(getAgenciesList lists the registered agencies)",
            agencies=unknown[:100],
        )
    inactive = [code for code in packet.to_organs if not directory[code].active]
    if inactive:
        raise errors.InactiveRecipient(
            f"recipient agency {listing(inactive)} is no longer active on the axis; nothing was sent",
            agencies=inactive[:100],
        )
    return Route(recipients=packet.to_organs)


def check_sender_active(packet: Packet, sender: AgencyState) -> None:
    if not sender.active:
        raise errors.InactiveSender(
            f"agency {packet.from_organ} is no longer active on the axis and may not send; ask the operator",
            agency=packet.from_organ,
        )


def route_status(
    packet: Packet,
    identity: Identity,
    delivered_packet_id: int | None,
    recipient: AgencyState | None = None,
) -> Route:
    """Recipient of a status packet.

    ``delivered_packet_id`` is the id of the document named by ``ResponseFor`` (its sender and
    DocumentId) that the gateway delivered to the status's ``From``, or None if there is none;
    ``recipient`` is the directory entry of ``ResponseFor/OrganId``.
    """
    check_sender(packet, identity)
    rf = packet.response_for[0]
    if recipient is not None and not recipient.active:
        raise errors.InactiveRecipient(
            f"agency {rf.organ_id} is no longer active on the axis; the status cannot be delivered",
            agencies=[rf.organ_id],
        )
    if delivered_packet_id is None:
        raise errors.StatusForUnknownDocument(
            f"agency {packet.from_organ} never received document {rf.document_id!r} from {rf.organ_id} "
            f"through this gateway; a status must answer a document that was delivered to its sender",
            document_id=rf.document_id,
        )
    return Route(recipients=(rf.organ_id,), answers_packet=delivered_packet_id)
