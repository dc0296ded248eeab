"""The one exception tree of the gateway.

Every refusal the gateway can make is a leaf of this tree. Each leaf carries a stable dotted fault code
(``Client.…`` when the caller must change something, ``Server.…`` when the gateway failed), a message a
clerk can act on, and structured fields. ``gateway.soap.faults`` maps the tree to SOAP faults in one
place; nothing else builds a fault.

::

    LienthongError
    ├── ClientError                              the caller must change something
    │   ├── RequestError                         the HTTP/SOAP request itself (checked by the guard)
    │   │   ├── RequestTooLarge                  Client.Request.TooLarge
    │   │   ├── LengthRequired                   Client.Request.LengthRequired
    │   │   ├── BadContentType                   Client.Request.BadContentType
    │   │   ├── MethodNotAllowed                 Client.Request.MethodNotAllowed
    │   │   ├── RequestNotXml                    Client.Request.NotXml
    │   │   ├── RequestDtdForbidden              Client.Request.DtdForbidden
    │   │   ├── MalformedEnvelope                Client.Request.MalformedEnvelope
    │   │   ├── UnknownOperation                 Client.Request.UnknownOperation
    │   │   └── InvalidArgument                  Client.Request.InvalidArgument
    │   ├── PacketError                          the edXML packet
    │   │   ├── PacketTooLarge                   Client.Packet.TooLarge
    │   │   ├── PacketNotXml                     Client.Packet.NotXml
    │   │   ├── PacketDtdForbidden               Client.Packet.DtdForbidden
    │   │   ├── NotEdxml                         Client.Packet.NotEdxml
    │   │   ├── SchemaInvalid                    Client.Packet.SchemaInvalid
    │   │   └── DuplicateDocumentId              Client.Packet.DuplicateDocumentId
    │   ├── SealError                            the issuing agency's XML signature on the packet
    │   │   ├── SealMissing                      Client.Seal.Missing
    │   │   ├── SealMultiple                     Client.Seal.Multiple
    │   │   ├── SealMisplaced                    Client.Seal.Misplaced
    │   │   ├── SealMalformed                    Client.Seal.Malformed
    │   │   ├── SealReferenceNotWhole            Client.Seal.ReferenceNotWhole
    │   │   ├── SealExtraReference               Client.Seal.ExtraReference
    │   │   ├── SealTransformNotAllowed          Client.Seal.TransformNotAllowed
    │   │   ├── SealAlgorithmNotAllowed          Client.Seal.AlgorithmNotAllowed
    │   │   ├── SealCommentInContent             Client.Seal.CommentInContent
    │   │   ├── SealDigestMismatch               Client.Seal.DigestMismatch
    │   │   ├── SealKeyMismatch                  Client.Seal.KeyMismatch
    │   │   ├── CertificateExpired               Client.Seal.CertificateExpired
    │   │   ├── CertificateNotYetValid           Client.Seal.CertificateNotYetValid
    │   │   ├── CertificateSelfSigned            Client.Seal.SelfSigned
    │   │   ├── CertificateUntrusted             Client.Seal.UntrustedCertificate
    │   │   ├── CertificateRevoked               Client.Seal.CertificateRevoked
    │   │   └── SealWrongAgency                  Client.Seal.WrongAgency
    │   ├── RoutingError                         where the packet may go
    │   │   ├── UnknownRecipient                 Client.Routing.UnknownRecipient
    │   │   ├── InactiveRecipient                Client.Routing.InactiveRecipient
    │   │   └── StatusForUnknownDocument         Client.Routing.StatusForUnknownDocument
    │   ├── LifecycleError                       the document's life: statuses, recall, update, replace
    │   │   ├── StatusReasonRequired             Client.Status.ReasonRequired
    │   │   ├── StatusNotOriginalSender          Client.Status.NotOriginalSender
    │   │   ├── StatusNotDelivered               Client.Status.NotDelivered
    │   │   ├── StatusAfterRejection             Client.Status.AfterRejection
    │   │   ├── StatusOutOfOrder                 Client.Status.OutOfOrder
    │   │   ├── StatusDocumentRecalled           Client.Status.DocumentRecalled
    │   │   ├── StatusNoPendingRequest           Client.Status.NoPendingRequest
    │   │   ├── StatusAlreadyAnswered            Client.Status.AlreadyAnswered
    │   │   ├── MissingOriginalReference         Client.Lifecycle.MissingReference
    │   │   ├── UnknownOriginal                  Client.Lifecycle.UnknownOriginal
    │   │   ├── ReceiverMismatch                 Client.Lifecycle.ReceiverMismatch
    │   │   └── OriginalRecalled                 Client.Lifecycle.OriginalRecalled
    │   ├── SecurityError                        the request's WS-Security signature
    │   │   ├── BodyNotSigned                    Client.Security.BodyNotSigned
    │   │   ├── SecurityMalformed                Client.Security.Malformed
    │   │   ├── DuplicateId                      Client.Security.DuplicateId
    │   │   ├── SignatureWrapping                Client.Security.SignatureWrapping
    │   │   ├── SecurityAlgorithmNotAllowed      Client.Security.AlgorithmNotAllowed
    │   │   ├── SecurityTransformNotAllowed      Client.Security.TransformNotAllowed
    │   │   ├── RequestSignatureInvalid          Client.Security.SignatureInvalid
    │   │   ├── TimestampMissing                 Client.Security.TimestampMissing
    │   │   ├── TimestampExpired                 Client.Security.TimestampExpired
    │   │   ├── TimestampInFuture                Client.Security.TimestampInFuture
    │   │   └── Replay                           Client.Security.Replay
    │   ├── AuthError                            who is calling and what it may do
    │   │   ├── MissingCredentials               Client.Auth.MissingCredentials
    │   │   ├── InvalidCredentials               Client.Auth.InvalidCredentials
    │   │   ├── UnknownCertificate               Client.Auth.UnknownCertificate
    │   │   ├── SystemCertificateExpired         Client.Auth.CertificateExpired
    │   │   ├── CertificateMismatch              Client.Auth.CertificateMismatch
    │   │   ├── AuthMethodNotAllowed             Client.Auth.MethodNotAllowed
    │   │   ├── SenderNotAllowed                 Client.Auth.SenderNotAllowed
    │   │   ├── InactiveSender                   Client.Auth.InactiveSender
    │   │   ├── AdminRequired                    Client.Auth.AdminRequired
    │   │   └── NotAddressee                     Client.Access.NotAddressee
    │   └── NotFoundError
    │       ├── UnknownDocId                     Client.Doc.NotFound
    │       └── UnknownAgency                    Client.Agency.NotFound
    ├── ServerError                              the gateway failed; never leaks internals
    │   ├── DatabaseUnavailable                  Server.Database.Unavailable
    │   └── InternalError                        Server.Internal
    └── ConfigError                              operator configuration (never a fault: a CLI error)

Operator-side problems found by the command line (a bad argument to ``lienthong agency add``) use
``UsageError``, also outside the fault space.
"""

