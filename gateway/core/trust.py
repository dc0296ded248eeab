"""Whether a seal's certificate may be trusted: chained to a configured anchor, valid then, not revoked.

Each agency seals its packets with a certificate issued by the government CA. The operator configures
the CA certificates to trust (the *anchors*) and, optionally, the CAs' revocation lists; a
:class:`TrustStore` holds both. :func:`check_certificate` returns the validated chain (leaf … anchor) or
raises the :mod:`gateway.errors` leaf naming what is wrong, diagnosed in this order:

1. the signing certificate is not valid at the time of receipt (``CertificateNotYetValid`` /
   ``CertificateExpired``);
2. it is self-signed (``CertificateSelfSigned``), even when it is itself a configured anchor: agencies
   seal with certificates issued by a CA;
3. no chain of signatures leads to an anchor (``CertificateUntrusted``, naming the issuer not trusted);
4. a CA in the chain is not valid at that time (``CertificateExpired`` / ``CertificateNotYetValid``,
   naming that CA);
5. an issuer is not a CA: basicConstraints CA=true, keyCertSign when keyUsage is present, path length
   respected (``CertificateUntrusted``); anything else the library's path validation refuses
   (``CertificateUntrusted`` with its reason);
6. the signing certificate's keyUsage, when present, allows neither digitalSignature nor
   nonRepudiation (``CertificateUntrusted``);
7. a CRL issued by the leaf's issuer lists the leaf, or one issued by an intermediate's issuer lists that
   intermediate (``CertificateRevoked``). Only CRLs whose issuer name matches and whose signature
   verifies with that issuer's key count; others are ignored. A listed serial is revoked whatever the
   revocation date and whether or not the CRL is past its next update.

Acceptance is decided by two independent checks that must both pass: the path validation of
``cryptography.x509.verification`` (a client verifier with an end-entity extension policy that accepts
document-signing certificates, which are neither TLS server nor TLS client certificates, and a CA policy
that requires basicConstraints, and keyCertSign when keyUsage is present), and this module's own checks
of the chain it returns (validity, CA constraints, key usage, revocation). When the library refuses, this module walks the
possible chains itself (``verify_directly_issued_by``: names and signatures) only to say *why*.

Chains hold at most :data:`MAX_CHAIN_LENGTH` certificates, leaf and anchor included.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from gateway import errors

#: The longest chain accepted, in certificates: leaf, at most three intermediate CAs, anchor.
MAX_CHAIN_LENGTH = 5
#: Signature checks the diagnostic walk may spend (certificates offered with a seal are untrusted input).
_WALK_BUDGET = 200

SHORT_NAMES: dict[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "UID": NameOID.USER_ID,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "C": NameOID.COUNTRY_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "emailAddress": NameOID.EMAIL_ADDRESS,
}
_SHORT_NAMES_FOLDED = {k.lower(): v for k, v in SHORT_NAMES.items()}
_DOTTED_OID = re.compile(r"[0-2](\.[0-9]+)+\Z")
_SIGNER = "the signing certificate"
_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.DOTALL)


# --- small helpers ----------------------------------------------------------------------------------------


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the certificate's DER encoding."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def subject_text(cert: x509.Certificate) -> str:
    """The certificate's subject as an RFC 4514 string (``CN=…,UID=…,O=…,C=VN``)."""
    return cert.subject.rfc4514_string()


def _attribute_oid(attribute: str) -> x509.ObjectIdentifier:
    name = attribute.strip()
    if _DOTTED_OID.match(name):
        return x509.ObjectIdentifier(name)
    oid = _SHORT_NAMES_FOLDED.get(name.lower())
    if oid is None:
        raise ValueError(
            f"unknown subject attribute {attribute!r}: give a dotted OID or one of {', '.join(SHORT_NAMES)}"
        )
    return oid


def subject_attribute(cert: x509.Certificate, attribute: str) -> list[str]:
    """The values of one subject attribute, given as a dotted OID or a short name (``UID``, ``CN``, …)."""
    values = []
    for attr in cert.subject.get_attributes_for_oid(_attribute_oid(attribute)):
        value = attr.value
        values.append(value.hex() if isinstance(value, bytes) else str(value))
    return values


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _when(moment: dt.datetime) -> str:
    return f"{moment.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def _serial(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def _extension(cert: x509.Certificate, kind: type) -> object | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


# --- the store --------------------------------------------------------------------------------------------


def _load_crls(data: bytes) -> list[x509.CertificateRevocationList]:
    if b"-----BEGIN" in data:
        blocks = _PEM_CRL.findall(data)
        if not blocks:
            raise ValueError("no 'BEGIN X509 CRL' block")
        return [x509.load_pem_x509_crl(block) for block in blocks]
    return [x509.load_der_x509_crl(data)]


