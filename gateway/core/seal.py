"""Agency seals: the enveloped XML-DSig signature of an edXML packet. The only module that imports xmlsec.

The standard puts one ``ds:Signature`` inside ``edXMLHeader``, with one Reference to the whole document
(``URI=""``), so the attachments are covered too. :func:`verify_seal` accepts nothing else:

1. exactly one Signature, a child of ``edXML/edXMLEnvelope/edXMLHeader``, holding only SignedInfo,
   SignatureValue and KeyInfo (a ``ds:Object`` would carry content the signature does not cover);
2. exactly one Reference, ``URI=""``; transforms limited to enveloped-signature then at most one
   canonicalization; canonicalization, signature and digest algorithms from the :class:`SealPolicy`
   allowlist (RSA-SHA1/SHA-1 only when the operator enabled it, and then reported);
3. no comments or processing instructions inside the document (they could split signed text so that a
   reader sees less than what was signed);
4. the signature verified by xmlsec with the public key of the certificate in KeyInfo, with xmlsec's own
   transform allowlists set to the same policy (python-xmlsec enables every transform, XSLT included,
   until told otherwise);
5. the certificate chain checked by :mod:`gateway.core.trust` at the time of receipt.

It returns a :class:`VerifiedSeal` holding the verified root element: the gateway reads routing data only
from it. With ``URI=""`` the whole document minus the Signature is signed, and the packet reader never
looks inside the Signature, so nothing unsigned can be read as routing data.

:func:`sign_packet` makes such a signature (RSA-SHA256 by default, ECDSA P-256 as an option). Signing
necessarily writes the packet once; from then on the signed bytes are never re-serialized.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import hashlib
from collections.abc import Sequence

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree

from gateway import errors
from gateway.core.packet import NS
from gateway.core.trust import (
    TrustStore,
    check_certificate,
    subject_attribute,
    subject_text,
)
from gateway.core.xmlparse import parse_xml

DS = "http://www.w3.org/2000/09/xmldsig#"
T = xmlsec.Transform

SIGNATURE_ALGORITHMS = {
    T.RSA_SHA256.href: "rsa-sha256",
    T.RSA_SHA384.href: "rsa-sha384",
    T.RSA_SHA512.href: "rsa-sha512",
    T.ECDSA_SHA256.href: "ecdsa-sha256",
    T.ECDSA_SHA384.href: "ecdsa-sha384",
    T.ECDSA_SHA512.href: "ecdsa-sha512",
}
DIGEST_ALGORITHMS = {T.SHA256.href: "sha256", T.SHA384.href: "sha384", T.SHA512.href: "sha512"}
LEGACY_SIGNATURE = {T.RSA_SHA1.href: "rsa-sha1"}
LEGACY_DIGEST = {T.SHA1.href: "sha1"}
C14N_ALGORITHMS = {T.EXCL_C14N.href: "exc-c14n", T.C14N.href: "c14n", T.C14N11.href: "c14n11"}
_TRANSFORM_BY_HREF = {
    t.href: t
    for t in (
        T.RSA_SHA256, T.RSA_SHA384, T.RSA_SHA512, T.ECDSA_SHA256, T.ECDSA_SHA384, T.ECDSA_SHA512, T.RSA_SHA1,
        T.SHA256, T.SHA384, T.SHA512, T.SHA1, T.EXCL_C14N, T.C14N, T.C14N11, T.ENVELOPED,
    )
}  # fmt: skip
_X509_ITEMS = {"X509Certificate", "X509IssuerSerial", "X509SubjectName", "X509SKI"}
_HASHLIB = {
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
    "sha1": hashlib.sha1,
}


@dataclasses.dataclass(frozen=True)
class SealPolicy:
    """What a seal must look like. Safe by default; weakening it is an explicit operator choice."""

    signature_algorithms: frozenset[str] = frozenset(SIGNATURE_ALGORITHMS)
    digest_algorithms: frozenset[str] = frozenset(DIGEST_ALGORITHMS)
    c14n_algorithms: frozenset[str] = frozenset(C14N_ALGORITHMS)
    #: accept RSA-SHA1 / SHA-1 (older senders) for every agency; per-agency consent is passed to verify
    allow_sha1: bool = False


@dataclasses.dataclass(frozen=True)
class VerifiedSeal:
    """What verification established. ``root`` is the verified document element."""

    root: etree._Element
    signer: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    fingerprint: str
    subject: str
    serial: str
    signature_algorithm: str
    digest_algorithm: str
    c14n_algorithm: str
    legacy_sha1: bool
    verified_at: dt.datetime


def _ds(name: str) -> str:
    return f"{{{DS}}}{name}"


def _children(el: etree._Element) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str)]


def _malformed(message: str) -> errors.SealMalformed:
    return errors.SealMalformed(f"the packet's signature is malformed: {message}")


def is_sealed(tree: etree._ElementTree) -> bool:
    """Whether the packet carries any XML signature at all (a present seal is always verified)."""
    return next(tree.getroot().iter(_ds("Signature")), None) is not None


def locate_signature(root: etree._Element) -> etree._Element:
    """The one Signature, where the standard puts it."""
    signatures = list(root.iter(_ds("Signature")))
    if not signatures:
        raise errors.SealMissing(
            "the packet carries no signature (ds:Signature in edXMLHeader); this gateway accepts only packets "
            "sealed by the issuing agency"
        )
    if len(signatures) > 1:
        raise errors.SealMultiple(
            f"the packet carries {len(signatures)} ds:Signature elements; exactly one, in edXMLHeader, is allowed"
        )
    sig = signatures[0]
    parent = sig.getparent()
    envelope = parent.getparent() if parent is not None else None
    if (
        parent is None
        or parent.tag != f"{{{NS}}}edXMLHeader"
        or envelope is None
        or envelope.tag != f"{{{NS}}}edXMLEnvelope"
        or envelope.getparent() is not root
    ):
        where = etree.QName(parent).localname if parent is not None else "the document"
        raise errors.SealMisplaced(
            f"the signature is inside {where} (line {sig.sourceline}); the standard puts it in "
            f"edXML/edXMLEnvelope/edXMLHeader"
        )
    return sig


@dataclasses.dataclass(frozen=True)
class _Shape:
    signature_method: str
    digest_method: str
    c14n_method: str
    reference_c14n: str | None
    digest_value: bytes
    certificates: tuple[x509.Certificate, ...]
    signer_der: bytes


EXC_C14N_NS = "http://www.w3.org/2001/10/xml-exc-c14n#"


def _is_prefix_list(el: etree._Element) -> bool:
    """An exclusive canonicalization's InclusiveNamespaces parameter (the only foreign element allowed)."""
    parent = el.getparent()
    return (
        el.tag == f"{{{EXC_C14N_NS}}}InclusiveNamespaces"
        and parent is not None
        and parent.get("Algorithm") == T.EXCL_C14N.href
        and len(el) == 0
    )


