"""Hostile seals, through the real gateway on SQLite and PostgreSQL: each is refused with its own fault code,
nothing is stored, the server keeps serving (``refused`` from test_bad_input checks all of it).

The forgeries are made by the tests' own code (:mod:`tests.support.forge`), and where a forgery would
verify for a verifier without a policy, :func:`forge.lenient_verify` asserts that it does: the gateway
must refuse it for its policy, not because the forgery happens to be broken. The positive cases show the
policy's switches (SHA-1 per agency, ECDSA, agencies allowed to send unsigned packets) and what the
gateway records about a verified seal.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt

import pytest
from sqlalchemy import delete, select

from gateway import pki
from gateway.core.seal import sign_packet
from gateway.core.trust import fingerprint_sha256, subject_text
from gateway.store.models import Agency, AgencyCertificate, Delivery, Packet
from lienthong_client.packets import read_header
from tests.support import forge
from tests.support.packets import new_document
from tests.support.refusals import refused
from tests.support.world import AGENCIES, G09, G22, H41, H49

T = forge.T
ATTACHMENT = b"Noi dung tep dinh kem - attachment content"


# --- helpers ----------------------------------------------------------------------------------------------


def send(world, data: bytes, system: str = "vpcp"):  # type: ignore[no-untyped-def]
    """Send the bytes exactly as made (the reference client must not seal them)."""
    return world.client(system).send(data, sign=False)


def seal_of(world, agency: str = G22) -> pki.Issued:  # type: ignore[no-untyped-def]
    return world.pki.seals[agency]


def document(sender: str = G22, recipients: tuple[str, ...] = (H41,), **kw) -> bytes:  # type: ignore[no-untyped-def]
    return new_document(sender, list(recipients), **kw)


def with_attachment(sender: str = G22) -> bytes:
    return document(sender, attachments=[("a.txt", "text/plain", ATTACHMENT)])


def inbox(world, system: str) -> list:  # type: ignore[no-untyped-def]
    return list(world.client(system).inbox())


def packet_row(world, doc_id: str) -> Packet:  # type: ignore[no-untyped-def]
    with world.db.unit_of_work() as session:
        row = session.execute(select(Packet).where(Packet.doc_id == doc_id)).scalar_one()
        session.expunge(row)
        return row


def recipients_of(world, packet: bytes) -> set[str]:  # type: ignore[no-untyped-def]
    """Every agency a packet with this packet's DocumentId was delivered to."""
    document_id = read_header(packet)["document_id"]
    with world.db.unit_of_work() as session:
        rows = session.execute(
            select(Delivery.recipient_code)
            .join(Packet, Delivery.packet_id == Packet.id)
            .where(Packet.document_id == document_id)
        )
        return set(rows.scalars())


@contextlib.contextmanager
def registered(world, issued: pki.Issued, agency: str = G22):  # type: ignore[no-untyped-def]
    """``issued``'s certificate registered for ``agency`` (as ``lienthong agency cert add`` does), then
    unregistered."""
    cert = issued.cert
    fingerprint = fingerprint_sha256(cert)
    with world.db.unit_of_work(write=True) as session:
        session.add(AgencyCertificate.of(agency, cert, dt.datetime.now(dt.timezone.utc)))
        session.commit()
    try:
        yield issued
    finally:
        with world.db.unit_of_work(write=True) as session:
            session.execute(delete(AgencyCertificate).where(AgencyCertificate.fingerprint == fingerprint))
            session.commit()


@contextlib.contextmanager
def sha1_allowed(world, agency: str = G22):  # type: ignore[no-untyped-def]
    """The operator's per-agency consent to SHA-1 seals, switched on for the block."""

    def set_flag(value: bool) -> None:
        with world.db.unit_of_work(write=True) as session:
            session.get(Agency, agency).allow_sha1 = value
            session.commit()

    set_flag(True)
    try:
        yield
    finally:
        set_flag(False)


# --- the content changed ----------------------------------------------------------------------------------


def test_tampered_subject(world):
    signed = world.seal(document(), G22)
    forged = forge.tamper(signed, "thử nghiệm", "thử nghiện")
    fault = refused(world, lambda: send(world, forged), "Client.Seal.DigestMismatch")
    assert "changed after it was signed" in fault.message
    # the control: the untouched packet is accepted
    assert send(world, signed).docId


