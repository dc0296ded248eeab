"""Hostile signed requests, through the real gateway on SQLite and PostgreSQL.

Every attack is refused with its own fault code, stores nothing (``world.snapshot()``, which leaves the
replay records out, is unchanged), and the server keeps serving: :func:`refused_then_valid` checks all of
that (with ``refused_raw`` from test_bad_input) and then sends a *valid* request built the same way —
the same forging function with the one attack left out — which must be accepted. So each refusal is for
the attack, not for a flaw in how the test made the request. Where the forged signature still verifies for
a verifier without the gateway's policy, :func:`wsforge.lenient_verify` asserts it: the gateway must
refuse it for its policy.

The envelopes are made by the tests' own code (:mod:`tests.support.wsforge`, python-xmlsec and lxml).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import select as io_select
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select

from gateway import pki
from gateway.core.trust import fingerprint_sha256
from gateway.core.wssec import verify_envelope
from gateway.launcher import GatewayProcess
from gateway.store import repo
from gateway.store.models import Delivery, Packet, ReplayRecord, System, SystemCertificate
from gateway.systems import generate_secret, store_secret
from lienthong_client.packets import read_header
from tests.conftest import MAX_PACKET, ROOT
from tests.hostile.test_bad_input import refused_raw
from tests.support import raw, wsforge
from tests.support.packets import new_document
from tests.support.refusals import still_serving
from tests.support.world import G22, H41, H49

SIGNER = "vpcp-signed"  # acts for G22
OTHER = "nghean-signed"  # acts for H41
AGENCIES = "<tns:getAgenciesList/>"
#: the test gateway's request limit (gateway.config.Config.max_request_bytes for MAX_PACKET)
MAX_REQUEST = (MAX_PACKET * 4 + 2) // 3 + 256 * 1024


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def key_of(world, system: str = SIGNER) -> pki.Issued:  # type: ignore[no-untyped-def]
    return world.pki.systems[system]


def forge(world, payload: str = AGENCIES, system: str = SIGNER, **kw) -> bytes:  # type: ignore[no-untyped-def]
    issued = key_of(world, system)
    return wsforge.forge(payload, issued.key_pem, issued.cert_pem, **kw)


def filtered(text: str) -> str:
    return f"<tns:getAgenciesList><tns:filter>{text}</tns:filter></tns:getAgenciesList>"


def sealed_document(world, sender: str = G22, recipients: tuple[str, ...] = (H41,)) -> bytes:  # type: ignore[no-untyped-def]
    return world.seal(new_document(sender, list(recipients)), sender)


def gateway_fingerprint(world) -> str:  # type: ignore[no-untyped-def]
    cert = x509.load_pem_x509_certificate(world.gateway_cert)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def accepted(world, body: bytes, url: str | None = None) -> raw.Reply:  # type: ignore[no-untyped-def]
    """``body`` is accepted (HTTP 200, no fault) and the answer is signed by the gateway's key."""
    reply = raw.post(url or world.url, body)
    assert reply.status == 200 and reply.code is None, (reply.status, reply.code, reply.message)
    verified = verify_envelope(wsforge.parse(reply.body), at=utcnow())
    assert verified.fingerprint == gateway_fingerprint(world)
    return reply


def refused_then_valid(world, attack: bytes, code: str, valid: bytes | None, **kw) -> raw.Reply:  # type: ignore[no-untyped-def]
    """``attack`` is refused with ``code`` and changes nothing; the server keeps serving (UsernameToken and
    signing reference clients); then ``valid`` (the same request without the attack) is accepted."""
    reply = refused_raw(world, attack, code, **kw)
    assert reply.message and "Traceback" not in reply.message
    assert reply.correlation_id in world.gateway.log_text(), "the refusal must be logged with its id"
    assert any(a.code == H41 for a in world.client(SIGNER).agencies())
    if valid is not None:
        accepted(world, valid)
    return reply


def deliveries_of(world, packet: bytes) -> list[str]:  # type: ignore[no-untyped-def]
    """The recipients of every stored packet with this packet's DocumentId."""
    document_id = read_header(packet)["document_id"]
    with world.db.unit_of_work() as session:
        rows = session.execute(
            select(Delivery.recipient_code)
            .join(Packet, Delivery.packet_id == Packet.id)
            .where(Packet.document_id == document_id, Packet.sender_code == G22)
        )
        return sorted(rows.scalars())


def register_system(
    world, system_id: str, agencies: list[str], certs: list[pki.Issued], secret: str | None = None
):  # type: ignore[no-untyped-def]
    """An X.509 system registered through the database, as tests/support/world.py does (once per world)."""
    now = utcnow()
    with world.db.unit_of_work(write=True) as session:
        if repo.get_system(session, system_id) is not None:
            return
        system = System(
            id=system_id,
            secret_hash=store_secret(secret) if secret else "",
            auth_method="x509",
            is_admin=False,
            active=True,
            created_at=now,
        )
        repo.add_system(session, system, agencies)
        for issued in certs:
            system.certificates.append(SystemCertificate.of(system_id, issued.cert, now))
        session.commit()