def _only_prefix_list(method: etree._Element, href: str) -> bool:
    """A canonicalization or transform element carries no parameter but exc-c14n's InclusiveNamespaces."""
    children = _children(method)
    if not children:
        return True
    return href == T.EXCL_C14N.href and len(children) == 1 and _is_prefix_list(children[0])


def _check_shape(sig: etree._Element, policy: SealPolicy, allow_sha1: bool) -> _Shape:
    parts = _children(sig)
    names = [etree.QName(p).localname if etree.QName(p).namespace == DS else p.tag for p in parts]
    if "Object" in names:
        raise _malformed("ds:Object is not accepted (content there is not covered by the signature)")
    if names != ["SignedInfo", "SignatureValue", "KeyInfo"]:
        raise _malformed(f"expected SignedInfo, SignatureValue, KeyInfo; found {', '.join(map(str, names))}")
    signed_info, _value, key_info = parts
    for child in _children(key_info):
        if etree.QName(child).localname != "X509Data":
            raise _malformed(f"KeyInfo may hold only X509Data, not {etree.QName(child).localname}")
        for item in _children(child):
            if etree.QName(item).localname not in _X509_ITEMS:
                raise _malformed(f"X509Data may not hold {etree.QName(item).localname}")

    info = _children(signed_info)
    info_names = [etree.QName(c).localname for c in info]
    if info_names[:2] != ["CanonicalizationMethod", "SignatureMethod"] or any(
        n != "Reference" for n in info_names[2:]
    ):
        raise _malformed("SignedInfo must hold CanonicalizationMethod, SignatureMethod and Reference")
    references = info[2:]
    if len(references) != 1:
        raise errors.SealExtraReference(
            f'the signature has {len(references)} References; exactly one, to the whole document (URI=""), '
            f"is allowed"
        )
    c14n = info[0].get("Algorithm", "")
    if (
        c14n not in C14N_ALGORITHMS
        or c14n not in policy.c14n_algorithms
        or not _only_prefix_list(info[0], c14n)
    ):
        raise errors.SealAlgorithmNotAllowed(f"canonicalization {c14n!r} is not accepted")
    sig_method = info[1].get("Algorithm", "")
    legacy = allow_sha1 or policy.allow_sha1
    if sig_method in LEGACY_SIGNATURE and not legacy:
        raise errors.SealAlgorithmNotAllowed(
            "the packet is signed with RSA-SHA1, which this gateway does not accept; sign with RSA-SHA256 "
            "(the operator can accept SHA-1 from a named agency during its migration)"
        )
    if sig_method not in policy.signature_algorithms and sig_method not in LEGACY_SIGNATURE:
        raise errors.SealAlgorithmNotAllowed(f"signature algorithm {sig_method!r} is not accepted")

    reference = references[0]
    if reference.get("URI") != "":
        raise errors.SealReferenceNotWhole(
            f"the signature's Reference points at {reference.get('URI')!r}; it must cover the whole document "
            f'(URI=""), attachments included'
        )
    ref_parts = _children(reference)
    ref_names = [etree.QName(c).localname for c in ref_parts]
    if ref_names not in (["Transforms", "DigestMethod", "DigestValue"], ["DigestMethod", "DigestValue"]):
        raise _malformed("Reference must hold Transforms, DigestMethod and DigestValue")
    transforms = _children(ref_parts[0]) if ref_names[0] == "Transforms" else []
    hrefs = [t.get("Algorithm", "") for t in transforms]
    for t, href in zip(transforms, hrefs, strict=True):
        if etree.QName(t).localname != "Transform":
            raise _malformed("Transforms may only hold Transform elements")
        if href not in C14N_ALGORITHMS and href != T.ENVELOPED.href:
            raise errors.SealTransformNotAllowed(
                f"transform {href!r} is not accepted; only enveloped-signature and canonicalization are"
            )
        if not _only_prefix_list(t, href):
            raise errors.SealTransformNotAllowed(f"transform {href!r} may not carry parameters")
    if (
        not hrefs
        or hrefs[0] != T.ENVELOPED.href
        or len(hrefs) > 2
        or (len(hrefs) == 2 and (hrefs[1] not in policy.c14n_algorithms))
    ):
        raise errors.SealTransformNotAllowed(
            "the Reference's transforms must be enveloped-signature, then at most one canonicalization"
        )
    digest = ref_parts[-2].get("Algorithm", "")
    if digest in LEGACY_DIGEST and not legacy:
        raise errors.SealAlgorithmNotAllowed(
            "the packet's digest is SHA-1, which this gateway does not accept; use SHA-256"
        )
    if digest not in policy.digest_algorithms and digest not in LEGACY_DIGEST:
        raise errors.SealAlgorithmNotAllowed(f"digest algorithm {digest!r} is not accepted")
    try:
        digest_value = base64.b64decode("".join((ref_parts[-1].text or "").split()), validate=True)
    except ValueError:
        raise _malformed("DigestValue is not base64") from None

    # Nothing but XML-DSig may sit inside the Signature: the enveloped transform removes the whole element
    # from what is signed, so anything else there (a MessageHeader, a To list) would travel unsigned.
    for el in sig.iter():
        if isinstance(el.tag, str) and etree.QName(el).namespace != DS and not _is_prefix_list(el):
            raise _malformed(
                f"{etree.QName(el).localname} (line {el.sourceline}) inside the Signature is not covered by it"
            )

    certificates, ders = [], []
    for data in key_info.iter(_ds("X509Certificate")):
        try:
            der = base64.b64decode("".join((data.text or "").split()), validate=True)
            certificates.append(x509.load_der_x509_certificate(der))
        except ValueError:
            raise _malformed("an X509Certificate in KeyInfo cannot be read") from None
        ders.append(der)
    if not certificates:
        raise _malformed("KeyInfo must carry the signer's X.509 certificate (X509Data/X509Certificate)")
    return _Shape(
        signature_method=sig_method,
        digest_method=digest,
        c14n_method=c14n,
        reference_c14n=hrefs[1] if len(hrefs) == 2 else None,
        digest_value=digest_value,
        certificates=tuple(certificates),
        signer_der=ders[0] if ders else b"",
    )