@dataclasses.dataclass(frozen=True)
class TrustStore:
    """The CA certificates the operator trusts, and the revocation lists the operator loaded."""

    anchors: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    #: chains already validated against this store, with the time window in which they stay valid;
    #: a new store (new anchors or CRLs) starts empty, so a memo never outlives what it was checked against
    _validated: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "anchors", tuple(self.anchors))
        object.__setattr__(self, "crls", tuple(self.crls))

    @classmethod
    def from_pem(cls, anchors_pem: bytes, crls: Sequence[bytes] = ()) -> TrustStore:
        """Anchors from a PEM bundle (empty bytes: no anchor); each CRL in PEM (one or more blocks) or DER.

        Raises ``ValueError`` naming every problem found (a bundle that holds no PEM certificate, an anchor
        that is not a CA, a CRL that cannot be read); callers turn it into their own configuration or
        usage error.
        """
        problems: list[str] = []
        anchors: list[x509.Certificate] = []
        if anchors_pem.strip():
            try:
                anchors = x509.load_pem_x509_certificates(anchors_pem)
            except ValueError as exc:
                problems.append(f"the trust anchors are not a bundle of PEM certificates ({exc})")
        for anchor in anchors:
            reason = _not_a_ca(anchor)
            if reason:
                problems.append(f"{subject_text(anchor)} cannot be a trust anchor: {reason}")
        loaded: list[x509.CertificateRevocationList] = []
        for number, data in enumerate(crls, 1):
            try:
                loaded.extend(_load_crls(data))
            except ValueError as exc:
                problems.append(f"revocation list #{number} is neither a PEM nor a DER CRL ({exc})")
        if problems:
            raise ValueError("; ".join(problems))
        return cls(tuple(anchors), tuple(loaded))


# --- the rules this module checks itself ------------------------------------------------------------------


def _validity_error(cert: x509.Certificate, at: dt.datetime, role: str) -> errors.SealError | None:
    subject = subject_text(cert)
    fields = {
        "subject": subject,
        "serial": _serial(cert),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "at": at.isoformat(),
    }
    if at < cert.not_valid_before_utc:
        return errors.CertificateNotYetValid(
            f"{role} {subject} is not valid yet: it becomes valid on {_when(cert.not_valid_before_utc)}, "
            f"and the packet was received on {_when(at)}",
            **fields,
        )
    if at > cert.not_valid_after_utc:
        advice = "; the agency must seal with a current certificate" if role == _SIGNER else ""
        return errors.CertificateExpired(
            f"{role} {subject} expired on {_when(cert.not_valid_after_utc)}, before the packet was received "
            f"on {_when(at)}{advice}",
            **fields,
        )
    return None


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``issuer``'s subject is ``cert``'s issuer and its key verifies ``cert``'s signature."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _is_self_signed(cert: x509.Certificate) -> bool:
    return _signed_by(cert, cert)