def test_tampered_attachment(world):
    signed = world.seal(with_attachment(), G22)
    old = base64.b64encode(ATTACHMENT).decode()
    new = base64.b64encode(ATTACHMENT.replace(b"attachment", b"ATTACHMENT")).decode()
    forged = forge.tamper(signed, old, new)
    refused(world, lambda: send(world, forged), "Client.Seal.DigestMismatch")
    assert send(world, signed).docId


# --- where and how many signatures ------------------------------------------------------------------------


def test_signature_removed(world):
    forged = forge.strip_signature(world.seal(document(), G22))
    assert b"Signature" not in forged
    fault = refused(world, lambda: send(world, forged), "Client.Seal.Missing")
    assert "no signature" in fault.message


@pytest.mark.parametrize(
    "where, code",
    [
        # nested in the first Signature (its content is skipped by the schema): the seal check counts them
        ("KeyInfo", "Client.Seal.Multiple"),
        ("Object", "Client.Seal.Multiple"),
        # anywhere else the edXML schema allows no second ds:Signature, and the schema is checked first
        ("edXMLHeader", "Client.Packet.SchemaInvalid"),
        ("AttachmentEncoded", "Client.Packet.SchemaInvalid"),
        ("MessageHeader", "Client.Packet.SchemaInvalid"),
    ],
)
def test_second_signature(world, where, code):
    signed = world.seal(with_attachment(), G22)
    forged = forge.second_signature(signed, where)
    assert len(list(forge.parse(forged).iter(forge.ds("Signature")))) == 2
    fault = refused(world, lambda: send(world, forged), code)
    if code == "Client.Seal.Multiple":
        assert "2 ds:Signature" in fault.message
        # the first one (the only one a naive verifier looks at) still verifies
        assert forge.lenient_verify(forged, seal_of(world).cert_pem)
    else:
        assert "Signature" in fault.message


def test_signature_wrapped_inside_edxmlheader(world):
    """The one place the schema lets a Signature stand outside edXMLHeader's own children: inside another
    ds element (the schema skips ds content) — signed in place, so that it verifies."""
    seal = seal_of(world)
    forged = forge.sign_with(document(), seal.key_pem, seal.cert_pem, container="Object")
    assert forge.lenient_verify(forged, seal.cert_pem)
    fault = refused(world, lambda: send(world, forged), "Client.Seal.Misplaced")
    assert "edXMLHeader" in fault.message


@pytest.mark.parametrize("where", ["MessageHeader", "edXMLEnvelope", "edXML", "Attachment"])
def test_signature_moved_elsewhere(world, where):
    """Moved out of edXMLHeader, the seal still verifies (the enveloped transform removes it wherever it
    is), but the edXML schema, checked before the seal, allows a ds:Signature only in edXMLHeader."""
    seal = seal_of(world)
    forged = forge.misplace_signature(world.seal(with_attachment(), G22), where)
    assert forge.lenient_verify(forged, seal.cert_pem)
    fault = refused(world, lambda: send(world, forged), "Client.Packet.SchemaInvalid")
    assert "Signature" in fault.message


# --- routing data outside what is signed ------------------------------------------------------------------


@pytest.mark.parametrize(
    "where, what, code",
    [
        ("Object", "MessageHeader", "Client.Seal.Malformed"),
        ("Object", "To", "Client.Seal.Malformed"),
        ("KeyInfo", "MessageHeader", "Client.Seal.Malformed"),
        ("KeyInfo", "To", "Client.Seal.Malformed"),
        # a sibling of the signed MessageHeader: the schema refuses it (and the digest would not match)
        ("edXMLHeader", "MessageHeader", "Client.Packet.SchemaInvalid"),
        ("edXMLHeader", "To", "Client.Packet.SchemaInvalid"),
    ],
)
def test_unsigned_routing_data(world, where, what, code):
    """A MessageHeader or To list naming H49, outside what the seal covers, on a packet sealed for H41."""
    packet = document(recipients=(H41,))
    forged = forge.wrap_extra_header(world.seal(packet, G22), H49, where=where, what=what)
    if where != "edXMLHeader":  # inside the Signature: the seal itself still verifies
        assert forge.lenient_verify(forged, seal_of(world).cert_pem)
    fault = refused(world, lambda: send(world, forged), code)
    assert ("ds:Object" if where == "Object" else what) in fault.message
    assert recipients_of(world, packet) == set()
    assert not any(
        item.documentId == read_header(packet)["document_id"] for item in inbox(world, "quangninh")
    )