def _check_no_comments(root: etree._Element) -> None:
    for node in root.iter(etree.Comment, etree.ProcessingInstruction):
        kind = "comment" if isinstance(node, etree._Comment) else "processing instruction"
        raise errors.SealCommentInContent(
            f"the packet has a {kind} inside the document (line {node.sourceline}); signed packets may not carry "
            f"comments or processing instructions, which could split signed text"
        )


def _document_digest(root: etree._Element, sig: etree._Element, shape: _Shape) -> bytes:
    """Recompute the Reference digest ourselves (used only to explain a failed verification)."""
    copy = etree.fromstring(etree.tostring(root))
    for s in copy.iter(_ds("Signature")):
        parent = s.getparent()
        previous = s.getprevious()
        if s.tail:
            if previous is not None:
                previous.tail = (previous.tail or "") + s.tail
            else:
                parent.text = (parent.text or "") + s.tail
        parent.remove(s)
    method = shape.reference_c14n or T.C14N.href
    data = etree.tostring(copy, method="c14n", exclusive=method == T.EXCL_C14N.href, with_comments=False)
    name = {**DIGEST_ALGORITHMS, **LEGACY_DIGEST}[shape.digest_method]
    return _HASHLIB[name](data).digest()


@dataclasses.dataclass(frozen=True)
class SignerInfo:
    key: xmlsec.Key
    fingerprint: str
    subject: str


