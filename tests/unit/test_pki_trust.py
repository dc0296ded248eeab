"""gateway.pki (test CA material) and gateway.core.trust (is a seal's certificate trusted?), with real keys."""

from __future__ import annotations

import datetime as dt
import hashlib
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway import errors, pki
from gateway.core import trust

UTC = dt.timezone.utc
NOW = dt.datetime(2025, 6, 1, 9, 30, tzinfo=UTC)
LATER = NOW + dt.timedelta(days=3)  # the time of receipt in most tests
CODE = "000.00.00.G01"
NAME = "Bộ Tư pháp (TEST)"


# --- module-scoped material: RSA keys are generated once --------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> pki.Issued:
    return pki.make_ca(now=NOW)


@pytest.fixture(scope="module")
def other_ca() -> pki.Issued:
    return pki.make_ca("Some Other CA", now=NOW)


@pytest.fixture(scope="module")
def impostor_ca() -> pki.Issued:
    """Same name as the test CA, different key."""
    return pki.make_ca(now=NOW, key_type="ec")


@pytest.fixture(scope="module")
def intermediate(ca) -> pki.Issued:
    return pki.make_ca("lienthong TEST Intermediate CA", parent=ca, now=NOW, days=365, key_type="ec")


@pytest.fixture(scope="module")
def rsa_leaf(ca) -> pki.Issued:
    return pki.issue_agency_cert(ca, CODE, NAME, now=NOW)


@pytest.fixture(scope="module")
def ec_leaf(ca) -> pki.Issued:
    return pki.issue_agency_cert(ca, "000.00.00.H02", "Tỉnh B", key_type="ec", now=NOW)


@pytest.fixture(scope="module")
def store(ca) -> trust.TrustStore:
    return trust.TrustStore.from_pem(ca.cert_pem)


def ec_leaf_of(issuer: pki.Issued, code: str = "000.00.00.K03", **kw) -> pki.Issued:
    return pki.issue_agency_cert(issuer, code, f"Agency {code}", key_type="ec", **{"now": NOW, **kw})


# --- chains that are trusted ------------------------------------------------------------------------------


def test_rsa_agency_certificate_chains_to_the_ca(store, ca, rsa_leaf):
    assert isinstance(rsa_leaf.key, rsa.RSAPrivateKey)
    assert rsa_leaf.key.key_size == 2048
    assert trust.check_certificate(store, rsa_leaf.cert, [], LATER) == (rsa_leaf.cert, ca.cert)


def test_ec_agency_certificate_chains_to_the_ca(store, ca, ec_leaf):
    assert isinstance(ec_leaf.key, ec.EllipticCurvePrivateKey)
    assert ec_leaf.key.curve.name == "secp256r1"
    assert trust.check_certificate(store, ec_leaf.cert, [], LATER) == (ec_leaf.cert, ca.cert)


def test_chain_through_an_intermediate_ca(store, ca, intermediate):
    leaf = ec_leaf_of(intermediate)
    chain = trust.check_certificate(store, leaf.cert, [intermediate.cert], LATER)
    assert chain == (leaf.cert, intermediate.cert, ca.cert)
    # the anchor sent along with the seal changes nothing
    assert trust.check_certificate(store, leaf.cert, [ca.cert, intermediate.cert], LATER) == chain


def test_missing_intermediate_names_the_issuer_not_trusted(store, intermediate):
    leaf = ec_leaf_of(intermediate)
    with pytest.raises(errors.CertificateUntrusted) as caught:
        trust.check_certificate(store, leaf.cert, [], LATER)
    assert "lienthong TEST Intermediate CA" in caught.value.message
    assert caught.value.fields["issuer"] == intermediate.cert.subject.rfc4514_string()


def test_the_timezone_of_the_time_of_receipt_does_not_matter(store, rsa_leaf):
    hanoi = dt.timezone(dt.timedelta(hours=7))
    assert trust.check_certificate(store, rsa_leaf.cert, [], LATER.astimezone(hanoi))[0] == rsa_leaf.cert


def test_naive_time_is_a_programming_error(store, rsa_leaf):
    with pytest.raises(ValueError, match="timezone-aware"):
        trust.check_certificate(store, rsa_leaf.cert, [], LATER.replace(tzinfo=None))


# --- validity at the time of receipt ----------------------------------------------------------------------