def replay_records(world) -> int:  # type: ignore[no-untyped-def]
    return world.count("replay_records")


# --- the forgeries are sound --------------------------------------------------------------------------------


def test_the_forged_valid_envelope_and_the_reference_signer_are_accepted(world):
    """The baseline for every test below: a request made by wsforge with no attack option, and one signed
    by the gateway's own EnvelopeSigner, verify locally, for a lenient verifier, and at the gateway."""
    issued = key_of(world)
    forged = forge(world, filtered("Nghệ An"))
    reference = wsforge.reference(filtered("Nghệ An"), issued.key_pem, issued.cert_pem)
    for body in (forged, reference):
        verified = verify_envelope(wsforge.parse(body), at=utcnow())
        assert verified.fingerprint == fingerprint_sha256(issued.cert)
        assert wsforge.lenient_verify(body, issued.cert_pem)
        reply = accepted(world, body)
        assert H41.encode() in reply.body and G22.encode() not in reply.body  # the filter was read
    # a signed sendEdoc made by wsforge is stored, and delivered
    packet = sealed_document(world)
    before = world.count("deliveries")
    reply = accepted(world, forge(world, raw.send_edoc_payload(packet)))
    assert b"docId" in reply.body
    assert world.count("deliveries") == before + 1 and deliveries_of(world, packet) == [H41]


# --- credentials and the signature's coverage ----------------------------------------------------------------


def test_no_security_header(world):
    packet = sealed_document(world)
    payload = raw.send_edoc_payload(packet)
    refused_then_valid(world, raw.envelope(payload), "Client.Auth.MissingCredentials", None)
    # a Security header with a Timestamp only (no token, no signature) proves nothing either
    stamp_only = forge(world, payload, mutate=[wsforge.drop_signature, _drop_token])
    assert b"BinarySecurityToken" not in stamp_only and b"Timestamp" in stamp_only
    refused_then_valid(world, stamp_only, "Client.Auth.MissingCredentials", forge(world, payload))
    assert deliveries_of(world, packet) == [H41]  # only the valid one


def _drop_token(parts: wsforge.Parts) -> None:
    parts.security.remove(parts.token)


def test_unsigned_body(world):
    """A token and a Timestamp, but no ds:Signature at all."""
    attack = forge(world, sign=())
    assert b"Signature" not in attack and b"BinarySecurityToken" in attack
    refused_then_valid(world, attack, "Client.Security.BodyNotSigned", forge(world))


def test_signature_over_the_timestamp_only(world):
    issued = key_of(world)
    packet = sealed_document(world)
    attack = forge(world, raw.send_edoc_payload(packet), sign=("timestamp",))
    assert wsforge.lenient_verify(attack, issued.cert_pem)  # a valid signature, over the wrong part
    refused_then_valid(
        world, attack, "Client.Security.BodyNotSigned", forge(world, raw.send_edoc_payload(packet))
    )


def test_signature_wrapping_with_a_decoy_body(world):
    """The signed Body (a sendEdoc to H41) moved into the Header, and a decoy Body — a sendEdoc of another
    properly sealed G22 packet to H49 — put in its place: refused, nothing delivered to anyone. The decoy
    signed properly is accepted and delivered to H49, so it is the wrapping that is refused."""
    issued = key_of(world)
    signed_packet = sealed_document(world, G22, (H41,))
    decoy_packet = sealed_document(world, G22, (H49,))
    decoy = raw.send_edoc_payload(decoy_packet)
    attack = forge(world, raw.send_edoc_payload(signed_packet), mutate=[wsforge.move_body_to_header(decoy)])
    assert wsforge.lenient_verify(attack, issued.cert_pem)  # the moved Body still verifies
    pending_h49 = [i.docId for i in world.client("quangninh").inbox()]
    refused_then_valid(world, attack, "Client.Security.SignatureWrapping", None)
    assert deliveries_of(world, signed_packet) == [] and deliveries_of(world, decoy_packet) == []
    assert [i.docId for i in world.client("quangninh").inbox()] == pending_h49

    accepted(world, forge(world, decoy))
    assert deliveries_of(world, decoy_packet) == [H49]
    assert len(world.client("quangninh").inbox()) == len(pending_h49) + 1
    # and a wrapped getAgenciesList (decoy asks for another filter) is refused the same way
    wrapped = forge(world, filtered("Nghệ"), mutate=[wsforge.move_body_to_header(filtered("Quảng"))])
    refused_then_valid(world, wrapped, "Client.Security.SignatureWrapping", forge(world, filtered("Quảng")))


