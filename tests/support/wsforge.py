"""Hand-made WS-Security X.509 envelopes, built by the tests' own code (python-xmlsec and lxml), never by
the gateway's signer, so that every attack on the request signature can be made.

:func:`forge` builds the shape the gateway accepts (see :mod:`gateway.core.wssec`)::

    Envelope
      Header
        wsse:Security (mustUnderstand)
          wsse:BinarySecurityToken wsu:Id="X509-…"
          ds:Signature (exc-c14n, RSA-SHA256, References to the Body and the Timestamp, SHA-256)
          wsu:Timestamp wsu:Id="TS-…" Created Expires
      Body wsu:Id="id-…"
        <the payload>

and every option changes one thing: which parts are signed, the Timestamp's Created/Expires (or no
Timestamp at all), the algorithms, extra References, the certificate put in the token, and mutations made
before signing (``prepare``: the signature covers them) or after signing (``mutate``: the signature no longer
covers what they changed or moved). With no option it is a valid request: the tests show that it is
accepted, so that each refusal is for the one thing changed.

:func:`reference` signs with :class:`gateway.core.wssec.EnvelopeSigner` (what the reference client does);
:func:`lenient_verify` tells whether the signature verifies for a WS-Security verifier without the
gateway's policy (xmlsec with every ``wsu:Id`` registered): a wrapping forgery does, which is the point.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import itertools
import uuid
from collections.abc import Callable, Sequence

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from gateway.core.wssec import EnvelopeSigner

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
TNS = "urn:lienthong:axis:1"
DS = "http://www.w3.org/2000/09/xmldsig#"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
X509V3 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
BASE64 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
T = xmlsec.Transform
WSU_ID = f"{{{WSU}}}Id"
_PARTS = ("body", "timestamp", "token")
_counter = itertools.count(1)


def q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def xs_datetime(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def der_b64(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def parse(data: bytes) -> etree._Element:
    return etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))


def serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def payload_elements(payload: str) -> list[etree._Element]:
    """The element(s) of a payload string such as ``<tns:getAgenciesList/>`` (``tns`` is the service)."""
    wrapper = etree.fromstring(
        f'<w xmlns:tns="{TNS}">{payload}</w>'.encode(),
        etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True),
    )
    return list(wrapper)


@dataclasses.dataclass
class Parts:
    """The envelope being forged and its parts (``signature``/``timestamp`` may be None)."""

    envelope: etree._Element
    header: etree._Element
    security: etree._Element
    token: etree._Element
    signature: etree._Element | None
    timestamp: etree._Element | None
    body: etree._Element

    def ids(self) -> dict[str, str]:
        """``body``, ``timestamp``, ``token`` → their wsu:Id."""
        out = {"body": self.body.get(WSU_ID), "token": self.token.get(WSU_ID)}
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp.get(WSU_ID)
        return out


Mutation = Callable[[Parts], None]


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


#: Created: the time of forging; Expires: Created + 5 minutes
DEFAULT = _Default()


def forge(
    payload: str,
    key_pem: bytes,
    cert_pem: bytes,
    *,
    sign: Sequence[str] = ("body", "timestamp"),
    created: dt.datetime | _Default | None = DEFAULT,
    expires: dt.datetime | _Default | None = DEFAULT,
    timestamp: bool = True,
    signature_method: xmlsec.Transform = T.RSA_SHA256,
    digest_method: xmlsec.Transform = T.SHA256,
    extra_references: Sequence[str] = (),
    token_cert_pem: bytes | None = None,
    prepare: Sequence[Mutation] = (),
    mutate: Sequence[Mutation] = (),
) -> bytes:
    """A signed SOAP request around ``payload`` (one or more elements, ``tns`` bound to the service).

    - ``sign``: the parts the References name, in order (``"body"``, ``"timestamp"``, ``"token"``); empty:
      no ds:Signature at all (the token and the Timestamp are still there);
    - ``created`` / ``expires``: absolute times; ``None`` leaves the element out; ``timestamp=False``
      leaves the whole wsu:Timestamp out;
    - ``signature_method`` / ``digest_method``: e.g. ``T.RSA_SHA1`` / ``T.SHA1``;
    - ``extra_references``: further References after those of ``sign`` (same part names);
    - ``token_cert_pem``: the certificate written into the BinarySecurityToken in place of ``cert_pem``
      (the signature is still made with ``key_pem``);
    - ``prepare``: mutations before signing (the signature covers their result); ``mutate``: after.
    """
    now = utcnow()
    created_at = now if isinstance(created, _Default) else created
    if isinstance(expires, _Default):
        expires_at = (created_at or now) + dt.timedelta(minutes=5)
    else:
        expires_at = expires
    envelope = etree.Element(q(SOAP, "Envelope"), nsmap={"soapenv": SOAP, "tns": TNS})
    header = etree.SubElement(envelope, q(SOAP, "Header"))
    security = etree.SubElement(header, q(WSSE, "Security"), nsmap={"wsse": WSSE, "wsu": WSU})
    security.set(q(SOAP, "mustUnderstand"), "1")
    n = next(_counter)
    token = etree.SubElement(security, q(WSSE, "BinarySecurityToken"))
    token.set("EncodingType", BASE64)
    token.set("ValueType", X509V3)
    token.set(WSU_ID, f"X509-{n}-{uuid.uuid4().hex}")
    token.text = der_b64(token_cert_pem or cert_pem)
    body = etree.SubElement(envelope, q(SOAP, "Body"))
    body.set(WSU_ID, f"id-{n}-{uuid.uuid4().hex}")
    for el in payload_elements(payload):
        body.append(el)

    sig = None
    refs = [*sign, *extra_references]
    if refs:
        sig = xmlsec.template.create(envelope, T.EXCL_C14N, signature_method, ns="ds")
        security.append(sig)
    stamp = None
    if timestamp:
        stamp = etree.SubElement(security, q(WSU, "Timestamp"))
        stamp.set(WSU_ID, f"TS-{n}-{uuid.uuid4().hex}")
        if created_at is not None:
            etree.SubElement(stamp, q(WSU, "Created")).text = xs_datetime(created_at)
        if expires_at is not None:
            etree.SubElement(stamp, q(WSU, "Expires")).text = xs_datetime(expires_at)
    parts = Parts(envelope, header, security, token, sig, stamp, body)
    for mutation in prepare:
        mutation(parts)
    if sig is not None:
        ids = parts.ids()
        for part in refs:
            if part not in _PARTS:
                raise ValueError(f"unknown part {part!r}; use one of {_PARTS}")
            ref = xmlsec.template.add_reference(sig, digest_method, uri=f"#{ids[part]}")
            xmlsec.template.add_transform(ref, T.EXCL_C14N)
        key_info = xmlsec.template.ensure_key_info(sig)
        str_el = etree.SubElement(key_info, q(WSSE, "SecurityTokenReference"))
        ref_el = etree.SubElement(str_el, q(WSSE, "Reference"))
        ref_el.set("URI", f"#{token.get(WSU_ID)}")
        ref_el.set("ValueType", X509V3)
        ctx = xmlsec.SignatureContext()
        ctx.key = xmlsec.Key.from_memory(key_pem, xmlsec.KeyFormat.PEM)
        for el in (parts.body, parts.token, parts.timestamp):
            if el is not None:
                ctx.register_id(el, "Id", WSU)
        ctx.sign(sig)
    for mutation in mutate:
        mutation(parts)
    return serialize(envelope)


def reference(payload: str, key_pem: bytes, cert_pem: bytes, at: dt.datetime | None = None) -> bytes:
    """``payload`` signed by :class:`gateway.core.wssec.EnvelopeSigner` (the reference client's signer)."""
    envelope = etree.Element(q(SOAP, "Envelope"), nsmap={"soapenv": SOAP, "tns": TNS})
    body = etree.SubElement(envelope, q(SOAP, "Body"))
    for el in payload_elements(payload):
        body.append(el)
    EnvelopeSigner(key_pem=key_pem, cert_pem=cert_pem).sign(envelope, at or utcnow())
    return serialize(envelope)


def lenient_verify(data: bytes, cert_pem: bytes) -> bool:
    """Whether the first ds:Signature verifies with ``cert_pem``'s key for a verifier with no policy: every
    element with a ``wsu:Id`` is registered (the last of duplicates wins) and xmlsec's defaults apply."""
    root = parse(data)
    sig = next(root.iter(q(DS, "Signature")))
    ctx = xmlsec.SignatureContext()
    seen: set[str] = set()
    for el in reversed(list(root.iter())):
        if isinstance(el.tag, str) and el.get(WSU_ID) is not None and el.get(WSU_ID) not in seen:
            seen.add(el.get(WSU_ID))
            ctx.register_id(el, "Id", WSU)
    ctx.key = xmlsec.Key.from_memory(cert_pem, xmlsec.KeyFormat.CERT_PEM)
    try:
        ctx.verify(sig)
    except xmlsec.Error:
        return False
    return True


# --- mutations --------------------------------------------------------------------------------------------


def move_body_to_header(decoy_payload: str) -> Mutation:
    """Signature wrapping: the signed Body (its wsu:Id kept) moved into the Header, and a decoy Body with
    ``decoy_payload`` (no wsu:Id) put in its place."""

    def mutation(parts: Parts) -> None:
        signed_body = parts.body
        decoy = etree.Element(q(SOAP, "Body"))
        for el in payload_elements(decoy_payload):
            decoy.append(el)
        signed_body.addnext(decoy)
        parts.header.append(signed_body)  # moves it
        parts.body = decoy

    return mutation


def duplicate_body_id(decoy_payload: str | None = None) -> Mutation:
    """A copy of the signed Body, with the same wsu:Id, put into the Header; with ``decoy_payload`` the real
    Body's content is replaced by it (a verifier that resolves the Id to the copy checks the copy)."""

    def mutation(parts: Parts) -> None:
        twin = copy.deepcopy(parts.body)
        twin.tail = None
        parts.header.append(twin)
        if decoy_payload is not None:
            for el in list(parts.body):
                parts.body.remove(el)
            for el in payload_elements(decoy_payload):
                parts.body.append(el)

    return mutation


def second_body(payload: str | None = None) -> Mutation:
    """A second Body after the first: a copy of the first, or one holding ``payload``."""

    def mutation(parts: Parts) -> None:
        if payload is None:
            extra = copy.deepcopy(parts.body)
            extra.attrib.pop(WSU_ID, None)
        else:
            extra = etree.Element(q(SOAP, "Body"))
            for el in payload_elements(payload):
                extra.append(el)
        extra.tail = None
        parts.body.addnext(extra)

    return mutation


def add_payload(payload: str) -> Mutation:
    """Another element appended in the Body beside the operation element."""

    def mutation(parts: Parts) -> None:
        for el in payload_elements(payload):
            parts.body.append(el)

    return mutation


def href_into_header(parameter: str) -> Mutation:
    """SOAP-encoding multi-ref: the operation's ``parameter`` element (local name) keeps only
    ``href="#ref-…"`` and its value moves to an element with that ``id`` in the Header."""

    def mutation(parts: Parts) -> None:
        operation = next(el for el in parts.body if isinstance(el.tag, str))
        param = operation.find(q(TNS, parameter))
        assert param is not None, f"the payload has no {parameter}"
        ref_id = f"ref-{uuid.uuid4().hex[:8]}"
        target = etree.SubElement(parts.header, q(TNS, parameter))
        target.set("id", ref_id)
        target.text = param.text
        param.text = None
        param.set("href", f"#{ref_id}")

    return mutation


def drop_signature(parts: Parts) -> None:
    """The ds:Signature removed (the token and the Timestamp stay)."""
    if parts.signature is not None:
        parts.security.remove(parts.signature)
        parts.signature = None


def replace_token(cert_pem: bytes) -> Mutation:
    """The BinarySecurityToken's certificate replaced (it is not covered by the signature)."""

    def mutation(parts: Parts) -> None:
        parts.token.text = der_b64(cert_pem)

    return mutation


def add_username_token(system_id: str, secret: str) -> Mutation:
    """A UsernameToken added to the Security header beside the signature."""

    def mutation(parts: Parts) -> None:
        ut = etree.Element(q(WSSE, "UsernameToken"))
        etree.SubElement(ut, q(WSSE, "Username")).text = system_id
        etree.SubElement(ut, q(WSSE, "Password")).text = secret
        parts.security.insert(0, ut)

    return mutation


def change_body_text(old: str, new: str) -> Mutation:
    """One text in the Body changed (the first element whose text contains ``old``)."""

    def mutation(parts: Parts) -> None:
        for el in parts.body.iter():
            if isinstance(el.tag, str) and el.text and old in el.text:
                el.text = el.text.replace(old, new, 1)
                return
        raise AssertionError(f"{old!r} is not in the Body")

    return mutation