# --- the shape of the signature ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri, id_on, code",
    [
        ("#ki", "KeyInfo", "Client.Seal.ReferenceNotWhole"),
        ("#xpointer(/)", None, "Client.Seal.ReferenceNotWhole"),
        # the edXML schema declares no Id attribute on MessageHeader: refused before the seal is looked at
        ("#mh", "MessageHeader", "Client.Packet.SchemaInvalid"),
    ],
)
def test_reference_to_part_of_the_document(world, uri, id_on, code):
    seal = seal_of(world)
    forged = forge.sign_with(document(), seal.key_pem, seal.cert_pem, reference_uri=uri, id_on=id_on)
    assert forge.lenient_verify(forged, seal.cert_pem, id_attr="Id")
    fault = refused(world, lambda: send(world, forged), code)
    if code == "Client.Seal.ReferenceNotWhole":
        assert uri in fault.message
    else:
        assert "Id" in fault.message


def test_extra_references(world):
    seal = seal_of(world)
    forged = forge.sign_with(document(), seal.key_pem, seal.cert_pem, extra_references=1)
    assert forge.lenient_verify(forged, seal.cert_pem)
    fault = refused(world, lambda: send(world, forged), "Client.Seal.ExtraReference")
    assert "2 References" in fault.message


def test_xpath_transform(world):
    """An XPath transform that leaves the attachments out: an attachment can then be swapped and the seal
    still verifies for a lenient verifier."""
    seal = seal_of(world)
    signed = forge.sign_with(
        with_attachment(), seal.key_pem, seal.cert_pem, transforms=(T.ENVELOPED, T.XPATH, T.EXCL_C14N)
    )
    swapped = forge.tamper(signed, base64.b64encode(ATTACHMENT).decode(), base64.b64encode(b"other").decode())
    assert forge.lenient_verify(swapped, seal.cert_pem)
    for forged in (signed, swapped):
        fault = refused(world, lambda forged=forged: send(world, forged), "Client.Seal.TransformNotAllowed")
        assert "xpath" in fault.message


def test_xslt_transform(world):
    forged = forge.add_xslt_transform(world.seal(document(), G22))
    assert T.XSLT.href.encode() in forged
    fault = refused(world, lambda: send(world, forged), "Client.Seal.TransformNotAllowed")
    assert "xslt" in fault.message


@pytest.mark.parametrize(
    "sign_method, digest_method",
    [(T.RSA_SHA1, T.SHA1), (T.RSA_SHA1, T.SHA256), (T.RSA_SHA256, T.SHA1)],
    ids=["rsa-sha1+sha1", "rsa-sha1+sha256", "rsa-sha256+sha1"],
)
def test_sha1_when_not_enabled(world, sign_method, digest_method):
    seal = seal_of(world)
    forged = forge.sign_with(
        document(), seal.key_pem, seal.cert_pem, sign_method=sign_method, digest_method=digest_method
    )
    assert forge.lenient_verify(forged, seal.cert_pem)
    fault = refused(world, lambda: send(world, forged), "Client.Seal.AlgorithmNotAllowed")
    assert "SHA-1" in fault.message or "SHA1" in fault.message


# --- the certificate --------------------------------------------------------------------------------------


def _expired(world) -> pki.Issued:  # type: ignore[no-untyped-def]
    now = dt.datetime.now(dt.timezone.utc)
    return pki.issue_agency_cert(
        world.pki.ca,
        G22,
        AGENCIES[G22][0],
        not_before=now - dt.timedelta(days=400),
        not_after=now - dt.timedelta(days=1),
    )


def _not_yet_valid(world) -> pki.Issued:  # type: ignore[no-untyped-def]
    now = dt.datetime.now(dt.timezone.utc)
    return pki.issue_agency_cert(
        world.pki.ca,
        G22,
        AGENCIES[G22][0],
        not_before=now + dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=400),
    )


def _self_signed(world) -> pki.Issued:  # type: ignore[no-untyped-def]
    return pki.make_self_signed(G22, AGENCIES[G22][0])