def test_duplicate_wsu_id(world):
    """A copy of the signed Body with the same wsu:Id in the Header, and the real Body replaced by a decoy:
    a verifier that resolves the Id to the copy would check the copy and act on the decoy."""
    decoy_packet = sealed_document(world, G22, (H49,))
    decoy = raw.send_edoc_payload(decoy_packet)
    attack = forge(world, filtered("Nghệ"), mutate=[wsforge.duplicate_body_id(decoy)])
    refused_then_valid(world, attack, "Client.Security.DuplicateId", None)
    assert deliveries_of(world, decoy_packet) == []
    # the same copy without a decoy: still two elements with one wsu:Id
    refused_then_valid(
        world,
        forge(world, filtered("Nghệ"), mutate=[wsforge.duplicate_body_id()]),
        "Client.Security.DuplicateId",
        forge(world, decoy),
    )
    assert deliveries_of(world, decoy_packet) == [H49]


def test_a_second_body(world):
    issued = key_of(world)
    decoy_packet = sealed_document(world, G22, (H49,))
    # the first Body signed, the second (a sendEdoc) present when signing: the signature verifies
    attack = forge(world, prepare=[wsforge.second_body(raw.send_edoc_payload(decoy_packet))])
    assert wsforge.lenient_verify(attack, issued.cert_pem)
    refused_then_valid(world, attack, "Client.Request.MalformedEnvelope", None)
    # a copy of the signed Body added after signing
    refused_then_valid(
        world, forge(world, mutate=[wsforge.second_body()]), "Client.Request.MalformedEnvelope", forge(world)
    )
    assert deliveries_of(world, decoy_packet) == []


def test_an_extra_payload_element(world):
    issued = key_of(world)
    packet = sealed_document(world)
    # signed with both elements in the Body: the signature is valid, the shape is not
    attack = forge(world, filtered("Nghệ"), prepare=[wsforge.add_payload(raw.send_edoc_payload(packet))])
    assert wsforge.lenient_verify(attack, issued.cert_pem)
    refused_then_valid(world, attack, "Client.Request.MalformedEnvelope", None)
    # added after signing
    refused_then_valid(
        world,
        forge(world, filtered("Nghệ"), mutate=[wsforge.add_payload(AGENCIES)]),
        "Client.Request.MalformedEnvelope",
        forge(world, filtered("Nghệ")),
    )
    assert deliveries_of(world, packet) == []


def test_an_href_into_the_header(world):
    """SOAP-encoding multi-ref: the signed Body's parameter is only ``href="#ref-…"``, its value stands in
    the (unsigned) Header."""
    issued = key_of(world)
    attack = forge(world, filtered("Nghệ"), prepare=[wsforge.href_into_header("filter")])
    assert b'href="#ref-' in attack and wsforge.lenient_verify(attack, issued.cert_pem)
    refused_then_valid(world, attack, "Client.Request.MalformedEnvelope", forge(world, filtered("Nghệ")))


# --- whose certificate ----------------------------------------------------------------------------------------


def test_an_unknown_certificate(world):
    """A certificate from the test CA (and a self-signed one) that no system registered: the signature is
    valid, the signer is nobody."""
    stranger = pki.issue_agency_cert(world.pki.ca, "stranger", "system stranger")
    self_signed = pki.make_self_signed("stranger", "system stranger")
    for issued in (stranger, self_signed):
        attack = wsforge.forge(AGENCIES, issued.key_pem, issued.cert_pem)
        assert verify_envelope(wsforge.parse(attack), at=utcnow()).fingerprint == fingerprint_sha256(
            issued.cert
        )
        fault = refused_then_valid(world, attack, "Client.Auth.UnknownCertificate", forge(world))
        assert fingerprint_sha256(issued.cert)[:16] in fault.message


def test_a_certificate_of_another_system(world):
    """nghean-signed (H41) signs a sendEdoc of a G22 packet: it is who it says, but may not send for G22."""
    packet = sealed_document(world, G22, (H49,))
    payload = raw.send_edoc_payload(packet)
    refused_then_valid(world, forge(world, payload, system=OTHER), "Client.Auth.SenderNotAllowed", None)
    assert deliveries_of(world, packet) == []
    accepted(world, forge(world, payload, system=SIGNER))
    assert deliveries_of(world, packet) == [H49]


def test_the_token_of_one_system_with_the_signature_of_another(world):
    """The BinarySecurityToken carries vpcp-signed's certificate, the signature is made with nghean-signed's
    key: nobody's signature."""
    mine, theirs = key_of(world, SIGNER), key_of(world, OTHER)
    packet = sealed_document(world)
    payload = raw.send_edoc_payload(packet)
    attack = wsforge.forge(payload, theirs.key_pem, theirs.cert_pem, token_cert_pem=mine.cert_pem)
    assert wsforge.lenient_verify(attack, theirs.cert_pem) and not wsforge.lenient_verify(
        attack, mine.cert_pem
    )
    refused_then_valid(world, attack, "Client.Security.SignatureInvalid", None)
    # the same, with the token swapped after signing
    swapped = wsforge.forge(
        payload, theirs.key_pem, theirs.cert_pem, mutate=[wsforge.replace_token(mine.cert_pem)]
    )
    refused_then_valid(world, swapped, "Client.Security.SignatureInvalid", forge(world, payload))
    assert deliveries_of(world, packet) == [H41]