from __future__ import annotations

from typing import Any


class LienthongError(Exception):
    """Base of every error the gateway raises on purpose."""

    code: str = "Server.Internal"
    #: the HTTP status a fault of this kind is sent with (SOAP 1.1 faults use 500 unless the request
    #: never reached SOAP processing).
    http_status: int = 500

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ClientError(LienthongError):
    code = "Client"


class ServerError(LienthongError):
    code = "Server"


# --- the request (guard) -------------------------------------------------------------------------------


class RequestError(ClientError):
    code = "Client.Request"


class RequestTooLarge(RequestError):
    code = "Client.Request.TooLarge"
    http_status = 413


class LengthRequired(RequestError):
    code = "Client.Request.LengthRequired"
    http_status = 411


class BadContentType(RequestError):
    code = "Client.Request.BadContentType"
    http_status = 415


class MethodNotAllowed(RequestError):
    code = "Client.Request.MethodNotAllowed"
    http_status = 405


class RequestNotXml(RequestError):
    code = "Client.Request.NotXml"


class RequestDtdForbidden(RequestError):
    code = "Client.Request.DtdForbidden"


class MalformedEnvelope(RequestError):
    code = "Client.Request.MalformedEnvelope"


class UnknownOperation(RequestError):
    code = "Client.Request.UnknownOperation"


class InvalidArgument(RequestError):
    code = "Client.Request.InvalidArgument"


# --- the packet -----------------------------------------------------------------------------------------


class PacketError(ClientError):
    code = "Client.Packet"


class PacketTooLarge(PacketError):
    code = "Client.Packet.TooLarge"