def test_expired_certificate(store, ca):
    leaf = ec_leaf_of(ca, not_before=NOW - dt.timedelta(days=30), not_after=NOW + dt.timedelta(days=1))
    assert trust.check_certificate(store, leaf.cert, [], NOW)  # valid the day before it expires
    with pytest.raises(errors.CertificateExpired) as caught:
        trust.check_certificate(store, leaf.cert, [], NOW + dt.timedelta(days=2))
    assert caught.value.code == "Client.Seal.CertificateExpired"
    assert "Agency 000.00.00.K03" in caught.value.message
    assert "expired on 2025-06-02" in caught.value.message
    assert caught.value.fields["subject"] == trust.subject_text(leaf.cert)
    assert caught.value.fields["serial"] == format(leaf.cert.serial_number, "x")


def test_certificate_not_yet_valid(store, ca):
    leaf = ec_leaf_of(ca, not_before=NOW + dt.timedelta(days=10), not_after=NOW + dt.timedelta(days=100))
    with pytest.raises(errors.CertificateNotYetValid) as caught:
        trust.check_certificate(store, leaf.cert, [], LATER)
    assert "becomes valid on 2025-06-11" in caught.value.message
    assert trust.check_certificate(store, leaf.cert, [], NOW + dt.timedelta(days=11))


def test_expired_intermediate_is_named(store, ca):
    old = pki.make_ca(
        "Retired Intermediate CA", parent=ca, now=NOW - dt.timedelta(days=400), days=30, key_type="ec"
    )
    leaf = ec_leaf_of(old, not_before=NOW - dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=30))
    with pytest.raises(errors.CertificateExpired) as caught:
        trust.check_certificate(store, leaf.cert, [old.cert], LATER)
    assert "intermediate certificate authority" in caught.value.message
    assert caught.value.fields["subject"] == trust.subject_text(old.cert)
    assert caught.value.fields["leaf"] == trust.subject_text(leaf.cert)


def test_anchor_out_of_validity_is_named(ca):
    # the CA of this module becomes valid five minutes before NOW
    store = trust.TrustStore((ca.cert,))
    leaf = ec_leaf_of(ca, not_before=NOW - dt.timedelta(days=1))
    with pytest.raises(errors.CertificateNotYetValid) as caught:
        trust.check_certificate(store, leaf.cert, [], NOW - dt.timedelta(hours=1))
    assert caught.value.fields["subject"] == trust.subject_text(ca.cert)
    assert "trust anchor" in caught.value.message


# --- self-signed, untrusted, not a CA ---------------------------------------------------------------------


def test_self_signed_certificate(store):
    own = pki.make_self_signed(CODE, NAME, key_type="ec", now=NOW)
    assert own.cert.issuer == own.cert.subject
    with pytest.raises(errors.CertificateSelfSigned) as caught:
        trust.check_certificate(store, own.cert, [], LATER)
    assert caught.value.code == "Client.Seal.SelfSigned"
    assert NAME in caught.value.message
    assert caught.value.fields["anchor"] is False


def test_self_signed_certificate_that_is_an_anchor_is_still_refused():
    own = pki.make_self_signed(CODE, NAME, key_type="ec", now=NOW)
    with pytest.raises(errors.CertificateSelfSigned) as caught:
        trust.check_certificate(trust.TrustStore((own.cert,)), own.cert, [], LATER)
    assert caught.value.fields["anchor"] is True
    assert "trust anchor" in caught.value.message


def test_validity_is_diagnosed_before_self_signature(store):
    own = pki.make_self_signed(CODE, NAME, key_type="ec", now=NOW)
    with pytest.raises(errors.CertificateExpired):
        trust.check_certificate(store, own.cert, [], NOW + dt.timedelta(days=1000))


def test_certificate_from_another_ca_is_untrusted(store, other_ca):
    leaf = ec_leaf_of(other_ca)
    with pytest.raises(errors.CertificateUntrusted) as caught:
        trust.check_certificate(store, leaf.cert, [], LATER)
    assert caught.value.code == "Client.Seal.UntrustedCertificate"
    assert "Some Other CA" in caught.value.message
    assert "not a trusted certificate authority" in caught.value.message
    # sending the other CA along does not make it an anchor
    with pytest.raises(errors.CertificateUntrusted, match="not one of the configured trust anchors"):
        trust.check_certificate(store, leaf.cert, [other_ca.cert], LATER)