def test_an_expired_or_not_yet_valid_certificate(world):
    """A system whose registered certificate expired yesterday (and one valid only from tomorrow); the same
    system with a current certificate is accepted."""
    now = utcnow()
    expired = pki.issue_agency_cert(
        world.pki.ca, "old-signed", "system old-signed", not_before=now - dt.timedelta(days=400),
        not_after=now - dt.timedelta(days=1),
    )  # fmt: skip
    early = pki.issue_agency_cert(
        world.pki.ca, "old-signed", "system old-signed", not_before=now + dt.timedelta(days=1),
        not_after=now + dt.timedelta(days=400),
    )  # fmt: skip
    current = pki.issue_agency_cert(world.pki.ca, "old-signed", "system old-signed")
    register_system(world, "old-signed", [G22], [expired, early, current])
    payload = raw.send_edoc_payload(sealed_document(world))
    for issued in (expired, early):
        attack = wsforge.forge(payload, issued.key_pem, issued.cert_pem)
        fault = refused_then_valid(world, attack, "Client.Auth.CertificateExpired", None)
        assert "old-signed" in fault.message
    accepted(world, wsforge.forge(payload, current.key_pem, current.cert_pem))


# --- the Timestamp -----------------------------------------------------------------------------------------


def test_a_missing_timestamp(world):
    issued = key_of(world)
    no_stamp = forge(world, sign=("body",), timestamp=False)
    assert b"Timestamp" not in no_stamp and wsforge.lenient_verify(no_stamp, issued.cert_pem)
    refused_then_valid(world, no_stamp, "Client.Security.TimestampMissing", forge(world))
    # a Timestamp that the signature does not cover
    unsigned_stamp = forge(world, sign=("body",))
    refused_then_valid(world, unsigned_stamp, "Client.Security.TimestampMissing", forge(world))
    # a signed Timestamp without Created
    no_created = forge(world, created=None, expires=utcnow() + dt.timedelta(minutes=5))
    assert b"Created" not in no_created
    refused_then_valid(world, no_created, "Client.Security.TimestampMissing", forge(world))


def test_an_expired_timestamp(world):
    issued = key_of(world)
    hour_ago = utcnow() - dt.timedelta(hours=1)
    packet = sealed_document(world)
    payload = raw.send_edoc_payload(packet)
    attack = forge(world, payload, created=hour_ago, expires=hour_ago + dt.timedelta(minutes=5))
    assert wsforge.lenient_verify(attack, issued.cert_pem)
    refused_then_valid(world, attack, "Client.Security.TimestampExpired", None)
    # Created and Expires both an hour ago
    refused_then_valid(
        world,
        forge(world, payload, created=hour_ago, expires=hour_ago),
        "Client.Security.TimestampExpired",
        None,
    )
    # fresh, but claiming a lifetime of a day (a signature good for replaying all day)
    long_lived = forge(world, payload, expires=utcnow() + dt.timedelta(days=1))
    refused_then_valid(world, long_lived, "Client.Security.TimestampExpired", forge(world, payload))
    assert deliveries_of(world, packet) == [H41]


def test_a_timestamp_in_the_future(world):
    issued = key_of(world)
    later = utcnow() + dt.timedelta(hours=1)
    attack = forge(world, created=later, expires=later + dt.timedelta(minutes=5))
    assert wsforge.lenient_verify(attack, issued.cert_pem)
    refused_then_valid(world, attack, "Client.Security.TimestampInFuture", forge(world))


# --- replays -------------------------------------------------------------------------------------------------


def test_a_replayed_request(world):
    """The exact same signed bytes twice: the second is a replay. The same payload signed anew is accepted
    (the packet is then a resend: the first docId, duplicate=true)."""
    packet = sealed_document(world)
    payload = raw.send_edoc_payload(packet)
    body = forge(world, payload)
    first = accepted(world, body)
    records = replay_records(world)
    assert raw.post(world.url, body).code == "Client.Security.Replay"
    assert replay_records(world) == records  # the replay itself is not recorded again
    fault = refused_then_valid(world, body, "Client.Security.Replay", None)  # and again, and again
    assert "already received" in fault.message
    again = accepted(world, forge(world, payload))
    doc_id = wsforge.parse(first.body).findtext(f".//{{{raw.TNS}}}docId")
    assert doc_id and wsforge.parse(again.body).findtext(f".//{{{raw.TNS}}}docId") == doc_id
    assert wsforge.parse(again.body).findtext(f".//{{{raw.TNS}}}duplicate") == "true"
    assert deliveries_of(world, packet) == [H41]
    # the reference client's requests are each signed anew: two identical calls both succeed
    client = world.client(SIGNER)
    assert client.agencies() and client.agencies()


