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
            f"recipient agency {', '.join(unknown)} is not in the directory; check the To/OrganId codes "
            f"(getAgenciesList lists the registered agencies)",
            agencies=unknown,
        )
    inactive = [code for code in packet.to_organs if not directory[code].active]
    if inactive:
        raise errors.InactiveRecipient(
            f"recipient agency {', '.join(inactive)} is no longer active on the axis; nothing was sent",
            agencies=inactive,
        )
    return Route(recipients=packet.to_organs)


def route_status(packet: Packet, identity: Identity, delivered_packet_id: int | None) -> Route:
    """Recipient of a status packet.

    ``delivered_packet_id`` is the id of the document named by ``ResponseFor`` (its sender and
    DocumentId) that the gateway delivered to the status's ``From``, or None if there is none.
    """
    check_sender(packet, identity)
    rf = packet.response_for[0]
    if delivered_packet_id is None:
        raise errors.StatusForUnknownDocument(
            f"agency {packet.from_organ} never received document {rf.document_id!r} from {rf.organ_id} "
            f"through this gateway; a status must answer a document that was delivered to its sender",
            document_id=rf.document_id,
        )
    return Route(recipients=(rf.organ_id,), answers_packet=delivered_packet_id)