class PacketNotXml(PacketError):
    code = "Client.Packet.NotXml"


class PacketDtdForbidden(PacketError):
    code = "Client.Packet.DtdForbidden"


class NotEdxml(PacketError):
    code = "Client.Packet.NotEdxml"


class SchemaInvalid(PacketError):
    """The packet breaks the edXML schema or a rule the schema cannot express.

    Fields: ``element`` (local name), ``line`` (1-based, or None).
    """

    code = "Client.Packet.SchemaInvalid"


class DuplicateDocumentId(PacketError):
    code = "Client.Packet.DuplicateDocumentId"


# --- seals ----------------------------------------------------------------------------------------------


class SealError(ClientError):
    """The packet's XML signature is missing, malformed, invalid, untrusted or not the sender's."""

    code = "Client.Seal"


class SealMissing(SealError):
    code = "Client.Seal.Missing"


class SealMultiple(SealError):
    code = "Client.Seal.Multiple"


class SealMisplaced(SealError):
    code = "Client.Seal.Misplaced"


class SealMalformed(SealError):
    code = "Client.Seal.Malformed"


class SealReferenceNotWhole(SealError):
    code = "Client.Seal.ReferenceNotWhole"


class SealExtraReference(SealError):
    code = "Client.Seal.ExtraReference"


class SealTransformNotAllowed(SealError):
    code = "Client.Seal.TransformNotAllowed"


class SealAlgorithmNotAllowed(SealError):
    code = "Client.Seal.AlgorithmNotAllowed"


class SealCommentInContent(SealError):
    code = "Client.Seal.CommentInContent"


class SealDigestMismatch(SealError):
    code = "Client.Seal.DigestMismatch"


class SealKeyMismatch(SealError):
    code = "Client.Seal.KeyMismatch"


class CertificateExpired(SealError):
    code = "Client.Seal.CertificateExpired"


class CertificateNotYetValid(SealError):
    code = "Client.Seal.CertificateNotYetValid"


class CertificateSelfSigned(SealError):
    code = "Client.Seal.SelfSigned"


class CertificateUntrusted(SealError):
    code = "Client.Seal.UntrustedCertificate"


class CertificateRevoked(SealError):
    code = "Client.Seal.CertificateRevoked"


class SealWrongAgency(SealError):
    code = "Client.Seal.WrongAgency"


# --- routing --------------------------------------------------------------------------------------------


class RoutingError(ClientError):
    code = "Client.Routing"


class UnknownRecipient(RoutingError):
    code = "Client.Routing.UnknownRecipient"


class InactiveRecipient(RoutingError):
    code = "Client.Routing.InactiveRecipient"


class StatusForUnknownDocument(RoutingError):
    code = "Client.Routing.StatusForUnknownDocument"


# --- the document's life --------------------------------------------------------------------------------


class LifecycleError(ClientError):
    """A status or a recall/update/replace that does not fit the document's life so far."""

    code = "Client.Lifecycle"


class StatusReasonRequired(LifecycleError):
    """Statuses 02 (rejected), 13 (recall) and 16 (refused) must say why in Description."""

    code = "Client.Status.ReasonRequired"


class StatusNotOriginalSender(LifecycleError):
    """Status 13 (recall) may come only from the agency that sent the document."""

    code = "Client.Status.NotOriginalSender"


class StatusNotDelivered(LifecycleError):
    """01–06 and 02 need the recipient to have fetched the document first."""

    code = "Client.Status.NotDelivered"


class StatusAfterRejection(LifecycleError):
    """After 02 (rejected) only answers to a recall or update (15/16) may follow."""

    code = "Client.Status.AfterRejection"


class StatusOutOfOrder(LifecycleError):
    """01 → 03 → 04 → 05 → 06 only go forward; 02 only before 03; 04–06 only after 03."""

    code = "Client.Status.OutOfOrder"


class StatusDocumentRecalled(LifecycleError):
    """The recipient agreed to recall the document: it has no further business statuses."""

    code = "Client.Status.DocumentRecalled"


class StatusNoPendingRequest(LifecycleError):
    """15/16 answer a recall, update or replace request; there is none for this recipient."""

    code = "Client.Status.NoPendingRequest"


class StatusAlreadyAnswered(LifecycleError):
    """The recipient already answered the request the other way."""

    code = "Client.Status.AlreadyAnswered"