def _restart(world) -> None:  # type: ignore[no-untyped-def]
    world.gateway.stop()
    world.gateway.start()
    world._clients.clear()  # the cached reference clients talk to the old port


def test_a_replay_after_the_gateway_restarts(world):
    body = forge(world, filtered("Nghệ"))
    accepted(world, body)
    _restart(world)
    assert world.gateway.is_running()
    refused_then_valid(world, body, "Client.Security.Replay", forge(world, filtered("Nghệ")))


def test_a_replay_on_a_second_gateway_process(world, tmp_path):
    """A second gateway process on the same database (its own data directory, the same gateway key) knows
    the signatures the first one saw."""
    body = forge(world, filtered("Nghệ"))
    accepted(world, body)
    for name in ("gateway-key.pem", "gateway-cert.pem"):
        shutil.copy(world.data_dir / name, tmp_path / name)
    second = GatewayProcess(
        tmp_path,
        database_url=world.database_url,
        env={"LIENTHONG_TRUST_ANCHORS": str(world.trust_file), "LIENTHONG_MAX_PACKET_BYTES": str(MAX_PACKET)},
    )
    second.start()
    try:
        before = world.snapshot()
        reply = raw.post(second.url, body)
        assert reply.code == "Client.Security.Replay", (reply.status, reply.body[:500])
        assert reply.correlation_id and reply.headers.get("X-Correlation-Id") == reply.correlation_id
        assert world.snapshot() == before
        # and the other way round: what the second process saw, the first refuses
        fresh = forge(world, filtered("Nghệ"))
        accepted(world, fresh, url=second.url)
        refused_then_valid(world, fresh, "Client.Security.Replay", forge(world, filtered("Nghệ")))
    finally:
        second.stop()
    still_serving(world)


# --- algorithms ----------------------------------------------------------------------------------------------


def test_rsa_sha1(world):
    issued = key_of(world)
    for options in ({"signature_method": wsforge.T.RSA_SHA1}, {"digest_method": wsforge.T.SHA1}):
        attack = forge(world, **options)
        assert wsforge.lenient_verify(attack, issued.cert_pem)  # xmlsec would take it
        fault = refused_then_valid(world, attack, "Client.Security.AlgorithmNotAllowed", forge(world))
        assert "sha1" in fault.message.lower()


def test_the_signature_may_cover_only_the_body_and_the_timestamp(world):
    attack = forge(world, extra_references=("token",))
    refused_then_valid(world, attack, "Client.Security.Malformed", forge(world))


# --- authentication methods ----------------------------------------------------------------------------------


def test_a_username_token_for_an_x509_system(world):
    """An X.509 system (which has a secret left from before it switched) sends its correct secret in a
    UsernameToken: refused as the wrong method. A signing system without any secret cannot even get there:
    no password is right, so the answer is InvalidCredentials (it tells a guesser nothing about the method)."""
    secret = generate_secret()
    cert = pki.issue_agency_cert(world.pki.ca, "migrated-signed", "system migrated-signed")
    register_system(world, "migrated-signed", [G22], [cert], secret=secret)
    fault = refused_then_valid(
        world,
        raw.envelope(AGENCIES, raw.security_header("migrated-signed", secret)),
        "Client.Auth.MethodNotAllowed",
        wsforge.forge(AGENCIES, cert.key_pem, cert.cert_pem),
    )
    assert "certificate" in fault.message
    refused_then_valid(
        world,
        raw.envelope(AGENCIES, raw.security_header(SIGNER, "x" * 43)),
        "Client.Auth.InvalidCredentials",
        forge(world),
    )


def test_a_username_token_and_a_signature_in_one_request(world):
    attack = forge(world, mutate=[wsforge.add_username_token("vpcp", world.secrets["vpcp"])])
    fault = refused_then_valid(world, attack, "Client.Request.MalformedEnvelope", forge(world))
    assert "not both" in fault.message
    # the UsernameToken alone (vpcp is a UsernameToken system) is fine
    accepted(world, raw.envelope(AGENCIES, raw.security_header("vpcp", world.secrets["vpcp"])))


# --- the parser (refused before authentication) ---------------------------------------------------------------


def _with_dtd(world, dtd: bytes, payload: str, *, secret: str | None = None, pad: int = 0) -> bytes:  # type: ignore[no-untyped-def]
    """A UsernameToken request with ``dtd`` in its prolog (after ``pad`` bytes of comment: past the 4 KiB
    the byte scan looks at). The wrong secret shows the refusal comes before authentication."""
    body = raw.envelope(payload, raw.security_header("vpcp", secret or "wrong-" + world.secrets["vpcp"]))
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    prolog, rest = body[:38], body[38:]
    comment = b"<!--" + b"p" * pad + b"-->" if pad else b""
    return prolog + comment + dtd + rest