class KeyCache:
    """What is read from a signer's certificate once and reused: its xmlsec key (reading one costs more
    than verifying a 4 KB packet), fingerprint and subject. One per process, passed in: the core keeps no
    global state. Keyed by the certificate's exact DER bytes."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._entries: dict[bytes, SignerInfo] = {}

    def get(self, der: bytes, cert: x509.Certificate) -> SignerInfo:
        entry = self._entries.get(der)
        if entry is None:
            entry = signer_info(der, cert)
            if len(self._entries) >= self.size:
                self._entries.clear()
            self._entries[der] = entry
        return entry


def signer_info(der: bytes, cert: x509.Certificate) -> SignerInfo:
    return SignerInfo(
        # the bare public key: a key loaded with its certificate is copied, certificate and all, into every
        # signature context (78 µs per verification against under 1 µs)
        key=xmlsec.Key.from_memory(
            cert.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            xmlsec.KeyFormat.PEM,
        ),
        fingerprint=hashlib.sha256(der).hexdigest(),
        subject=subject_text(cert),
    )


def _xmlsec_verify(sig: etree._Element, shape: _Shape, signer: SignerInfo) -> bool:
    ctx = xmlsec.SignatureContext()
    ctx.key = signer.key
    for href in {T.ENVELOPED.href, shape.reference_c14n, shape.digest_method} - {None}:
        ctx.enable_reference_transform(_TRANSFORM_BY_HREF[href])
    for href in (shape.c14n_method, shape.signature_method, shape.digest_method):
        ctx.enable_signature_transform(_TRANSFORM_BY_HREF[href])
    try:
        ctx.verify(sig)
    except xmlsec.Error:
        return False
    return True


def verify_seal(
    tree: etree._ElementTree,
    *,
    policy: SealPolicy,
    trust: TrustStore,
    at: dt.datetime,
    allow_sha1: bool = False,
    keys: KeyCache | None = None,
) -> VerifiedSeal:
    """Verify the packet's seal; raise a :class:`~gateway.errors.SealError` naming what is wrong."""
    root = tree.getroot()
    sig = locate_signature(root)
    shape = _check_shape(sig, policy, allow_sha1)
    _check_no_comments(root)
    leaf, intermediates = shape.certificates[0], shape.certificates[1:]
    signer = keys.get(shape.signer_der, leaf) if keys is not None else signer_info(shape.signer_der, leaf)
    if not _xmlsec_verify(sig, shape, signer):
        if _document_digest(root, sig, shape) != shape.digest_value:
            raise errors.SealDigestMismatch(
                "the packet was changed after it was signed (the digest of its content does not match the "
                "signature); ask the sender to send it again"
            )
        raise errors.SealKeyMismatch(
            "the signature value does not verify with the certificate in KeyInfo (the certificate does not "
            "belong to the key that signed, or the signature was altered)"
        )
    chain = check_certificate(trust, leaf, intermediates, at)
    sig_name = {**SIGNATURE_ALGORITHMS, **LEGACY_SIGNATURE}[shape.signature_method]
    digest_name = {**DIGEST_ALGORITHMS, **LEGACY_DIGEST}[shape.digest_method]
    return VerifiedSeal(
        root=root,
        signer=leaf,
        chain=tuple(chain),
        fingerprint=signer.fingerprint,
        subject=signer.subject,
        serial=format(leaf.serial_number, "x"),
        signature_algorithm=sig_name,
        digest_algorithm=digest_name,
        c14n_algorithm=C14N_ALGORITHMS[shape.c14n_method],
        legacy_sha1=sig_name == "rsa-sha1" or digest_name == "sha1",
        verified_at=at,
    )


