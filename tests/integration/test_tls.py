"""HTTPS and mutual TLS with `lienthong serve --tls-cert F --tls-key F [--client-ca F]`: the reference
client checks the server certificate, and client certificates map to connected systems."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway import pki
from gateway.launcher import GatewayProcess
from gateway.store.models import SystemCertificate
from lienthong_client import GatewayFault, GatewayUnreachable, LienthongClient
from tests.support.packets import new_document
from tests.support.world import G22, H41, World


@pytest.fixture(scope="module")
def backend():
    return "sqlite"


@pytest.fixture(scope="module")
def tls_material(tmp_path_factory):
    base = tmp_path_factory.mktemp("tls")
    ca = pki.make_ca("lienthong TEST TLS CA")
    server = pki.issue_tls_cert(ca, "gateway.test", hosts=["127.0.0.1", "localhost"])
    files = {}
    for name, data in {
        "ca.pem": ca.cert_pem,
        "server.pem": server.cert_pem,
        "server.key": server.key_pem,
    }.items():
        (base / name).write_bytes(data)
        files[name] = base / name
    for system in ("vpcp", "stranger"):
        issued = pki.issue_tls_cert(ca, f"system {system}", client=True)
        (base / f"{system}.pem").write_bytes(issued.cert_pem)
        (base / f"{system}.key").write_bytes(issued.key_pem)
        files[system] = issued
    return base, files


def _world(tmp_path, tls_material, *, mutual: bool) -> World:
    base, files = tls_material
    world = World(tmp_path, f"sqlite:///{tmp_path / 'lienthong.db'}").setup()
    world.gateway = GatewayProcess(
        world.data_dir,
        database_url=world.database_url,
        env={"LIENTHONG_TRUST_ANCHORS": str(world.trust_file)},
        tls=(files["server.pem"], files["server.key"]),
        client_ca=files["ca.pem"] if mutual else None,
        ca_file=files["ca.pem"],
    )
    if mutual:
        world.gateway.client_cert = (base / "vpcp.pem", base / "vpcp.key")
        vpcp_cert = files["vpcp"].cert
        with world.db.unit_of_work(write=True) as session:
            session.add(SystemCertificate.of("vpcp", vpcp_cert, dt.datetime.now(dt.timezone.utc)))
            session.commit()
    return world.start()


def test_https_with_a_checked_server_certificate(tmp_path, tls_material):
    _base, files = tls_material
    world = _world(tmp_path, tls_material, mutual=False)
    try:
        assert world.url.startswith("https://")
        client = LienthongClient(
            world.url,
            "vpcp",
            world.secrets["vpcp"],
            verify=str(files["ca.pem"]),
            gateway_cert=world.gateway_cert,
            signer=world.pki.signer(G22),
        )
        assert client.send(new_document(G22, [H41])).docId
        # a client that trusts only the public CAs refuses this test certificate
        with pytest.raises(GatewayUnreachable):
            LienthongClient(world.url, "vpcp", world.secrets["vpcp"], verify=True)
    finally:
        world.stop()


def test_mutual_tls_maps_client_certificates_to_systems(tmp_path, tls_material):
    base, files = tls_material
    world = _world(tmp_path, tls_material, mutual=True)
    try:
        ca = str(files["ca.pem"])
        # no client certificate: the TLS handshake itself fails
        with pytest.raises(GatewayUnreachable):
            LienthongClient(world.url, "vpcp", world.secrets["vpcp"], verify=ca)
        # the registered client certificate alone identifies system vpcp (no secret, no signature)
        tls_only = LienthongClient(
            world.url,
            "vpcp",
            None,
            verify=ca,
            client_cert=(str(base / "vpcp.pem"), str(base / "vpcp.key")),
            gateway_cert=world.gateway_cert,
            signer=world.pki.signer(G22),
        )
        assert tls_only.send(new_document(G22, [H41])).recipients == [H41]
        # a certificate from the same CA that no system registered
        stranger = LienthongClient(
            world.url,
            "nghean",
            world.secrets["nghean"],
            verify=ca,
            client_cert=(str(base / "stranger.pem"), str(base / "stranger.key")),
        )
        with pytest.raises(GatewayFault) as caught:
            stranger.agencies()
        assert caught.value.code == "Client.Auth.UnknownCertificate"
        # a UsernameToken of one system over the TLS certificate of another
        mixed = LienthongClient(
            world.url,
            "nghean",
            world.secrets["nghean"],
            verify=ca,
            client_cert=(str(base / "vpcp.pem"), str(base / "vpcp.key")),
        )
        with pytest.raises(GatewayFault) as caught:
            mixed.agencies()
        assert caught.value.code == "Client.Auth.CertificateMismatch"
    finally:
        world.stop()