XXE = b'<!DOCTYPE soapenv:Envelope [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
LAUGHS = (
    b'<!DOCTYPE soapenv:Envelope [<!ENTITY lol0 "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10) for i in range(1, 10))
    + b"]>"
)
QUADRATIC = b'<!DOCTYPE soapenv:Envelope [<!ENTITY a "' + b"a" * 50_000 + b'">]>'
QUADRATIC_PAYLOAD = filtered("&a;" * 15_000)  # 750 MB once expanded, from a request of about 100 KB


@pytest.mark.parametrize(
    ("dtd", "payload"),
    [(XXE, filtered("&e;")), (LAUGHS, filtered("&lol9;")), (QUADRATIC, QUADRATIC_PAYLOAD)],
    ids=["xxe", "billion-laughs", "quadratic"],
)
def test_dtds_and_entities(world, dtd, payload):
    attack = _with_dtd(world, dtd, payload)
    assert len(attack) < MAX_REQUEST
    reply = refused_then_valid(
        world,
        attack,
        "Client.Request.DtdForbidden",
        _with_dtd(world, b"", filtered("Nghệ"), secret=world.secrets["vpcp"]),
    )
    assert b"root:" not in reply.body


_DTD_PAST_THE_SCAN = (
    "gateway/core/xmlparse.py:93-94 looks for <!DOCTYPE/<!ENTITY in the first 4096 bytes only; a DOCTYPE after "
    "a 4 KiB comment reaches libxml2, which processes the internal subset (expanding entities up to its "
    "amplification limit) and fails; line 105 maps that to Client.Request.NotXml, not DtdForbidden"
)
_LOCAL_FILE_READ = (
    "gateway/core/xmlparse.py:93-94 + _SAFE (lines 40-50): past the 4 KiB byte scan, libxml2 loads an "
    "external parameter entity (<!ENTITY % p SYSTEM 'file:///…'> %p;) from the local disk: an existing file "
    "gives Client.Request.NotXml ('Content error in the internal subset'), a missing one DtdForbidden: an "
    "unauthenticated file-existence oracle (and the gateway reads the file)"
)
_DEV_ZERO = (
    "gateway/core/xmlparse.py:93-94 + _SAFE: past the 4 KiB byte scan, an external parameter entity naming "
    "file:///dev/zero makes libxml2 read it forever at 100% CPU: one ~5 KB unauthenticated request pins a "
    "gateway worker thread for good"
)


@pytest.mark.parametrize(
    ("dtd", "payload"),
    [
        (XXE, filtered("&e;")),
        (LAUGHS, filtered("&lol9;")),
        (QUADRATIC, QUADRATIC_PAYLOAD),
    ],
    ids=["xxe", "billion-laughs", "quadratic"],
)
def test_dtds_after_a_long_comment(world, dtd, payload):
    """The same DTDs after 5,000 bytes of comment in the prolog, past the gateway's byte scan: still a
    DOCTYPE, still Client.Request.DtdForbidden."""
    attack = _with_dtd(world, dtd, payload, pad=5000)
    assert attack.index(b"<!DOCTYPE") > 4096
    reply = refused_then_valid(
        world,
        attack,
        "Client.Request.DtdForbidden",
        _with_dtd(world, b"", filtered("Nghệ"), secret=world.secrets["vpcp"], pad=5000),
    )
    assert b"root:" not in reply.body


def _parameter_entity(target: str) -> bytes:
    return f'<!DOCTYPE soapenv:Envelope [<!ENTITY % p SYSTEM "{target}"> %p;]>'.encode()


def test_a_local_file_named_by_a_parameter_entity_tells_nothing(world, tmp_path):
    """Whether a file exists on the gateway's machine must not show in the answer: a parameter entity naming
    an existing file and one naming a missing file get the same refusal (DtdForbidden), before and after
    the byte scan."""
    existing = tmp_path / "exists.txt"
    existing.write_text("lienthong canary\n")
    before = world.snapshot()
    for pad in (0, 5000):
        answers = []
        for path in (existing, tmp_path / "missing.txt"):
            reply = raw.post(world.url, _with_dtd(world, _parameter_entity(path.as_uri()), AGENCIES, pad=pad))
            answers.append((reply.code, reply.message))
        assert answers[0] == answers[1], f"pad {pad}: {answers}"
        assert answers[0][0] == "Client.Request.DtdForbidden", answers
    assert world.snapshot() == before
    still_serving(world)


