"""Our seals and the ``xmlsec1`` command line (libxmlsec1's own tool, independent of python-xmlsec's
bindings and of our policy code) agree both ways:

- a packet sealed by our client verifies with ``xmlsec1 --verify`` against the CA, RSA and ECDSA alike;
- a one-character change makes both xmlsec1 and our ``verify_seal`` refuse it;
- a packet signed by ``xmlsec1 --sign`` from a hand-written template is accepted by the real gateway, and
  refused (by both) once changed;
- a packet stored by the gateway and fetched back verifies with the command an auditor would run.

xmlsec1 is installed by ``.ci/run`` (Debian package ``xmlsec1``); without it these tests skip, except in
CI, where they fail.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway import errors, pki
from gateway.core.seal import SealPolicy, verify_seal
from gateway.core.trust import TrustStore
from gateway.core.xmlparse import parse_xml
from gateway.store.models import Packet
from lienthong_client.seals import Signer
from tests.support import forge
from tests.support.packets import new_document
from tests.support.refusals import refused
from tests.support.world import AGENCIES, G22, H41

pytestmark = pytest.mark.interop

TIMEOUT = 30
#: what every verification below passes: only a Reference to the whole document (URI=""), and the key only
#: from the X.509 certificate in KeyInfo (never from a bare KeyValue), checked against the CA
VERIFY_OPTIONS = ("--enabled-reference-uris", "empty", "--enabled-key-data", "x509")

#: the seal of section 4 of the standard, written by hand: filled in by ``xmlsec1 --sign``
TEMPLATE = b"""<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
<ds:SignedInfo>
<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
<ds:Reference URI="">
<ds:Transforms>
<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
</ds:Transforms>
<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
<ds:DigestValue></ds:DigestValue>
</ds:Reference>
</ds:SignedInfo>
<ds:SignatureValue></ds:SignatureValue>
<ds:KeyInfo><ds:X509Data><ds:X509Certificate></ds:X509Certificate></ds:X509Data></ds:KeyInfo>
</ds:Signature>
"""


@pytest.fixture(scope="module")
def backend() -> str:
    # What is under test is the seal format, not the database: one backend is enough.
    return "sqlite"


@pytest.fixture(scope="module", autouse=True)
def xmlsec1() -> str:
    """The xmlsec1 binary; autouse so that a missing tool skips (or, in CI, fails) before a gateway starts."""
    path = shutil.which("xmlsec1")
    if path is None:
        reason = "the xmlsec1 command line is not installed (apt-get install -y xmlsec1)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the xmlsec1 interop tests: {reason}")
        pytest.skip(reason)
    return path


def run(xmlsec1: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [xmlsec1, *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def verdict(result: subprocess.CompletedProcess[str]) -> str | None:
    """xmlsec1's verdict line (it writes it to stderr): OK, FAIL (a Reference or the signature value does not
    verify) or ERROR (no key could be trusted, the file could not be processed)."""
    for line in result.stderr.splitlines():
        if line.strip() in {"OK", "FAIL", "ERROR"}:
            return line.strip()
    return None


def xmlsec1_verify(xmlsec1: str, ca_pem: Path, packet: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(xmlsec1, "--verify", *VERIFY_OPTIONS, "--trusted-pem", ca_pem, *extra, packet)


def our_verify(packet: bytes, ca_pem: bytes):  # type: ignore[no-untyped-def]
    return verify_seal(
        parse_xml(packet, max_bytes=len(packet) + 1),
        policy=SealPolicy(),
        trust=TrustStore.from_pem(ca_pem),
        at=dt.datetime.now(dt.timezone.utc),
    )


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[pki.Issued, Path]:
    ca = pki.make_ca()
    path = tmp_path_factory.mktemp("xmlsec1-ca") / "ca.pem"
    path.write_bytes(ca.cert_pem)
    return ca, path


# --- 1 and 2: our seal, checked by xmlsec1 -----------------------------------------------------------------


@pytest.mark.parametrize("key_type, method", [("rsa", "rsa-sha256"), ("ec", "ecdsa-sha256")])
def test_our_seal_verifies_with_xmlsec1(xmlsec1, test_ca, tmp_path, key_type, method):
    ca, ca_pem = test_ca
    issued = pki.issue_agency_cert(ca, G22, AGENCIES[G22][0], key_type=key_type)
    packet = new_document(G22, [H41], attachments=[("a.txt", "text/plain", b"attachment")])
    sealed = Signer(key_pem=issued.key_pem, cert_pem=issued.cert_pem).sign(packet)
    assert method.encode() in sealed
    path = tmp_path / "sealed.edxml"
    path.write_bytes(sealed)
    result = xmlsec1_verify(xmlsec1, ca_pem, path)
    assert result.returncode == 0 and verdict(result) == "OK", result.stderr
    # xmlsec1 does check the chain: against another CA it refuses the same file
    other = tmp_path / "other-ca.pem"
    other.write_bytes(pki.make_ca().cert_pem)
    assert xmlsec1_verify(xmlsec1, other, path).returncode != 0


@pytest.mark.parametrize("key_type", ["rsa", "ec"])
def test_one_character_changed(xmlsec1, test_ca, tmp_path, key_type):
    ca, ca_pem = test_ca
    issued = pki.issue_agency_cert(ca, G22, AGENCIES[G22][0], key_type=key_type)
    sealed = Signer(key_pem=issued.key_pem, cert_pem=issued.cert_pem).sign(new_document(G22, [H41]))
    our_verify(sealed, ca.cert_pem)  # the untouched packet verifies
    changed = forge.tamper(sealed, "thử nghiệm", "thử nghiện")  # one character of the Subject
    path = tmp_path / "changed.edxml"
    path.write_bytes(changed)
    result = xmlsec1_verify(xmlsec1, ca_pem, path)
    assert result.returncode != 0 and verdict(result) == "FAIL", result.stderr
    assert "data and digest do not match" in result.stderr
    with pytest.raises(errors.SealDigestMismatch):
        our_verify(changed, ca.cert_pem)


# --- 3: a seal made by xmlsec1, through the real gateway --------------------------------------------------


def xmlsec1_sign(xmlsec1: str, tmp_path: Path, packet: bytes, key_pem: bytes, cert_pem: bytes) -> bytes:
    assert packet.count(b"</edXMLHeader>") == 1
    template = tmp_path / "template.edxml"
    template.write_bytes(packet.replace(b"</edXMLHeader>", TEMPLATE + b"</edXMLHeader>"))
    key, cert, out = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "out.edxml"
    key.write_bytes(key_pem)
    cert.write_bytes(cert_pem)
    result = run(xmlsec1, "--sign", "--privkey-pem", f"{key},{cert}", "--output", out, template)
    assert result.returncode == 0, result.stderr
    return out.read_bytes()


def test_xmlsec1_seal_accepted_by_the_gateway(world, xmlsec1, tmp_path):
    seal = world.pki.seals[G22]
    ca_pem = tmp_path / "ca.pem"
    ca_pem.write_bytes(world.pki.ca.cert_pem)
    signed = xmlsec1_sign(xmlsec1, tmp_path, new_document(G22, [H41]), seal.key_pem, seal.cert_pem)
    assert b"<ds:DigestValue></ds:DigestValue>" not in signed and b"<ds:X509Certificate>MII" in signed

    changed = forge.tamper(signed, "thử nghiệm", "thử nghiện")
    changed_path = tmp_path / "changed.edxml"
    changed_path.write_bytes(changed)
    assert xmlsec1_verify(xmlsec1, ca_pem, changed_path).returncode != 0
    refused(world, lambda: world.client("vpcp").send(changed, sign=False), "Client.Seal.DigestMismatch")

    sent = world.client("vpcp").send(signed, sign=False)
    assert list(sent.recipients) == [H41]
    with world.db.unit_of_work() as session:
        row = session.execute(select(Packet).where(Packet.doc_id == sent.docId)).scalar_one()
        assert row.content == signed  # stored byte for byte, as xmlsec1 wrote it
        assert row.signature_algorithm == "rsa-sha256" and row.signer_serial == format(
            seal.cert.serial_number, "x"
        )


# --- 4: what an auditor runs on a stored packet -----------------------------------------------------------


def test_auditor_verifies_a_stored_packet(world, xmlsec1, tmp_path):
    """An auditor checks a packet fetched from the gateway with the test CA's certificate (in production:
    the government CA's), at the time the gateway recorded as the seal's verification time (so that a
    certificate that expired since still verifies as it did on receipt)::

        xmlsec1 --verify --enabled-reference-uris empty --enabled-key-data x509 \\
                --trusted-pem ca.pem --verification-gmt-time "2025-06-30 08:15:00" packet.edxml

    ``--enabled-reference-uris empty`` accepts only a Reference to the whole document (``URI=""``);
    ``--enabled-key-data x509`` takes the key only from the certificate in KeyInfo, which must chain to
    ``ca.pem``; ``--verification-gmt-time`` is the packet's ``seal_verified_at`` in UTC. Exit code 0 and
    ``OK`` mean the packet is, byte for byte, what the agency sealed.
    """
    sealed = world.seal(new_document(G22, [H41]), G22)
    sent = world.client("vpcp").send(sealed, sign=False)
    fetched = world.client("nghean").fetch(sent.docId)
    assert fetched.content == sealed

    with world.db.unit_of_work() as session:
        verified_at = session.execute(
            select(Packet.seal_verified_at).where(Packet.doc_id == sent.docId)
        ).scalar_one()
    at = f"{verified_at.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S}"

    ca_pem, packet = tmp_path / "ca.pem", tmp_path / "packet.edxml"
    ca_pem.write_bytes(world.pki.ca.cert_pem)
    packet.write_bytes(fetched.content)
    result = xmlsec1_verify(xmlsec1, ca_pem, packet, "--verification-gmt-time", at)
    assert result.returncode == 0 and verdict(result) == "OK", result.stderr

    # the time matters: long after the seal's certificate expired, the same file no longer verifies
    late = f"{seal_expiry(world) + dt.timedelta(days=1):%Y-%m-%d %H:%M:%S}"
    assert xmlsec1_verify(xmlsec1, ca_pem, packet, "--verification-gmt-time", late).returncode != 0
    # and one changed byte is caught
    packet.write_bytes(forge.tamper(fetched.content, "thử nghiệm", "thử nghiện"))
    assert xmlsec1_verify(xmlsec1, ca_pem, packet, "--verification-gmt-time", at).returncode != 0
    changed = packet.read_bytes()  # nor would the gateway have taken it
    refused(world, lambda: world.client("vpcp").send(changed, sign=False), "Client.Seal.DigestMismatch")


def seal_expiry(world) -> dt.datetime:  # type: ignore[no-untyped-def]
    return world.pki.seals[G22].cert.not_valid_after_utc