def _untrusted_ca(world) -> pki.Issued:  # type: ignore[no-untyped-def]
    # a CA with the very name of the test CA, but another key: names alone must not chain
    return pki.issue_agency_cert(pki.make_ca(), G22, AGENCIES[G22][0])


@pytest.mark.parametrize(
    "make, code",
    [
        (_expired, "Client.Seal.CertificateExpired"),
        (_not_yet_valid, "Client.Seal.CertificateNotYetValid"),
        (_self_signed, "Client.Seal.SelfSigned"),
        (_untrusted_ca, "Client.Seal.UntrustedCertificate"),
    ],
    ids=["expired", "not-yet-valid", "self-signed", "untrusted-ca"],
)
def test_certificate_not_trusted(world, make, code):
    """The trust check comes before the agency binding: these certificates need no registration."""
    issued = make(world)
    forged = sign_packet(document(), issued.key_pem, issued.cert_pem)
    assert forge.lenient_verify(forged, issued.cert_pem)
    refused(world, lambda: send(world, forged), code)


def test_revoked_certificate(world):
    issued = pki.issue_agency_cert(world.pki.ca, G22, AGENCIES[G22][0])
    crl_dir = world.data_dir / "crls"
    crl_dir.mkdir(exist_ok=True)
    crl = crl_dir / "test.pem"
    with registered(world, issued):
        # the control: registered and not revoked, the seal is accepted
        assert send(world, sign_packet(document(), issued.key_pem, issued.cert_pem)).docId
        crl.write_bytes(
            pki.make_crl(world.pki.ca, [(issued.cert.serial_number, dt.datetime.now(dt.timezone.utc))])
        )
        try:
            forged = sign_packet(document(), issued.key_pem, issued.cert_pem)
            fault = refused(world, lambda: send(world, forged), "Client.Seal.CertificateRevoked")
            assert format(issued.cert.serial_number, "x") in fault.message
            # the other seals of the same CA are not affected by the CRL
            assert send(world, world.seal(document(), G22)).docId
        finally:
            crl.unlink()
        # the CRL gone, the gateway reloads and accepts the certificate again
        assert send(world, sign_packet(document(), issued.key_pem, issued.cert_pem)).docId


def test_valid_seal_of_another_agency(world):
    forged = world.seal(document(G22), H41)  # H41's own, valid, trusted seal on a G22 packet
    assert forge.lenient_verify(forged, seal_of(world, H41).cert_pem)
    fault = refused(world, lambda: send(world, forged), "Client.Seal.WrongAgency")
    assert G22 in fault.message


def test_keyinfo_certificate_not_the_signing_key(world):
    seal = seal_of(world)
    other = seal_of(world, H41)
    forged = forge.sign_with(document(), seal.key_pem, seal.cert_pem, keyinfo_cert_pem=other.cert_pem)
    assert forge.lenient_verify(forged, seal.cert_pem)  # the signature is G22's
    assert not forge.lenient_verify(forged, other.cert_pem)
    refused(world, lambda: send(world, forged), "Client.Seal.KeyMismatch")


# --- comments and processing instructions -----------------------------------------------------------------


@pytest.mark.parametrize(
    "path, kind, lenient",
    [
        # canonicalization without comments drops the comment: the seal still verifies for xmlsec
        ("MessageHeader/Subject", "comment", True),
        ("MessageHeader/To/OrganId", "comment", True),
        # a processing instruction is canonicalized: the digest changes
        ("MessageHeader/Subject", "pi", False),
    ],
)
def test_comment_inserted_after_signing(world, path, kind, lenient):
    forged = forge.comment_split(world.seal(document(), G22), path=path, kind=kind)
    assert forge.lenient_verify(forged, seal_of(world).cert_pem) is lenient
    fault = refused(world, lambda: send(world, forged), "Client.Seal.CommentInContent")
    assert ("comment" if kind == "comment" else "processing instruction") in fault.message


@pytest.mark.parametrize("kind", ["comment", "pi"])
def test_comment_signed_in_place(world, kind):
    seal = seal_of(world)
    forged = forge.sign_with(forge.comment_split(document(), kind=kind), seal.key_pem, seal.cert_pem)
    assert forge.lenient_verify(forged, seal.cert_pem)
    refused(world, lambda: send(world, forged), "Client.Seal.CommentInContent")