class MissingOriginalReference(LifecycleError):
    """A recall, update or replace must name the earlier document in Bussiness/DocumentId."""

    code = "Client.Lifecycle.MissingReference"


class UnknownOriginal(LifecycleError):
    """The earlier document named is not one the same agency sent through this gateway."""

    code = "Client.Lifecycle.UnknownOriginal"


class ReceiverMismatch(LifecycleError):
    """To, ReceiverList or ReplacementInfoList do not agree with the earlier document's recipients."""

    code = "Client.Lifecycle.ReceiverMismatch"


class OriginalRecalled(LifecycleError):
    """A recipient already agreed to recall the earlier document: it cannot be updated or replaced there."""

    code = "Client.Lifecycle.OriginalRecalled"


# --- the request's WS-Security signature -----------------------------------------------------------------


class SecurityError(ClientError):
    code = "Client.Security"


class BodyNotSigned(SecurityError):
    code = "Client.Security.BodyNotSigned"


class SecurityMalformed(SecurityError):
    code = "Client.Security.Malformed"


class DuplicateId(SecurityError):
    code = "Client.Security.DuplicateId"


class SignatureWrapping(SecurityError):
    code = "Client.Security.SignatureWrapping"


class SecurityAlgorithmNotAllowed(SecurityError):
    code = "Client.Security.AlgorithmNotAllowed"


class SecurityTransformNotAllowed(SecurityError):
    code = "Client.Security.TransformNotAllowed"


class RequestSignatureInvalid(SecurityError):
    code = "Client.Security.SignatureInvalid"


class TimestampMissing(SecurityError):
    code = "Client.Security.TimestampMissing"


class TimestampExpired(SecurityError):
    code = "Client.Security.TimestampExpired"


class TimestampInFuture(SecurityError):
    code = "Client.Security.TimestampInFuture"


class Replay(SecurityError):
    code = "Client.Security.Replay"


# --- identity and access --------------------------------------------------------------------------------


class AuthError(ClientError):
    code = "Client.Auth"


class MissingCredentials(AuthError):
    code = "Client.Auth.MissingCredentials"


class InvalidCredentials(AuthError):
    code = "Client.Auth.InvalidCredentials"


class UnknownCertificate(AuthError):
    code = "Client.Auth.UnknownCertificate"


class SystemCertificateExpired(AuthError):
    code = "Client.Auth.CertificateExpired"


class CertificateMismatch(AuthError):
    code = "Client.Auth.CertificateMismatch"


class AuthMethodNotAllowed(AuthError):
    code = "Client.Auth.MethodNotAllowed"


class SenderNotAllowed(AuthError):
    code = "Client.Auth.SenderNotAllowed"


class InactiveSender(AuthError):
    code = "Client.Auth.InactiveSender"


class AdminRequired(AuthError):
    code = "Client.Auth.AdminRequired"


class NotAddressee(AuthError):
    code = "Client.Access.NotAddressee"


# --- lookups --------------------------------------------------------------------------------------------


class NotFoundError(ClientError):
    code = "Client.NotFound"


class UnknownDocId(NotFoundError):
    code = "Client.Doc.NotFound"


class UnknownAgency(NotFoundError):
    code = "Client.Agency.NotFound"


# --- the gateway itself ---------------------------------------------------------------------------------


class DatabaseUnavailable(ServerError):
    code = "Server.Database.Unavailable"


class InternalError(ServerError):
    code = "Server.Internal"


# --- outside the fault space ----------------------------------------------------------------------------


class ConfigError(LienthongError):
    """The configuration is incomplete or wrong; ``problems`` lists every problem found at once."""

    code = "Config"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems), problems=problems)
        self.problems = problems


class UsageError(LienthongError):
    """An operator command was given something it cannot use."""

    code = "Usage"


def all_fault_codes() -> dict[str, type[LienthongError]]:
    """Every fault code a client can receive, mapped to its class (used by docs and tests)."""
    out: dict[str, type[LienthongError]] = {}

    def walk(cls: type[LienthongError]) -> None:
        for sub in cls.__subclasses__():
            if sub.code.count(".") >= 2 or sub.code in {"Server.Internal"}:
                out[sub.code] = sub
            walk(sub)

    walk(ClientError)
    walk(ServerError)
    return out
