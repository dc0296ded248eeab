"""WS-Security 1.1 X.509 request (and response) signatures, verified strictly on our own tree.

The shape (what zeep's ``BinarySignature`` produces, with SHA-256 instead of its SHA-1 defaults)::

    Envelope
      Header
        wsse:Security
          wsse:BinarySecurityToken  wsu:Id="X509-…"  (X509v3, Base64Binary)
          ds:Signature
            SignedInfo: exc-c14n, RSA-SHA256/ECDSA-SHA256…, References "#<Body id>" and "#<Timestamp id>",
                        each with the exc-c14n transform only and a SHA-256/384/512 digest
            KeyInfo/wsse:SecurityTokenReference/wsse:Reference URI="#X509-…"
          wsu:Timestamp wsu:Id="TS-…"  Created, Expires
      Body wsu:Id="id-…"

:func:`verify_envelope` accepts nothing else. It resolves every reference itself and requires that the
signed Body is *the* Body (the Envelope's own child) and the signed Timestamp *the* Timestamp of the
Security header — the defence against signature wrapping, where the signed Body is moved into the header
and a decoy Body put in its place. Every ``wsu:Id`` must be unique. xmlsec verifies with the key of the
token's certificate and with its transform allowlists set to the same policy. The result holds the
verified Body element: the guard hands spyne exactly that tree, so what spyne reads is what was verified.

:func:`sign_envelope` makes the same shape (used by the reference client for requests and by the gateway
for its responses).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import hashlib
import uuid

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree

from gateway import errors
from gateway.core.seal import (
    DIGEST_ALGORITHMS,
    SIGNATURE_ALGORITHMS,
    KeyCache,
    SignerInfo,
    signature_value,
    signer_info,
)

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
DS = "http://www.w3.org/2000/09/xmldsig#"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
X509V3 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
BASE64 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
EXC_C14N = xmlsec.Transform.EXCL_C14N.href
EXC_C14N_NS = "http://www.w3.org/2001/10/xml-exc-c14n#"
_T = xmlsec.Transform
_BY_HREF = {
    t.href: t
    for t in (
        _T.RSA_SHA256, _T.RSA_SHA384, _T.RSA_SHA512, _T.ECDSA_SHA256, _T.ECDSA_SHA384, _T.ECDSA_SHA512,
        _T.SHA256, _T.SHA384, _T.SHA512, _T.EXCL_C14N,
    )
}  # fmt: skip
_WSU_ID = f"{{{WSU}}}Id"


@dataclasses.dataclass(frozen=True)
class TimestampPolicy:
    """How fresh a signed message must be."""

    #: tolerated difference between the sender's clock and ours, both ways
    clock_skew: dt.timedelta = dt.timedelta(minutes=5)
    #: the longest lifetime (Expires - Created) a sender may claim
    max_lifetime: dt.timedelta = dt.timedelta(minutes=15)


@dataclasses.dataclass(frozen=True)
class VerifiedEnvelope:
    """What the verification established. ``body`` is the verified Body element itself."""

    body: etree._Element
    certificate: x509.Certificate
    fingerprint: str
    subject: str
    signature_algorithm: str
    #: SHA-256 of the SignatureValue: the key of the replay record
    signature_digest: str
    created: dt.datetime
    expires: dt.datetime


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _wsu_time(at: dt.datetime) -> str:
    """A wsu:Timestamp time: UTC, milliseconds, ``Z`` (``at`` is in UTC)."""
    return at.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _children(el: etree._Element) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str)]


def _parse_time(text: str | None, what: str) -> dt.datetime:
    if not text:
        raise errors.TimestampMissing(f"the wsu:Timestamp has no {what}")
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise errors.TimestampMissing(f"the wsu:Timestamp {what} {text!r} is not an xs:dateTime") from None
    if value.tzinfo is None:
        raise errors.TimestampMissing(f"the wsu:Timestamp {what} must carry a time zone (e.g. Z)")
    return value.astimezone(dt.timezone.utc)


def _security(envelope: etree._Element) -> tuple[etree._Element, etree._Element]:
    header = envelope.find(_q(SOAP11_ENV, "Header"))
    body = envelope.find(_q(SOAP11_ENV, "Body"))
    security = header.findall(_q(WSSE, "Security")) if header is not None else []
    if len(security) != 1 or body is None:
        raise errors.MissingCredentials("the request carries no WS-Security header")
    return security[0], body


def _ids(envelope: etree._Element) -> dict[str, etree._Element]:
    ids: dict[str, etree._Element] = {}
    for el in envelope.iter():
        if not isinstance(el.tag, str):
            continue
        value = el.get(_WSU_ID)
        if value is None:
            continue
        if value in ids:
            raise errors.DuplicateId(
                f"wsu:Id {value!r} appears more than once; every signed part must be named exactly once"
            )
        ids[value] = el
    return ids


def _only_exc_c14n(container: etree._Element) -> bool:
    """A CanonicalizationMethod or Transform element with at most an InclusiveNamespaces parameter."""
    params = _children(container)
    return container.get("Algorithm") == EXC_C14N and (
        not params
        or (
            len(params) == 1
            and params[0].tag == _q(EXC_C14N_NS, "InclusiveNamespaces")
            and not len(params[0])
        )
    )


def verify_envelope(
    envelope: etree._Element,
    *,
    at: dt.datetime,
    policy: TimestampPolicy = TimestampPolicy(),
    keys: KeyCache | None = None,
) -> VerifiedEnvelope:
    """Verify an envelope's X.509 signature over its Body and Timestamp; raise a
    :class:`~gateway.errors.SecurityError` naming what is wrong."""
    security, body = _security(envelope)
    ids = _ids(envelope)
    parts = _children(security)
    tokens = [p for p in parts if p.tag == _q(WSSE, "BinarySecurityToken")]
    signatures = [p for p in parts if p.tag == _q(DS, "Signature")]
    stamps = [p for p in parts if p.tag == _q(WSU, "Timestamp")]
    if not signatures:
        raise errors.BodyNotSigned("the request is not signed: the Security header holds no ds:Signature")
    if len(signatures) > 1 or len(tokens) > 1 or len(stamps) > 1:
        raise errors.SecurityMalformed(
            "the Security header must hold one token, one Signature, one Timestamp"
        )
    if len(tokens) != 1:
        raise errors.SecurityMalformed("the signature's X.509 token (wsse:BinarySecurityToken) is missing")
    if not stamps:
        raise errors.TimestampMissing(
            "the Security header holds no wsu:Timestamp; it must be present and signed"
        )
    token, sig, stamp = tokens[0], signatures[0], stamps[0]
    if token.get("ValueType") != X509V3 or token.get("EncodingType", BASE64) != BASE64:
        raise errors.SecurityMalformed(
            "the BinarySecurityToken must be an X509v3 certificate in Base64Binary"
        )

    sig_parts = _children(sig)
    names = [etree.QName(p).localname for p in sig_parts]
    if names != ["SignedInfo", "SignatureValue", "KeyInfo"] or any(
        etree.QName(p).namespace != DS for p in sig_parts
    ):
        raise errors.SecurityMalformed("the Signature must hold SignedInfo, SignatureValue and KeyInfo only")
    signed_info, value_el, key_info = sig_parts
    info = _children(signed_info)
    if len(info) < 3 or info[0].tag != _q(DS, "CanonicalizationMethod") or not _only_exc_c14n(info[0]):
        raise errors.SecurityAlgorithmNotAllowed("SignedInfo must be canonicalized with exclusive c14n")
    if info[1].tag != _q(DS, "SignatureMethod") or info[1].get("Algorithm") not in SIGNATURE_ALGORITHMS:
        raise errors.SecurityAlgorithmNotAllowed(
            f"signature algorithm {info[1].get('Algorithm')!r} is not accepted (RSA-SHA256 or stronger)"
        )
    references = info[2:]
    if any(r.tag != _q(DS, "Reference") for r in references):
        raise errors.SecurityMalformed("SignedInfo may hold only References after SignatureMethod")
    signed: dict[str, etree._Element] = {}
    digests: set[str] = set()
    for ref in references:
        uri = ref.get("URI") or ""
        target = ids.get(uri[1:]) if uri.startswith("#") else None
        if target is None:
            raise errors.SecurityMalformed(f"Reference {uri!r} does not name a wsu:Id of this message")
        ref_parts = _children(ref)
        if [etree.QName(c).localname for c in ref_parts] != ["Transforms", "DigestMethod", "DigestValue"]:
            raise errors.SecurityMalformed(
                "each Reference must hold Transforms, DigestMethod and DigestValue"
            )
        transforms = _children(ref_parts[0])
        if len(transforms) != 1 or not _only_exc_c14n(transforms[0]):
            raise errors.SecurityTransformNotAllowed(
                "each Reference must use exactly the exclusive c14n transform"
            )
        digest = ref_parts[1].get("Algorithm")
        if digest not in DIGEST_ALGORITHMS:
            raise errors.SecurityAlgorithmNotAllowed(
                f"digest algorithm {digest!r} is not accepted (SHA-256 or stronger)"
            )
        digests.add(digest)
        if target is body:
            signed["body"] = target
        elif target is stamp:
            signed["timestamp"] = target
        elif target.tag == _q(SOAP11_ENV, "Body"):
            raise errors.SignatureWrapping(
                "the signed Body is not the message's Body (a signed Body moved aside and another put in its place)"
            )
        else:
            raise errors.SecurityMalformed(
                f"the signature covers {etree.QName(target).localname}; only the Body and the Timestamp may be signed"
            )
    if len(references) != len(signed):
        raise errors.SecurityMalformed("the Body and the Timestamp must each be referenced exactly once")
    if "body" not in signed:
        raise errors.BodyNotSigned("the signature does not cover the SOAP Body")
    if "timestamp" not in signed:
        raise errors.TimestampMissing("the signature does not cover the wsu:Timestamp")

    refs = key_info.findall(f"{_q(WSSE, 'SecurityTokenReference')}/{_q(WSSE, 'Reference')}")
    if len(_children(key_info)) != 1 or len(refs) != 1 or refs[0].get("URI") != f"#{token.get(_WSU_ID)}":
        raise errors.SecurityMalformed("KeyInfo must reference the message's BinarySecurityToken")

    try:
        der = base64.b64decode("".join((token.text or "").split()), validate=True)
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise errors.SecurityMalformed("the BinarySecurityToken is not a DER certificate") from None
    signer: SignerInfo = keys.get(der, cert) if keys is not None else signer_info(der, cert)

    ctx = xmlsec.SignatureContext()
    ctx.key = signer.key
    ctx.register_id(body, "Id", WSU)
    ctx.register_id(stamp, "Id", WSU)
    ctx.enable_reference_transform(_T.EXCL_C14N)
    for href in digests:
        ctx.enable_reference_transform(_BY_HREF[href])
    ctx.enable_signature_transform(_T.EXCL_C14N)
    ctx.enable_signature_transform(_BY_HREF[info[1].get("Algorithm")])
    for href in digests:
        ctx.enable_signature_transform(_BY_HREF[href])
    try:
        ctx.verify(sig)
    except xmlsec.Error:
        raise errors.RequestSignatureInvalid(
            "the request's signature does not verify (the Body or Timestamp changed after signing, or the "
            "token's certificate did not sign it)"
        ) from None

    created = _parse_time(stamp.findtext(_q(WSU, "Created")), "Created")
    expires = _parse_time(stamp.findtext(_q(WSU, "Expires")), "Expires")
    at = at.astimezone(dt.timezone.utc)
    if created > at + policy.clock_skew:
        raise errors.TimestampInFuture(
            f"the request was created at {created:%Y-%m-%dT%H:%M:%SZ}, later than the gateway's clock allows "
            f"(skew {int(policy.clock_skew.total_seconds())} s); check the system's clock"
        )
    if expires < at - policy.clock_skew:
        raise errors.TimestampExpired(
            f"the request expired at {expires:%Y-%m-%dT%H:%M:%SZ}; send a fresh one"
        )
    if expires < created or expires - created > policy.max_lifetime:
        raise errors.TimestampExpired(
            f"the request's lifetime must be positive and at most {int(policy.max_lifetime.total_seconds())} s"
        )
    signature_value = base64.b64decode("".join((value_el.text or "").split()))
    return VerifiedEnvelope(
        body=body,
        certificate=cert,
        fingerprint=signer.fingerprint,
        subject=signer.subject,
        signature_algorithm=SIGNATURE_ALGORITHMS[info[1].get("Algorithm")],
        signature_digest=hashlib.sha256(signature_value).hexdigest(),
        created=created,
        expires=expires,
    )


@dataclasses.dataclass(frozen=True)
class Deferred:
    """Text that stands in an answer's tree as ``placeholder`` (a token found nowhere else) and replaces it
    when the answer is written: a large base64 value is then never copied into the tree."""

    placeholder: str
    data: bytes = dataclasses.field(repr=False)

    @classmethod
    def of(cls, data: bytes) -> Deferred:
        return cls(f"lienthong-deferred-{uuid.uuid4().hex}", data)


@dataclasses.dataclass(frozen=True)
class EnvelopeSigner:
    """A key and certificate, loaded once (zeep's own signer re-reads its key files on every call)."""

    key_pem: bytes = dataclasses.field(repr=False)
    cert_pem: bytes
    lifetime: dt.timedelta = dt.timedelta(minutes=5)
    #: mark the Security header mustUnderstand (requests: the gateway must process it); answers leave it
    #: off, since some SOAP stacks refuse answers with headers they must understand
    must_understand: bool = True

    def __post_init__(self) -> None:
        key = xmlsec.Key.from_memory(self.key_pem, xmlsec.KeyFormat.PEM)
        object.__setattr__(self, "_key", key)
        private = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(private, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise ValueError("an envelope signing key must be ECDSA or RSA")
        object.__setattr__(self, "_private", private)
        method = _T.ECDSA_SHA256 if isinstance(private, ec.EllipticCurvePrivateKey) else _T.RSA_SHA256
        object.__setattr__(self, "_method", method)
        cert = x509.load_pem_x509_certificate(self.cert_pem)
        object.__setattr__(
            self, "_der_b64", base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        )
        self._skeleton()  # now, not on first use: threads then only ever read it (each answer copies it)

    def sign(self, envelope: etree._Element, at: dt.datetime) -> None:
        """Add Security (token, Timestamp, Signature over Body and Timestamp) to the envelope, in place."""
        sig, body, stamp = self._template(envelope, at)
        ctx = xmlsec.SignatureContext()
        ctx.key = self._key  # type: ignore[attr-defined]
        ctx.register_id(body, "Id", WSU)
        ctx.register_id(stamp, "Id", WSU)
        ctx.sign(sig)

    def sign_deferred(
        self, envelope: etree._Element, at: dt.datetime, deferred: Deferred | None = None
    ) -> None:
        """Like :meth:`sign`, for an envelope whose Body may hold ``deferred.placeholder`` where
        ``deferred.data`` goes (the base64 of a fetched packet): the signature covers the Body as it will
        be sent, without that text ever being in the tree, where xmlsec would canonicalize and hold it
        several times over (~8 × a 50 MB packet). The two digests are SHA-256 over the exclusive c14n of
        the Timestamp and of the Body (lxml's, the placeholder's canonical form replaced by the data, which
        c14n leaves as it is: base64 has nothing to escape), and the exclusive c14n of SignedInfo is signed
        with ``cryptography``: the same bytes xmlsec would sign (``verify_envelope`` checks them with
        xmlsec, the tests too)."""
        sig, body, stamp = self._template(envelope, at)
        references = sig.findall(f"{{{DS}}}SignedInfo/{{{DS}}}Reference")
        for reference, target, data in ((references[0], body, deferred), (references[1], stamp, None)):
            canonical = etree.tostring(target, method="c14n", exclusive=True, with_comments=False)
            digest = hashlib.sha256()
            if data is None:
                digest.update(canonical)
            else:
                head, found, tail = canonical.partition(data.placeholder.encode("ascii"))
                if not found or data.placeholder.encode("ascii") in tail:
                    raise ValueError("the deferred text's placeholder must be in the Body exactly once")
                digest.update(head)
                digest.update(data.data)
                digest.update(tail)
            reference.find(f"{{{DS}}}DigestValue").text = base64.b64encode(digest.digest()).decode()  # type: ignore[union-attr]
        signed_info = sig.find(f"{{{DS}}}SignedInfo")
        canonical = etree.tostring(signed_info, method="c14n", exclusive=True, with_comments=False)
        value = signature_value(self._private, canonical)  # type: ignore[attr-defined]
        sig.find(f"{{{DS}}}SignatureValue").text = base64.b64encode(value).decode()  # type: ignore[union-attr]

    def _template(
        self, envelope: etree._Element, at: dt.datetime
    ) -> tuple[etree._Element, etree._Element, etree._Element]:
        """The Security header with an unsigned Signature template: (Signature, Body, Timestamp). A copy of
        :meth:`_skeleton` with this answer's ids and times (building it anew costs ~40 µs, the copy ~10)."""
        header = envelope.find(_q(SOAP11_ENV, "Header"))
        body = envelope.find(_q(SOAP11_ENV, "Body"))
        if header is None:
            header = etree.Element(_q(SOAP11_ENV, "Header"))
            body.addprevious(header)
        security = copy.deepcopy(self._skeleton())
        header.append(security)
        if self.must_understand:
            security.set(_q(SOAP11_ENV, "mustUnderstand"), "1")
        token, sig, stamp = security
        token_id, stamp_id = f"X509-{uuid.uuid4().hex}", f"TS-{uuid.uuid4().hex}"
        body_id = body.get(_WSU_ID) or f"id-{uuid.uuid4().hex}"
        body.set(_WSU_ID, body_id)
        token.set(_WSU_ID, token_id)
        stamp.set(_WSU_ID, stamp_id)
        at = at.astimezone(dt.timezone.utc)
        stamp[0].text = _wsu_time(at)
        stamp[1].text = _wsu_time(at + self.lifetime)
        signed_info, key_info = sig[0], sig[2]
        signed_info[2].set("URI", f"#{body_id}")
        signed_info[3].set("URI", f"#{stamp_id}")
        key_info[0][0].set("URI", f"#{token_id}")
        return sig, body, stamp

    def _skeleton(self) -> etree._Element:
        """wsse:Security with everything but the ids, the times and the signature's values: the token, the
        Signature template (exclusive c14n; a reference to the Body, then one to the Timestamp; KeyInfo
        pointing at the token) and the Timestamp, in that order. Built once per signer, never changed after."""
        skeleton = self.__dict__.get("_security")
        if skeleton is not None:
            return skeleton
        security = etree.Element(_q(WSSE, "Security"), nsmap={"wsse": WSSE, "wsu": WSU})
        token = etree.SubElement(security, _q(WSSE, "BinarySecurityToken"))
        token.set("EncodingType", BASE64)
        token.set("ValueType", X509V3)
        token.set(_WSU_ID, "")
        token.text = self._der_b64  # type: ignore[attr-defined]
        sig = xmlsec.template.create(security, _T.EXCL_C14N, self._method, ns="ds")  # type: ignore[attr-defined]
        security.append(sig)
        stamp = etree.SubElement(security, _q(WSU, "Timestamp"))
        stamp.set(_WSU_ID, "")
        etree.SubElement(stamp, _q(WSU, "Created"))
        etree.SubElement(stamp, _q(WSU, "Expires"))
        for _target in ("body", "timestamp"):
            ref = xmlsec.template.add_reference(sig, _T.SHA256, uri="#")
            xmlsec.template.add_transform(ref, _T.EXCL_C14N)
        key_info = xmlsec.template.ensure_key_info(sig)
        str_el = etree.SubElement(key_info, _q(WSSE, "SecurityTokenReference"))
        ref_el = etree.SubElement(str_el, _q(WSSE, "Reference"))
        ref_el.set("URI", "#")
        ref_el.set("ValueType", X509V3)
        object.__setattr__(self, "_security", security)
        return security