def check_signer_agency(
    seal: VerifiedSeal,
    agency: str,
    *,
    registered_fingerprints: frozenset[str],
    subject_attribute_name: str | None = None,
) -> None:
    """The signer must be the sending agency: a certificate registered for it, or (when the operator
    configured one) a subject attribute that carries its code."""
    if seal.fingerprint in registered_fingerprints:
        return
    if subject_attribute_name and agency in subject_attribute(seal.signer, subject_attribute_name):
        return
    raise errors.SealWrongAgency(
        f"the packet is sealed by {seal.subject}, which is not a seal of the sending agency {agency}; "
        f"an agency's packets must carry its own seal"
    )


# --- signing --------------------------------------------------------------------------------------------


def sign_packet(
    data: bytes,
    key_pem: bytes,
    cert_pem: bytes,
    *,
    chain_pem: Sequence[bytes] = (),
    max_bytes: int = 512 * 1024 * 1024,
) -> bytes:
    """Seal an edXML packet: an enveloped signature in edXMLHeader over the whole document.

    RSA keys sign with RSA-SHA256, EC keys (P-256) with ECDSA-SHA256; digests SHA-256; exclusive
    canonicalization; the signer's certificate (and ``chain_pem``) in KeyInfo.
    """
    tree = parse_xml(data, max_bytes=max_bytes)
    root = tree.getroot()
    header = root.find(f"{{{NS}}}edXMLEnvelope/{{{NS}}}edXMLHeader")
    if header is None:
        raise errors.NotEdxml("this is not an edXML packet: edXML/edXMLEnvelope/edXMLHeader is missing")
    if next(root.iter(_ds("Signature")), None) is not None:
        raise errors.SealMultiple("the packet is already signed; sign the unsigned packet")
    _check_no_comments(root)
    # the certificate tells the key type; loading the private key just to look (RSA key checks cost ~40 ms)
    # is what made sealing slow
    public = x509.load_pem_x509_certificate(cert_pem).public_key()
    method = T.ECDSA_SHA256 if isinstance(public, ec.EllipticCurvePublicKey) else T.RSA_SHA256
    sig = xmlsec.template.create(root, T.EXCL_C14N, method, ns="ds")
    header.append(sig)
    ref = xmlsec.template.add_reference(sig, T.SHA256, uri="")
    xmlsec.template.add_transform(ref, T.ENVELOPED)
    xmlsec.template.add_transform(ref, T.EXCL_C14N)
    x509_data = xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(sig))
    xmlsec.template.x509_data_add_certificate(x509_data)
    for _extra in chain_pem:
        xmlsec.template.x509_data_add_certificate(x509_data)
    key = xmlsec.Key.from_memory(key_pem, xmlsec.KeyFormat.PEM)
    key.load_cert_from_memory(cert_pem, xmlsec.KeyFormat.CERT_PEM)
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    ctx.sign(sig)
    # xmlsec fills only the first X509Certificate from the key; the chain certificates follow it.
    slots = list(x509_data.iter(_ds("X509Certificate")))
    for slot, pem in zip(slots[1:], chain_pem, strict=True):
        cert = x509.load_pem_x509_certificate(pem)
        slot.text = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")


# --- the gateway's own signed documents (receipts, audit checkpoints, evidence manifests) -------------------


