"""Hostile sealed packets, made by the tests' own code (python-xmlsec and lxml), never by the gateway's.

Every function takes and returns the bytes of an edXML packet. The forgeries are meant to be otherwise
*valid*: where a forgery would verify for a lenient XML-DSig verifier, :func:`lenient_verify` says so, so
that a test can show the gateway refuses it for its policy and not because the forgery is broken.

- :func:`tamper`, :func:`strip_signature`, :func:`second_signature`, :func:`misplace_signature`,
  :func:`wrap_extra_header`, :func:`comment_split` edit an existing packet;
- :func:`sign_with` is a general signer that builds the xmlsec template itself and can make every shape
  the gateway must refuse (RSA-SHA1, a Reference to an element Id, extra References, XPath or XSLT
  transforms, a certificate in KeyInfo that is not the signer's, a Signature somewhere else).
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Sequence

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DS = "http://www.w3.org/2000/09/xmldsig#"
XSL = "http://www.w3.org/1999/XSL/Transform"
T = xmlsec.Transform

#: the transforms of a standard seal's Reference
STANDARD_TRANSFORMS = (T.ENVELOPED, T.EXCL_C14N)
#: an XPath transform that leaves the attachments out of what is signed
XPATH_WITHOUT_ATTACHMENTS = "not(ancestor-or-self::e:AttachmentEncoded)"


def q(name: str) -> str:
    return f"{{{NS}}}{name}"


def ds(name: str) -> str:
    return f"{{{DS}}}{name}"


def parse(data: bytes) -> etree._Element:
    """The packet as a tree, keeping every comment, processing instruction and whitespace."""
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        remove_comments=False,
        remove_pis=False,
        remove_blank_text=False,
    )
    return etree.fromstring(data, parser)


def serialize(root: etree._Element) -> bytes:
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")


def header(root: etree._Element) -> etree._Element:
    return root.find(f"{q('edXMLEnvelope')}/{q('edXMLHeader')}")


def signature(root: etree._Element) -> etree._Element:
    found = list(root.iter(ds("Signature")))
    assert len(found) == 1, f"expected one ds:Signature, found {len(found)}"
    return found[0]


def _detach(el: etree._Element) -> etree._Element:
    """Remove ``el`` from its parent, keeping its tail text in the document (lxml drops it otherwise)."""
    parent = el.getparent()
    if el.tail:
        previous = el.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    el.tail = None
    parent.remove(el)
    return el


def _der_b64(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


# --- editing a packet ------------------------------------------------------------------------------------


def tamper(signed: bytes, old: bytes | str, new: bytes | str) -> bytes:
    """``signed`` with the one occurrence of ``old`` replaced by ``new`` (bytes, or text in UTF-8)."""
    old_b = old.encode("utf-8") if isinstance(old, str) else old
    new_b = new.encode("utf-8") if isinstance(new, str) else new
    assert signed.count(old_b) == 1, f"{old_b!r} occurs {signed.count(old_b)} times in the packet"
    changed = signed.replace(old_b, new_b)
    assert changed != signed
    return changed


def strip_signature(signed: bytes) -> bytes:
    """The packet without its ds:Signature (the rest byte-for-byte as lxml writes it)."""
    root = parse(signed)
    _detach(signature(root))
    return serialize(root)


def second_signature(signed: bytes, where: str) -> bytes:
    """A copy of the packet's Signature added a second time.

    ``where``: ``"edXMLHeader"`` (after the first), ``"AttachmentEncoded"`` (inside it), ``"MessageHeader"``,
    ``"KeyInfo"`` or ``"Object"`` (nested in the first Signature: a ``ds:Object`` is appended to it).
    """
    root = parse(signed)
    sig = signature(root)
    twin = copy.deepcopy(sig)
    twin.tail = None
    if where == "edXMLHeader":
        header(root).append(twin)
    elif where == "AttachmentEncoded":
        encoded = root.find(q("AttachmentEncoded"))
        assert encoded is not None, "the packet has no attachment"
        encoded.append(twin)
    elif where == "MessageHeader":
        header(root).find(q("MessageHeader")).append(twin)
    elif where == "KeyInfo":
        sig.find(ds("KeyInfo")).append(twin)
    elif where == "Object":
        etree.SubElement(sig, ds("Object")).append(twin)
    else:
        raise ValueError(where)
    return serialize(root)


def misplace_signature(signed: bytes, where: str) -> bytes:
    """The packet's one Signature moved out of edXMLHeader.

    The enveloped-signature transform removes the Signature wherever it stands, so the moved seal still
    verifies for a lenient verifier. ``where``: ``"MessageHeader"``, ``"edXMLEnvelope"``, ``"edXML"`` (the
    root) or ``"Attachment"``. (A Signature wrapped in a ds element inside edXMLHeader must be signed in
    place, since the wrapper is covered: ``sign_with(..., container="Object")``.)
    """
    root = parse(signed)
    sig = _detach(signature(root))
    if where == "MessageHeader":
        header(root).find(q("MessageHeader")).append(sig)
    elif where == "edXMLEnvelope":
        root.find(q("edXMLEnvelope")).append(sig)
    elif where == "edXML":
        root.append(sig)
    elif where == "Attachment":
        root.find(f"{q('AttachmentEncoded')}/{q('Attachment')}").append(sig)
    else:
        raise ValueError(where)
    return serialize(root)


def wrap_extra_header(
    signed: bytes, to_organ: str, *, where: str = "Object", what: str = "MessageHeader"
) -> bytes:
    """An unsigned routing part with a different recipient, put where the signature does not cover it.

    ``what``: ``"MessageHeader"`` (a copy of the signed MessageHeader whose every To/OrganId is
    ``to_organ``) or ``"To"`` (a lone To list: one ``To/OrganId``). ``where``: ``"Object"`` (a
    ``ds:Object`` appended to the Signature), ``"KeyInfo"`` (appended to ds:KeyInfo) or
    ``"edXMLHeader"`` (a sibling right before the Signature; that one *is* covered by the digest).
    The attack: a reader that takes the last MessageHeader, or every To in the file, routes to
    ``to_organ``.
    """
    root = parse(signed)
    sig = signature(root)
    if what == "MessageHeader":
        extra = copy.deepcopy(header(root).find(q("MessageHeader")))
        extra.tail = None
        for organ in extra.iterfind(f"{q('To')}/{q('OrganId')}"):
            organ.text = to_organ
    elif what == "To":
        extra = etree.Element(q("To"), nsmap={None: NS})
        etree.SubElement(extra, q("OrganId")).text = to_organ
    else:
        raise ValueError(what)
    if where == "Object":
        etree.SubElement(sig, ds("Object")).append(extra)
    elif where == "KeyInfo":
        sig.find(ds("KeyInfo")).append(extra)
    elif where == "edXMLHeader":
        sig.addprevious(extra)
    else:
        raise ValueError(where)
    return serialize(root)


def comment_split(data: bytes, *, path: str = "MessageHeader/Subject", kind: str = "comment") -> bytes:
    """A comment (or processing instruction) inserted in the middle of the text of the element at ``path``
    (below edXMLHeader, e.g. ``MessageHeader/Subject`` or ``MessageHeader/To/OrganId``).

    Applied to a signed packet, the seal still verifies for a lenient verifier (canonicalization without
    comments drops the comment and the text reads the same), while a reader taking ``.text`` sees only the
    part before the comment. Applied to an unsigned packet then signed with :func:`sign_with`, it gives a
    packet sealed with the comment in place.
    """
    root = parse(data)
    el = header(root).find("/".join(q(p) for p in path.split("/")))
    assert el is not None and el.text and len(el.text) >= 2, path
    text = el.text
    cut = len(text) // 2
    node = etree.Comment(" split ") if kind == "comment" else etree.ProcessingInstruction("split", "here")
    el.text = text[:cut]
    node.tail = text[cut:]
    el.insert(0, node)
    return serialize(root)


# --- a general signer ------------------------------------------------------------------------------------


def sign_with(
    packet: bytes,
    key_pem: bytes,
    cert_pem: bytes,
    *,
    sign_method: xmlsec.Transform = T.RSA_SHA256,
    digest_method: xmlsec.Transform = T.SHA256,
    c14n: xmlsec.Transform = T.EXCL_C14N,
    reference_uri: str = "",
    id_on: str | None = None,
    extra_references: int = 0,
    transforms: Sequence[xmlsec.Transform] = STANDARD_TRANSFORMS,
    xpath: str = XPATH_WITHOUT_ATTACHMENTS,
    keyinfo_cert_pem: bytes | None = None,
    container: str = "edXMLHeader",
    inclusive_namespaces: Sequence[str] = (),
) -> bytes:
    """Sign ``packet`` with an enveloped XML-DSig Signature, the last child of edXMLHeader.

    - ``sign_method`` / ``digest_method`` / ``c14n``: the algorithms (e.g. RSA-SHA1 and SHA-1);
    - ``reference_uri``: ``""`` (the whole document) or ``"#<id>"``; ``id_on`` names where the ``Id``
      attribute goes: ``"MessageHeader"`` or ``"KeyInfo"`` (the value is the URI without ``#``);
    - ``extra_references``: that many further References to the whole document (each with the standard
      transforms), so every one of them verifies;
    - ``transforms``: the first Reference's transforms; ``T.XPATH`` gets a ``ds:XPath`` child holding
      ``xpath`` (with the prefix ``e`` bound to the edXML namespace);
    - ``keyinfo_cert_pem``: a certificate put into KeyInfo in place of ``cert_pem`` after signing (KeyInfo
      is not covered by the signature, so the signature value stays what ``key_pem`` made);
    - ``container``: ``"edXMLHeader"`` (the standard place) or ``"Object"``: the Signature inside a
      ``ds:Object`` that is the last child of edXMLHeader (the edXML schema lets any ds element stand
      there), signed in place so that it verifies;
    - ``inclusive_namespaces``: an ``ec:InclusiveNamespaces PrefixList`` parameter on the Reference's
      exclusive canonicalization (what many signers write; allowed by Exclusive XML Canonicalization).
    """
    root = parse(packet)
    hdr = header(root)
    assert hdr is not None, "not an edXML packet"
    sig = xmlsec.template.create(root, c14n, sign_method, ns="ds")
    if container == "edXMLHeader":
        hdr.append(sig)
    elif container == "Object":
        etree.SubElement(hdr, ds("Object")).append(sig)
    else:
        raise ValueError(container)
    ref = xmlsec.template.add_reference(sig, digest_method, uri=reference_uri)
    for transform in transforms:
        node = xmlsec.template.add_transform(ref, transform)
        if transform == T.EXCL_C14N and inclusive_namespaces:
            xmlsec.template.transform_add_c14n_inclusive_namespaces(node, list(inclusive_namespaces))
        if transform == T.XPATH:
            expression = etree.SubElement(node, ds("XPath"), nsmap={"e": NS})
            expression.text = xpath
    for _ in range(extra_references):
        extra = xmlsec.template.add_reference(sig, digest_method, uri="")
        for transform in STANDARD_TRANSFORMS:
            xmlsec.template.add_transform(extra, transform)
    key_info = xmlsec.template.ensure_key_info(sig)
    x509_data = xmlsec.template.add_x509_data(key_info)
    xmlsec.template.x509_data_add_certificate(x509_data)

    ctx = xmlsec.SignatureContext()
    if id_on is not None:
        target = key_info if id_on == "KeyInfo" else hdr.find(q(id_on))
        target.set("Id", reference_uri.lstrip("#"))
        ctx.register_id(target, "Id")
    key = xmlsec.Key.from_memory(key_pem, xmlsec.KeyFormat.PEM)
    key.load_cert_from_memory(cert_pem, xmlsec.KeyFormat.CERT_PEM)
    ctx.key = key
    ctx.sign(sig)
    if keyinfo_cert_pem is not None:
        for slot in key_info.iter(ds("X509Certificate")):
            slot.text = _der_b64(keyinfo_cert_pem)
    return serialize(root)


def add_xslt_transform(signed: bytes) -> bytes:
    """The packet's seal with an XSLT transform added to its Reference (after enveloped-signature).

    libxmlsec refuses to *sign* with XSLT under its default security settings, so the packet is signed
    with the allowed transforms first and the Transform element is written by hand: the gateway must
    refuse the shape before any cryptography.
    """
    root = parse(signed)
    transforms = signature(root).find(f"{ds('SignedInfo')}/{ds('Reference')}/{ds('Transforms')}")
    node = etree.Element(ds("Transform"), Algorithm=T.XSLT.href)
    transforms.insert(1, node)
    sheet = etree.SubElement(node, f"{{{XSL}}}stylesheet", nsmap={"xsl": XSL}, version="1.0")
    template = etree.SubElement(sheet, f"{{{XSL}}}template", match="/")
    etree.SubElement(template, f"{{{XSL}}}copy-of", select=".")
    return serialize(root)


# --- a lenient verifier ----------------------------------------------------------------------------------


def lenient_verify(data: bytes, cert_pem: bytes, *, id_attr: str | None = None) -> bool:
    """Whether the first ds:Signature verifies with ``cert_pem``'s key for a verifier with no policy:
    xmlsec's defaults (every transform enabled), no position, count, comment or certificate check."""
    root = parse(data)
    sig = next(root.iter(ds("Signature")))
    ctx = xmlsec.SignatureContext()
    if id_attr:
        for el in root.iter():
            if isinstance(el.tag, str) and el.get(id_attr) is not None:
                ctx.register_id(el, id_attr)
    ctx.key = xmlsec.Key.from_memory(cert_pem, xmlsec.KeyFormat.CERT_PEM)
    try:
        ctx.verify(sig)
    except xmlsec.Error:
        return False
    return True