def test_same_issuer_name_with_another_key_is_untrusted(store, ca, impostor_ca):
    assert impostor_ca.cert.subject == ca.cert.subject
    leaf = ec_leaf_of(impostor_ca)
    with pytest.raises(errors.CertificateUntrusted, match="its key did not sign"):
        trust.check_certificate(store, leaf.cert, [], LATER)
    with pytest.raises(errors.CertificateUntrusted, match="same name, but it is a different certificate"):
        trust.check_certificate(store, leaf.cert, [impostor_ca.cert], LATER)


def test_issuer_that_is_not_a_ca_is_untrusted(store, ca):
    not_a_ca = ec_leaf_of(ca, code="000.00.00.X09")  # an agency certificate: basicConstraints CA=false
    leaf = ec_leaf_of(not_a_ca)
    assert leaf.cert.verify_directly_issued_by(not_a_ca.cert) is None  # the signature itself is fine
    with pytest.raises(errors.CertificateUntrusted) as caught:
        trust.check_certificate(store, leaf.cert, [not_a_ca.cert], LATER)
    assert "CA=false" in caught.value.message
    assert caught.value.fields["issuer"] == trust.subject_text(not_a_ca.cert)


def test_a_ca_certificate_is_not_a_signing_certificate(store, ca, intermediate):
    # keyUsage keyCertSign + cRLSign only: a CA key must not seal packets
    with pytest.raises(errors.CertificateUntrusted, match="not a signing certificate"):
        trust.check_certificate(store, intermediate.cert, [], LATER)


def test_unknown_critical_extension_is_refused_by_the_library_path_validation(store, ca):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "critical stranger")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00"), critical=True
        )
        .sign(ca.key, hashes.SHA256())
    )
    with pytest.raises(errors.CertificateUntrusted, match="unaccounted-for critical extensions"):
        trust.check_certificate(store, cert, [], LATER)


def test_chain_length_limit(ca):
    store = trust.TrustStore((ca.cert,))
    cas = []
    parent = ca
    for depth in range(4):
        parent = pki.make_ca(f"Level {depth + 1} CA", parent=parent, now=NOW, key_type="ec")
        cas.append(parent)
    five = ec_leaf_of(cas[2])  # leaf, three intermediates, anchor
    assert (
        len(trust.check_certificate(store, five.cert, [c.cert for c in cas[:3]], LATER))
        == trust.MAX_CHAIN_LENGTH
        == 5
    )
    six = ec_leaf_of(cas[3])
    with pytest.raises(errors.CertificateUntrusted, match="within 5 certificates"):
        trust.check_certificate(store, six.cert, [c.cert for c in cas], LATER)


def test_no_anchor_configured(rsa_leaf):
    with pytest.raises(errors.CertificateUntrusted, match="no trust anchor is configured"):
        trust.check_certificate(trust.TrustStore(()), rsa_leaf.cert, [], LATER)


# --- revocation -------------------------------------------------------------------------------------------


def test_revoked_certificate(ca):
    leaf = ec_leaf_of(ca)
    when = NOW + dt.timedelta(days=1, hours=2)
    crl = pki.make_crl(ca, [(leaf.cert.serial_number, when)], now=NOW + dt.timedelta(days=2))
    store = trust.TrustStore.from_pem(ca.cert_pem, [crl])
    with pytest.raises(errors.CertificateRevoked) as caught:
        trust.check_certificate(store, leaf.cert, [], LATER)
    assert caught.value.code == "Client.Seal.CertificateRevoked"
    assert "revoked on 2025-06-02 11:30:00 UTC" in caught.value.message
    assert caught.value.fields["serial"] == format(leaf.cert.serial_number, "x")
    assert caught.value.fields["revoked_at"] == when.isoformat()
    # the same CRL in DER revokes too
    der = x509.load_pem_x509_crl(crl).public_bytes(serialization.Encoding.DER)
    with pytest.raises(errors.CertificateRevoked):
        trust.check_certificate(trust.TrustStore.from_pem(ca.cert_pem, [der]), leaf.cert, [], LATER)


def test_crl_that_does_not_list_the_serial_revokes_nothing(ca, rsa_leaf):
    crl = pki.make_crl(ca, [(rsa_leaf.cert.serial_number + 1, NOW)], now=NOW)
    store = trust.TrustStore.from_pem(ca.cert_pem, [crl])
    assert trust.check_certificate(store, rsa_leaf.cert, [], LATER)[0] == rsa_leaf.cert