def test_a_parameter_entity_naming_dev_zero_is_refused_at_once():
    """Checked on the gateway's parser in a child process (killed after 10 s), not on the shared test
    gateway, where it would pin a worker thread at 100% CPU until the gateway stops."""
    code = (
        "from gateway import errors\n"
        "from gateway.core.xmlparse import REQUEST_TREE, parse_xml\n"
        "import sys\n"
        "try:\n"
        "    parse_xml(sys.stdin.buffer.read(), max_bytes=1 << 20, limits=REQUEST_TREE,\n"
        "              too_large=errors.RequestTooLarge, not_xml=errors.RequestNotXml,\n"
        "              dtd_forbidden=errors.RequestDtdForbidden, what='SOAP request')\n"
        "except errors.LienthongError as exc:\n"
        "    print(exc.code)\n"
    )
    body = raw.envelope(AGENCIES)
    attack = body[:38] + b"<!--" + b"p" * 5000 + b"-->" + _parameter_entity("file:///dev/zero") + body[38:]
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], input=attack, capture_output=True, timeout=10, cwd=ROOT, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the parser was still reading /dev/zero after 10 s")
    assert done.stdout.decode().strip() == "Client.Request.DtdForbidden", done.stderr[-500:]


class _Canary(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []  # noqa: RUF012 - shared on purpose: the test reads it

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        body = b'<!ENTITY % x "y">'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_external_dtds_are_never_fetched(world):
    """An external DTD, an external parameter entity and an external entity pointing at a local HTTP server,
    before and after the byte scan: refused, and the server is never asked. (After the scan the refusal is
    Client.Request.NotXml — libxml2 reports its blocked network load — see test_dtds_after_a_long_comment.)"""
    _Canary.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canary)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        dtd = (
            f'<!DOCTYPE soapenv:Envelope SYSTEM "{url}/ext.dtd" [<!ENTITY % p SYSTEM "{url}/p.dtd"> %p;'
            f'<!ENTITY e SYSTEM "{url}/e.txt">]>'
        ).encode()
        before = world.snapshot()
        for pad in (0, 5000):
            reply = raw.post(world.url, _with_dtd(world, dtd, filtered("&e;"), pad=pad))
            expected = (
                {"Client.Request.DtdForbidden"}
                if pad == 0
                else {"Client.Request.DtdForbidden", "Client.Request.NotXml"}
            )
            assert reply.code in expected, (pad, reply.code, reply.message)
        assert world.snapshot() == before
        time.sleep(0.2)
        assert _Canary.hits == [], "the gateway fetched an external DTD or entity"
    finally:
        server.shutdown()
        server.server_close()
    still_serving(world)


def _nested(world, depth: int, *, in_header: bool = True) -> bytes:  # type: ignore[no-untyped-def]
    nest = "<n>" * depth + "</n>" * depth
    sec = raw.security_header("vpcp", world.secrets["vpcp"])
    if in_header:
        return raw.envelope(AGENCIES, sec + f'<x:extra xmlns:x="urn:test">{nest}</x:extra>')
    return raw.envelope(filtered(nest), sec)


def test_ten_thousand_deep_nesting(world):
    """10,000 nested elements (70 KB): refused by the parser (libxml2's own depth limit of 256, since the
    request is under the gateway's 256 KiB pull-parser threshold) as Client.Request.NotXml."""
    for in_header in (True, False):
        fault = refused_then_valid(
            world, _nested(world, 10_000, in_header=in_header), "Client.Request.NotXml", _nested(world, 3)
        )
        assert "depth" in fault.message


_SMALL_REQUEST_LIMITS = (
    "gateway/core/xmlparse.py:116-118: requests up to SMALL_INPUT (256 KiB) are parsed whole without the "
    "REQUEST_TREE limits (5,000 elements, depth 32); only libxml2's depth limit of 256 applies, so the "
    "request tree limits hold only for requests above 256 KiB"
)


def test_request_tree_limits_hold_for_small_requests_too(world):
    """A 40-deep Header extension (the request limit is 32) and 20,000 empty elements (limit 5,000) in
    requests of a few KB: the same limits as for a 300 KB request."""
    deep = _nested(world, 40)
    sec = raw.security_header("vpcp", world.secrets["vpcp"])
    many = raw.envelope(AGENCIES, sec + '<x:extra xmlns:x="urn:test">' + "<n/>" * 20_000 + "</x:extra>")
    assert len(many) < 256 * 1024
    # above 256 KiB the limit holds (padding text keeps the element count the same)
    big_many = raw.envelope(
        AGENCIES, sec + '<x:extra xmlns:x="urn:test">' + "<n/>" * 20_000 + "p" * 200_000 + "</x:extra>"
    )
    assert 256 * 1024 < len(big_many) < MAX_REQUEST
    refused_raw(world, big_many, "Client.Request.NotXml")
    for body in (deep, many):
        refused_raw(world, body, "Client.Request.NotXml")


# --- size, content type, method ------------------------------------------------------------------------------