def signature_value(private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, signed_info: bytes) -> bytes:
    """The XML-DSig SignatureValue of canonical SignedInfo bytes: ECDSA-SHA256 as r || s (XML-DSig's form,
    not DER), or RSA-SHA256 PKCS#1 v1.5 — the bytes xmlsec would produce for the same SignedInfo."""
    if isinstance(private, ec.EllipticCurvePrivateKey):
        r, s_ = decode_dss_signature(private.sign(signed_info, ec.ECDSA(hashes.SHA256())))
        size = (private.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s_.to_bytes(size, "big")
    return private.sign(signed_info, padding.PKCS1v15(), hashes.SHA256())


def _exc_c14n(el: etree._Element) -> bytes:
    return etree.tostring(el, method="c14n", exclusive=True, with_comments=False)


class DocumentSigner:
    """A key and certificate loaded once, signing whole XML documents: one enveloped Signature as the root's
    last child, ``URI=""``, exclusive c14n, SHA-256, the certificate in KeyInfo — the same shape as a seal,
    so ``xmlsec1 --verify`` checks it with no options.

    Signing computes what xmlsec would (it cost ~120 µs a document through python-xmlsec, which copies the
    key into every context and walks the transforms; this ~80 with an ECDSA key, a third of it the signature): the digest
    is SHA-256 over the exclusive c14n of the root before the Signature is added — what the enveloped
    transform leaves of the signed document (the caller's root is a document of its own, with nothing
    around it) — and the exclusive c14n of SignedInfo is signed with ``cryptography``. The tests check the
    result with ``xmlsec1`` and with :func:`verify_document`."""

    def __init__(self, key_pem: bytes, cert_pem: bytes) -> None:
        private = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(private, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise ValueError("a document signing key must be ECDSA or RSA")
        self._private = private
        cert = x509.load_pem_x509_certificate(cert_pem)
        self.certificate = cert
        der = cert.public_bytes(serialization.Encoding.DER)
        self.fingerprint = hashlib.sha256(der).hexdigest()
        b64 = base64.b64encode(der).decode()
        method = T.ECDSA_SHA256 if isinstance(private, ec.EllipticCurvePrivateKey) else T.RSA_SHA256
        # the Signature every document gets, but for its two values: copied for each document
        holder = etree.Element("holder")
        sig = xmlsec.template.create(holder, T.EXCL_C14N, method, ns="ds")
        ref = xmlsec.template.add_reference(sig, T.SHA256, uri="")
        xmlsec.template.add_transform(ref, T.ENVELOPED)
        xmlsec.template.add_transform(ref, T.EXCL_C14N)
        slot = xmlsec.template.x509_data_add_certificate(
            xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(sig))
        )
        slot.text = "".join(b64[i : i + 64] + "\n" for i in range(0, len(b64), 64))
        self._template = sig

    def sign(self, root: etree._Element) -> bytes:
        """Sign ``root`` (unsigned, built by the caller, not inside another tree) and return the document's
        bytes."""
        if root.getparent() is not None or root.getprevious() is not None or root.getnext() is not None:
            raise ValueError("only a document's root element can be signed")
        digest = hashlib.sha256(_exc_c14n(root)).digest()
        sig = copy.deepcopy(self._template)
        root.append(sig)
        signed_info = sig.find(_ds("SignedInfo"))
        signed_info.find(f"{_ds('Reference')}/{_ds('DigestValue')}").text = base64.b64encode(digest).decode()
        value = signature_value(self._private, _exc_c14n(signed_info))
        sig.find(_ds("SignatureValue")).text = base64.b64encode(value).decode()
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@dataclasses.dataclass(frozen=True)
class VerifiedDocument:
    root: etree._Element
    signer: x509.Certificate
    fingerprint: str


def verify_document(data: bytes, *, max_bytes: int = 16 * 1024 * 1024) -> VerifiedDocument:
    """Verify a document signed by :class:`DocumentSigner`: exactly one Signature, the root's last child,
    of the seal's shape, and valid for the certificate it carries. Whether that certificate is one the
    reader trusts is the reader's decision (compare ``fingerprint``, or check the chain)."""
    root = parse_xml(data, max_bytes=max_bytes).getroot()
    signatures = list(root.iter(_ds("Signature")))
    if len(signatures) != 1:
        raise errors.SealMultiple(f"expected exactly one ds:Signature, found {len(signatures)}")
    sig = signatures[0]
    if sig.getparent() is not root or sig.getnext() is not None:
        raise errors.SealMisplaced("the signature must be the document's last child")
    shape = _check_shape(sig, SealPolicy(), False)
    _check_no_comments(root)
    signer = signer_info(shape.signer_der, shape.certificates[0])
    if not _xmlsec_verify(sig, shape, signer):
        if _document_digest(root, sig, shape) != shape.digest_value:
            raise errors.SealDigestMismatch("the document was changed after it was signed")
        raise errors.SealKeyMismatch("the signature does not verify with the certificate it carries")
    return VerifiedDocument(root=root, signer=shape.certificates[0], fingerprint=signer.fingerprint)