def _not_a_ca(cert: x509.Certificate) -> str | None:
    constraints = _extension(cert, x509.BasicConstraints)
    if not isinstance(constraints, x509.BasicConstraints):
        return "it has no basicConstraints extension, so it is not a certificate authority"
    if not constraints.ca:
        return "its basicConstraints say CA=false, so it is not a certificate authority"
    usage = _extension(cert, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and not usage.key_cert_sign:
        return "its keyUsage does not allow keyCertSign (signing certificates)"
    return None


def _chain_error(chain: Sequence[x509.Certificate], at: dt.datetime) -> errors.SealError | None:
    """The first rule the issuers in ``chain`` (leaf first) break, or None."""
    leaf_subject = subject_text(chain[0])

    def role(index: int) -> str:
        return "the trust anchor" if index == len(chain) - 1 else "the intermediate certificate authority"

    for index, cert in enumerate(chain[1:], 1):
        problem = _validity_error(cert, at, role(index))
        if problem is not None:
            problem.fields["leaf"] = leaf_subject
            return problem
    for index, cert in enumerate(chain[1:], 1):
        subject = subject_text(cert)
        reason = _not_a_ca(cert)
        if reason is None:
            constraints = _extension(cert, x509.BasicConstraints)
            below = index - 1  # CA certificates between this issuer and the leaf
            limit = constraints.path_length if isinstance(constraints, x509.BasicConstraints) else None
            if limit is not None and below > limit:
                reason = (
                    f"its pathLenConstraint allows {limit} CA certificate(s) below it, the chain has {below}"
                )
        if reason is not None:
            return errors.CertificateUntrusted(
                f"the certificate {subject_text(chain[index - 1])} was issued by {subject}, which may not "
                f"issue certificates: {reason}",
                subject=leaf_subject,
                serial=_serial(chain[0]),
                issuer=subject,
                reason=reason,
            )
    return None


def _signing_usage_error(leaf: x509.Certificate) -> errors.SealError | None:
    usage = _extension(leaf, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and not (usage.digital_signature or usage.content_commitment):
        subject = subject_text(leaf)
        return errors.CertificateUntrusted(
            f"the certificate {subject} is not a signing certificate: its keyUsage allows neither "
            f"digitalSignature nor nonRepudiation",
            subject=subject,
            serial=_serial(leaf),
            reason="keyUsage",
        )
    return None


def _may_sign_crls(cert: x509.Certificate) -> bool:
    usage = _extension(cert, x509.KeyUsage)
    return not isinstance(usage, x509.KeyUsage) or usage.crl_sign


def _revocation_error(
    crls: Iterable[x509.CertificateRevocationList], chain: Sequence[x509.Certificate]
) -> errors.SealError | None:
    for index, cert in enumerate(chain[:-1]):
        issuer = chain[index + 1]
        if not _may_sign_crls(issuer):
            continue
        for crl in crls:
            if crl.issuer != issuer.subject:
                continue
            try:
                authentic = crl.is_signature_valid(issuer.public_key())
            except (TypeError, ValueError, UnsupportedAlgorithm):
                authentic = False
            if not authentic:
                continue
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is None:
                continue
            subject = subject_text(cert)
            what = "the certificate" if index == 0 else "the intermediate certificate authority"
            reason = ""
            try:
                reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
            except x509.ExtensionNotFound:
                pass
            because = f" (reason: {reason})" if reason else ""
            return errors.CertificateRevoked(
                f"{what} {subject} (serial {_serial(cert)}) was revoked on {_when(entry.revocation_date_utc)} "
                f"by {subject_text(issuer)}{because}",
                subject=subject,
                serial=_serial(cert),
                issuer=subject_text(issuer),
                revoked_at=entry.revocation_date_utc.isoformat(),
                reason=reason or None,
                leaf=subject_text(chain[0]),
            )
    return None


# --- the library's path validation ------------------------------------------------------------------------


def _ca_key_usage(_policy: object, cert: x509.Certificate, usage: x509.KeyUsage | None) -> None:
    if usage is not None and not usage.key_cert_sign:
        raise ValueError(f"{subject_text(cert)}: keyUsage does not allow keyCertSign")


# Agency signing certificates are neither TLS server nor TLS client certificates: no SAN, EKU
# emailProtection / document signing. The end-entity policy therefore constrains no extension (the
# library still refuses unknown critical extensions); certificatePolicies may be critical in government
# PKIs, and no policy is required, so it is accepted with any criticality. CAs must say CA=true.
_EE_POLICY = ExtensionPolicy.permit_all().may_be_present(x509.CertificatePolicies, Criticality.AGNOSTIC, None)
_CA_POLICY = (
    ExtensionPolicy.permit_all()
    .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, None)
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
    .may_be_present(x509.CertificatePolicies, Criticality.AGNOSTIC, None)
)


def _library_chain(
    store: TrustStore, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], at: dt.datetime
) -> tuple[tuple[x509.Certificate, ...] | None, str]:
    """The chain ``cryptography.x509.verification`` validates, or None and its reason."""
    verifier = (
        PolicyBuilder()
        .store(Store(list(store.anchors)))
        .time(at)
        .max_chain_depth(MAX_CHAIN_LENGTH - 2)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(leaf, list(intermediates))
    except VerificationError as exc:
        return None, str(exc)
    return tuple(verified.chain), ""


# --- the diagnostic walk ----------------------------------------------------------------------------------


@dataclasses.dataclass
class _Walk:
    """Every chain of names and signatures from the leaf to an anchor, within the length limit."""

    anchors: Sequence[x509.Certificate]
    pool: Sequence[x509.Certificate]
    complete: list[tuple[x509.Certificate, ...]] = dataclasses.field(default_factory=list)
    dead_ends: list[tuple[x509.Certificate, ...]] = dataclasses.field(default_factory=list)
    too_long: list[tuple[x509.Certificate, ...]] = dataclasses.field(default_factory=list)
    budget: int = _WALK_BUDGET
    _anchor_ders: frozenset[bytes] = dataclasses.field(init=False, default=frozenset())

    def __post_init__(self) -> None:
        self._anchor_ders = frozenset(_der(a) for a in self.anchors)

    def run(self, leaf: x509.Certificate) -> _Walk:
        self._extend((leaf,))
        return self

    def _extend(self, chain: tuple[x509.Certificate, ...]) -> None:
        last = chain[-1]
        if len(chain) > 1 and _der(last) in self._anchor_ders:
            self.complete.append(chain)
            return
        if len(chain) >= MAX_CHAIN_LENGTH:
            self.too_long.append(chain)
            return
        seen = {_der(c) for c in chain}
        extended = False
        for candidate in self.pool:
            if self.budget <= 0:
                return
            if candidate.subject != last.issuer or _der(candidate) in seen:
                continue
            self.budget -= 1
            if _signed_by(last, candidate):
                extended = True
                self._extend((*chain, candidate))
        if not extended:
            self.dead_ends.append(chain)


def _untrusted(leaf: x509.Certificate, message: str, **fields: object) -> errors.CertificateUntrusted:
    return errors.CertificateUntrusted(message, subject=subject_text(leaf), serial=_serial(leaf), **fields)


def _diagnose(
    store: TrustStore,
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    at: dt.datetime,
    library_reason: str,
) -> errors.SealError:
    anchor_ders = {_der(a) for a in store.anchors}
    pool: list[x509.Certificate] = list(store.anchors)
    known = set(anchor_ders)
    for cert in intermediates:
        if _der(cert) not in known:
            known.add(_der(cert))
            pool.append(cert)
    walk = _Walk(anchors=store.anchors, pool=pool).run(leaf)
    subject = subject_text(leaf)
    for chain in walk.complete:
        problem = _chain_error(chain, at)
        if problem is not None:
            return problem
    if walk.complete:  # a chain this module accepts, refused by the library for a reason of its own
        return _untrusted(
            leaf,
            f"the certificate {subject} does not pass certificate path validation: {library_reason}",
            reason=library_reason,
        )
    if walk.too_long:
        return _untrusted(
            leaf,
            f"the certificate {subject} reaches no trust anchor within {MAX_CHAIN_LENGTH} certificates",
            reason="chain too long",
        )
    if not walk.dead_ends:  # the walk ran out of budget
        return _untrusted(
            leaf,
            f"the certificate {subject} could not be chained to a trust anchor: {library_reason}",
            reason=library_reason,
        )
    stop = max(walk.dead_ends, key=len)
    missing = stop[-1].issuer.rfc4514_string()
    if len(stop) > 1 and _is_self_signed(stop[-1]):
        message = (
            f"the certificate {subject} chains up to {subject_text(stop[-1])}, a certificate authority "
            f"that is not one of the configured trust anchors"
        )
        if any(a.subject == stop[-1].subject for a in store.anchors):
            message += (
                " (a trust anchor has the same name, but it is a different certificate with another key)"
            )
    else:
        via = f" through {subject_text(stop[-1])}" if len(stop) > 1 else ""
        message = (
            f"the certificate {subject} was issued{via} by {missing}, which is not a trusted certificate "
            f"authority: no configured trust anchor or certificate sent with the seal is that issuer"
        )
        if any(c.subject == stop[-1].issuer for c in pool):
            message += " (a certificate with that name is known, but its key did not sign this certificate)"
    return _untrusted(leaf, message, issuer=missing, reason="no chain to a trust anchor")


# --- the check --------------------------------------------------------------------------------------------


_MEMO_SIZE = 4096


def check_certificate(
    store: TrustStore,
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    at: dt.datetime,
) -> tuple[x509.Certificate, ...]:
    """The validated chain (leaf first, anchor last) of a seal's certificate at ``at``, or a SealError."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("check_certificate needs a timezone-aware time")
    at = at.astimezone(dt.timezone.utc)
    key = (_der(leaf), *(_der(c) for c in intermediates))
    memo = store._validated.get(key)
    if memo is not None and memo[1] <= at <= memo[2]:
        return memo[0]
    problem = _validity_error(leaf, at, _SIGNER)
    if problem is not None:
        raise problem
    if _is_self_signed(leaf):
        subject = subject_text(leaf)
        anchored = _der(leaf) in {_der(a) for a in store.anchors}
        note = (
            " It is configured as a trust anchor, but agencies seal with certificates a CA issued to them."
            if anchored
            else ""
        )
        raise errors.CertificateSelfSigned(
            f"the certificate {subject} is self-signed: no certificate authority vouches for it.{note}",
            subject=subject,
            serial=_serial(leaf),
            anchor=anchored,
        )
    if not store.anchors:
        raise _untrusted(
            leaf,
            f"the certificate {subject_text(leaf)} cannot be trusted: no trust anchor is configured",
            issuer=leaf.issuer.rfc4514_string(),
            reason="no trust anchor",
        )
    chain, library_reason = _library_chain(store, leaf, intermediates, at)
    if chain is None:
        raise _diagnose(store, leaf, intermediates, at, library_reason)
    problem = _chain_error(chain, at) or _signing_usage_error(leaf) or _revocation_error(store.crls, chain)
    if problem is not None:
        raise problem
    if len(store._validated) < _MEMO_SIZE:
        start = max(c.not_valid_before_utc for c in chain)
        end = min(c.not_valid_after_utc for c in chain)
        store._validated[key] = (chain, start, end)
    return chain