def _post_streaming(world, head: bytes, filler: bytes, tail: bytes) -> tuple[int, bytes, dict]:  # type: ignore[no-untyped-def]
    """POST head + filler + tail with its true Content-Length, sending the body in chunks and stopping as
    soon as the gateway answers (it refuses from the header, without reading the body)."""
    total = len(head) + len(filler) + len(tail)
    sock = socket.create_connection(("127.0.0.1", world.gateway.port), timeout=30)
    try:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml; charset=utf-8\r\n"
            + f"Content-Length: {total}\r\nConnection: close\r\n\r\n".encode()
        )
        view = memoryview(b"".join((head, filler, tail)))
        sent = 0
        sock.setblocking(False)
        while sent < total:
            readable, writable, _ = io_select.select([sock], [sock], [], 10)
            if readable:
                break
            if writable:
                try:
                    sent += sock.send(view[sent : sent + 65536])
                except (BlockingIOError, InterruptedError):
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    break
        sock.setblocking(True)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head_part, _, body = data.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return status, body, headers


def test_a_50_mb_attribute(world):
    """A 50 MB attribute value (never expanded in memory twice: the bytes are joined once): refused as
    Client.Request.TooLarge (HTTP 413) from the Content-Length alone, not as MalformedEnvelope."""
    before = world.snapshot()
    head, _, tail = raw.envelope(
        '<tns:getAgenciesList xmlns:a="urn:test" a:big="FILL"/>',
        raw.security_header("vpcp", world.secrets["vpcp"]),
    ).partition(b"FILL")
    status, body, headers = _post_streaming(world, head, b"A" * (50 * 1024 * 1024), tail)
    assert status == 413, body[:300]
    assert b"Client.Request.TooLarge" in body and headers.get("X-Correlation-Id")
    assert f"{MAX_REQUEST:,}".encode() in body
    assert world.snapshot() == before
    still_serving(world)
    accepted(world, forge(world))


def test_a_request_over_the_size_limit(world):
    """A signed request padded (in its Header) to one byte over the request limit (~960 KB for the test
    gateway's 512 KiB packets): Client.Request.TooLarge; padded to exactly the limit: accepted."""
    base = forge(world, filtered("Nghệ"), mutate=[_pad_mark])
    exact = _fill(base, MAX_REQUEST)
    over = _fill(forge(world, filtered("Nghệ"), mutate=[_pad_mark]), MAX_REQUEST + 1)
    assert len(exact) == MAX_REQUEST and len(over) == MAX_REQUEST + 1
    reply = refused_then_valid(world, over, "Client.Request.TooLarge", exact, status=413)
    assert f"{MAX_REQUEST:,}" in reply.message


def _pad_mark(parts: wsforge.Parts) -> None:
    pad = parts.header.makeelement("{urn:test:pad}pad", nsmap={"p": "urn:test:pad"})
    parts.header.append(pad)


def _fill(data: bytes, total: int) -> bytes:
    mark = b'<p:pad xmlns:p="urn:test:pad"/>'
    assert data.count(mark) == 1, data[:2000]
    n = total - len(data) + len(mark) - len(b'<p:pad xmlns:p="urn:test:pad"></p:pad>')
    return data.replace(mark, b'<p:pad xmlns:p="urn:test:pad">' + b"p" * n + b"</p:pad>")


def test_a_wrong_content_type(world):
    body = forge(world)
    for content_type in ("application/soap+xml; charset=utf-8", "application/json", "text/plain"):
        refused_then_valid(
            world, body, "Client.Request.BadContentType", None, status=415, content_type=content_type
        )
    accepted(world, body)  # refused at the door: the signature was never even recorded


def test_get_and_put_where_post_is_required(world):
    body = forge(world)
    for method in ("GET", "PUT"):
        before = world.snapshot()
        resp = requests.request(
            method,
            world.url,
            data=body if method == "PUT" else None,
            headers={"Content-Type": "text/xml"},
            timeout=30,
        )
        reply = raw.parse_reply(resp)
        assert reply.status == 405 and reply.code == "Client.Request.MethodNotAllowed", (
            method,
            reply.body[:300],
        )
        assert reply.correlation_id and resp.headers.get("Allow") == "GET, POST"
        assert world.snapshot() == before
        still_serving(world)
    assert requests.get(world.url + "?wsdl", timeout=30).status_code == 200  # the contract is a GET
    accepted(world, body)


def test_replay_records_are_written_only_for_verified_signatures(world):
    """Bookkeeping: a verified signature leaves one replay record (before the operation, whatever its
    outcome); a request refused at the door or by the signature check leaves none."""
    start = replay_records(world)
    accepted(world, forge(world))
    assert replay_records(world) == start + 1
    raw.post(world.url, forge(world, sign=()))
    raw.post(world.url, forge(world, signature_method=wsforge.T.RSA_SHA1))
    raw.post(world.url, forge(world, mutate=[wsforge.second_body()]))
    assert replay_records(world) == start + 1
    with world.db.unit_of_work() as session:
        latest = session.execute(select(func.max(ReplayRecord.expires_at))).scalar_one()
    assert latest is not None and latest > utcnow()