def test_crl_signed_by_another_ca_does_not_revoke(ca, other_ca, impostor_ca, rsa_leaf):
    serial = rsa_leaf.cert.serial_number
    foreign = pki.make_crl(other_ca, [(serial, NOW)], now=NOW)
    # same issuer name as the test CA, but not signed with its key
    forged = pki.make_crl(impostor_ca, [(serial, NOW)], now=NOW)
    assert x509.load_pem_x509_crl(forged).issuer == ca.cert.subject
    store = trust.TrustStore.from_pem(ca.cert_pem, [foreign, forged])
    assert len(store.crls) == 2
    assert trust.check_certificate(store, rsa_leaf.cert, [], LATER) == (rsa_leaf.cert, ca.cert)


def test_revoked_intermediate(ca, intermediate):
    leaf = ec_leaf_of(intermediate)
    crl = pki.make_crl(ca, [(intermediate.cert.serial_number, NOW)], now=NOW)
    store = trust.TrustStore.from_pem(ca.cert_pem, [crl])
    with pytest.raises(errors.CertificateRevoked) as caught:
        trust.check_certificate(store, leaf.cert, [intermediate.cert], LATER)
    assert caught.value.fields["subject"] == trust.subject_text(intermediate.cert)
    assert "intermediate certificate authority" in caught.value.message


# --- the trust store --------------------------------------------------------------------------------------


def test_trust_store_from_a_pem_bundle(ca, other_ca, rsa_leaf):
    store = trust.TrustStore.from_pem(ca.cert_pem + b"\n" + other_ca.cert_pem)
    assert store.anchors == (ca.cert, other_ca.cert)
    assert trust.check_certificate(store, ec_leaf_of(other_ca).cert, [], LATER)[-1] == other_ca.cert


def test_trust_store_refuses_bad_material(ca, rsa_leaf):
    with pytest.raises(ValueError, match=r"not a bundle of PEM certificates.*revocation list #1"):
        trust.TrustStore.from_pem(b"not a certificate", [b"not a crl"])
    with pytest.raises(ValueError, match="not a certificate authority"):
        trust.TrustStore.from_pem(rsa_leaf.cert_pem)


def test_trust_store_of_crls_only(ca):
    # `lienthong crl add` reads a CRL file this way; two PEM CRLs in one file are both loaded
    first = pki.make_crl(ca, [(1, NOW)], now=NOW)
    second = pki.make_crl(ca, [(2, NOW), (3, NOW)], now=NOW)
    store = trust.TrustStore.from_pem(b"", [first + second])
    assert store.anchors == ()
    assert [len(list(crl)) for crl in store.crls] == [1, 2]


# --- subject attributes and fingerprints ------------------------------------------------------------------


def test_subject_attribute_by_short_name_and_oid(rsa_leaf):
    cert = rsa_leaf.cert
    assert trust.subject_attribute(cert, "UID") == [CODE]
    assert trust.subject_attribute(cert, "0.9.2342.19200300.100.1.1") == [CODE]
    assert trust.subject_attribute(cert, "uid") == [CODE]
    assert trust.subject_attribute(cert, "CN") == [NAME]
    assert trust.subject_attribute(cert, "OU") == ["TEST — NOT FOR PRODUCTION"]
    assert trust.subject_attribute(cert, "serialNumber") == []
    with pytest.raises(ValueError, match="unknown subject attribute"):
        trust.subject_attribute(cert, "favouriteColour")


def test_subject_text_is_rfc4514(rsa_leaf):
    text = trust.subject_text(rsa_leaf.cert)
    assert f"UID={CODE}" in text and "C=VN" in text
    assert x509.Name.from_rfc4514_string(text) == rsa_leaf.cert.subject


def test_fingerprints_are_stable(rsa_leaf, ec_leaf):
    fp = trust.fingerprint_sha256(rsa_leaf.cert)
    der = rsa_leaf.cert.public_bytes(serialization.Encoding.DER)
    assert fp == hashlib.sha256(der).hexdigest() == rsa_leaf.cert.fingerprint(hashes.SHA256()).hex()
    assert fp == trust.fingerprint_sha256(x509.load_pem_x509_certificate(rsa_leaf.cert_pem))
    assert len(fp) == 64 and fp == fp.lower()
    assert fp != trust.fingerprint_sha256(ec_leaf.cert)