# --- the policy's switches and the record -----------------------------------------------------------------


def test_sha1_accepted_when_enabled_for_the_agency(world):
    seal = seal_of(world)
    packet = document()
    legacy = forge.sign_with(
        packet, seal.key_pem, seal.cert_pem, sign_method=T.RSA_SHA1, digest_method=T.SHA1
    )
    with sha1_allowed(world):
        sent = send(world, legacy)
    row = packet_row(world, sent.docId)
    assert row.legacy_sha1 is True
    assert row.signature_algorithm == "rsa-sha1" and row.digest_algorithm == "sha1"
    assert recipients_of(world, packet) == {H41}
    # switched off again, the same kind of seal is refused
    other = forge.sign_with(
        document(), seal.key_pem, seal.cert_pem, sign_method=T.RSA_SHA1, digest_method=T.SHA1
    )
    refused(world, lambda: send(world, other), "Client.Seal.AlgorithmNotAllowed")


def test_exclusive_c14n_with_inclusive_namespaces_accepted(world):
    seal = seal_of(world)
    sealed = forge.sign_with(document(), seal.key_pem, seal.cert_pem, inclusive_namespaces=["edXML"])
    assert b"InclusiveNamespaces" in sealed and forge.lenient_verify(sealed, seal.cert_pem)
    assert send(world, sealed).docId


def test_ecdsa_seal_accepted(world):
    issued = pki.issue_agency_cert(world.pki.ca, G22, AGENCIES[G22][0], key_type="ec")
    sealed = sign_packet(document(), issued.key_pem, issued.cert_pem)
    assert b"ecdsa-sha256" in sealed
    with registered(world, issued):
        sent = send(world, sealed)
    row = packet_row(world, sent.docId)
    assert row.signature_algorithm == "ecdsa-sha256" and row.digest_algorithm == "sha256"
    assert row.signer_fingerprint == fingerprint_sha256(issued.cert)
    assert row.legacy_sha1 is False


def test_unsigned_packet_of_an_agency_allowed_to_send_one(world):
    packet = document(G09, (H41,))
    sent = send(world, packet, system="yte")
    assert list(sent.recipients) == [H41]
    row = packet_row(world, sent.docId)
    assert row.signer_fingerprint is None and row.signer_subject is None and row.signer_serial is None
    assert row.signature_algorithm is None and row.seal_verified_at is None and row.legacy_sha1 is False
    assert recipients_of(world, packet) == {H41}
    # the exception is for G09 only: the same unsigned packet shape from G22 is refused
    refused(world, lambda: send(world, document(G22, (H41,))), "Client.Seal.Missing")


def test_present_seal_is_verified_even_when_not_required(world):
    signed = world.seal(document(G09, (H41,)), G09)
    forged = forge.tamper(signed, "thử nghiệm", "thử nghiện")
    refused(world, lambda: send(world, forged, system="yte"), "Client.Seal.DigestMismatch")
    # and a G09 packet sealed with another agency's seal is not the agency's seal
    wrong = world.seal(document(G09, (H41,)), H41)
    refused(world, lambda: send(world, wrong, system="yte"), "Client.Seal.WrongAgency")
    # its valid seal is accepted and recorded
    row = packet_row(world, send(world, signed, system="yte").docId)
    assert row.signer_fingerprint == fingerprint_sha256(seal_of(world, G09).cert)


def test_record_of_a_sealed_packet(world):
    cert = seal_of(world).cert
    before = dt.datetime.now(dt.timezone.utc)
    sent = send(world, world.seal(document(), G22))
    after = dt.datetime.now(dt.timezone.utc)
    row = packet_row(world, sent.docId)
    assert row.signer_fingerprint == fingerprint_sha256(cert)
    assert row.signer_subject == subject_text(cert)
    assert "UID=000.00.00.G22" in row.signer_subject
    assert row.signer_serial == format(cert.serial_number, "x")
    assert row.signature_algorithm == "rsa-sha256"
    assert row.digest_algorithm == "sha256"
    assert row.legacy_sha1 is False
    verified_at = row.seal_verified_at
    assert verified_at is not None and verified_at.tzinfo is not None
    assert before - dt.timedelta(seconds=1) <= verified_at <= after + dt.timedelta(seconds=1)