# --- the test material itself -----------------------------------------------------------------------------


def test_agency_certificate_profile(ca, rsa_leaf):
    cert = rsa_leaf.cert
    assert cert.signature_hash_algorithm.name == "sha256"
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.content_commitment
    assert not ku.value.key_cert_sign
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert not eku.critical
    assert set(eku.value) == {
        ExtendedKeyUsageOID.EMAIL_PROTECTION,
        x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.12"),
    }
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert trust.subject_attribute(cert, "O") == [NAME] and trust.subject_attribute(cert, "C") == ["VN"]
    assert trust.subject_attribute(ca.cert, "CN") == ["lienthong TEST CA — NOT FOR PRODUCTION"]
    assert trust.subject_attribute(ca.cert, "O") == ["lienthong test material"]


def test_given_serial_is_used(ca):
    assert ec_leaf_of(ca, serial=4242).cert.serial_number == 4242


def test_pkcs12_carries_key_certificate_and_ca(ca, ec_leaf):
    blob = ec_leaf.pkcs12(b"s3cret", ca)
    key, cert, extra = pkcs12.load_key_and_certificates(blob, b"s3cret")
    assert cert == ec_leaf.cert and extra == [ca.cert]
    assert key.private_numbers() == ec_leaf.key.private_numbers()
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(blob, b"wrong")


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_test_pki(tmp_path):
    out = tmp_path / "pki"
    paths = pki.write_test_pki(out, [(CODE, NAME), ("000.00.00.H02", "Tỉnh B")], key_type="ec")
    expected = {"ca", "ca_key", "crl", "readme"}
    for code in (CODE, "000.00.00.H02"):
        expected |= {f"{code}.cert", f"{code}.key", f"{code}.p12", f"{code}.p12.password"}
    assert set(paths) == expected
    assert paths["ca"] == out / "ca.pem" and paths[f"{CODE}.cert"] == out / f"{CODE}.pem"
    assert all(p.is_file() for p in paths.values())
    for name in ("ca_key", f"{CODE}.key", f"{CODE}.p12.password"):
        assert _mode(paths[name]) == 0o600, name
    readme = (out / "README-TEST-MATERIAL.txt").read_text(encoding="utf-8")
    assert "TEST" in readme and "NEVER USE IT IN PRODUCTION" in readme

    ca_cert = x509.load_pem_x509_certificate(paths["ca"].read_bytes())
    leaf = x509.load_pem_x509_certificate(paths[f"{CODE}.cert"].read_bytes())
    store = trust.TrustStore.from_pem(paths["ca"].read_bytes(), [paths["crl"].read_bytes()])
    assert store.crls[0].issuer == ca_cert.subject and len(list(store.crls[0])) == 0
    now = dt.datetime.now(UTC)
    assert trust.check_certificate(store, leaf, [], now) == (leaf, ca_cert)
    key = serialization.load_pem_private_key(paths[f"{CODE}.key"].read_bytes(), None)
    assert key.public_key().public_numbers() == leaf.public_key().public_numbers()

    password = paths[f"{CODE}.p12.password"].read_bytes()
    assert len(password) >= 16
    p12_key, p12_cert, p12_extra = pkcs12.load_key_and_certificates(
        paths[f"{CODE}.p12"].read_bytes(), password
    )
    assert p12_cert == leaf and p12_extra == [ca_cert]
    assert p12_key.private_numbers() == key.private_numbers()
    other = paths["000.00.00.H02.p12.password"].read_bytes()
    assert other != password  # one random password per file


def test_write_test_pki_with_a_given_password_resets_key_modes(tmp_path):
    (tmp_path / "ca.key").write_bytes(b"old")
    (tmp_path / "ca.key").chmod(0o644)
    paths = pki.write_test_pki(tmp_path, [(CODE, NAME)], key_type="ec", p12_password=b"given")
    assert _mode(paths["ca_key"]) == 0o600
    assert paths[f"{CODE}.p12.password"].read_bytes() == b"given"
    assert pkcs12.load_key_and_certificates(paths[f"{CODE}.p12"].read_bytes(), b"given")[1] is not None


def test_write_test_pki_refuses_codes_that_are_not_file_names(tmp_path):
    with pytest.raises(ValueError, match="file name"):
        pki.write_test_pki(tmp_path, [("../escape", "x")], key_type="ec")
    assert list(tmp_path.iterdir()) == []
