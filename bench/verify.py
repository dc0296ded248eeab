"""The cost of the gateway's seal verification per packet (``verify``) and of its WS-Security verification
of a signed request (``wss-verify``), each against a bare xmlsec verify of the same bytes, measured in the
same process and the same run (no HTTP, no database).

``verify`` (the packet's seal):

- gateway: ``gateway.core.xmlparse.parse_xml`` + ``gateway.core.seal.verify_seal`` with a
  :class:`~gateway.core.seal.KeyCache` and a :class:`~gateway.core.trust.TrustStore`, as the gateway
  holds them (both live for the process, so the certificate's key and chain are read once);
- bare: ``lxml.etree.fromstring`` + find the ``ds:Signature`` + ``xmlsec.Key.from_memory`` of the
  certificate in KeyInfo + ``SignatureContext.verify`` (the target's reference);
- bare, key cached (for information): the same with the key read once, the least any verifier can do.

``wss-verify`` (a signed ``sendEdoc`` request, what ``send-x509`` posts):

- gateway: what the guard does with the request's bytes before spyne sees them, for the signature:
  ``parse_xml(..., limits=REQUEST_TREE)`` + ``gateway.core.wssec.verify_envelope`` (shape and wrapping
  checks, the key from a :class:`~gateway.core.seal.KeyCache` held for the process, xmlsec with its
  transform allowlists, the Timestamp);
- bare: ``lxml.etree.fromstring`` + register the ``wsu:Id`` of the Body and the Timestamp
  (``ctx.register_id(node, "Id", WSU)``) + ``xmlsec.Key.from_memory(<the BinarySecurityToken's
  certificate>)`` + ``SignatureContext.verify`` (the target's reference);
- bare, key cached (for information): the same with the key read once.

Each round times a block of iterations of every variant in turn (the order rotates between rounds, so
drift on a shared machine falls on all alike); the figure is the median over rounds.
"""

from __future__ import annotations

import base64
import datetime as dt
import statistics
import time
from collections.abc import Callable
from typing import Any

import xmlsec
from lxml import etree

from gateway.config import DEFAULT_MAX_PACKET_BYTES
from gateway.core.seal import KeyCache, SealPolicy, verify_seal
from gateway.core.trust import TrustStore
from gateway.core.wssec import TimestampPolicy, verify_envelope
from gateway.core.xmlparse import REQUEST_TREE, parse_xml

DS = "http://www.w3.org/2000/09/xmldsig#"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"


def _gateway(ca_pem: bytes) -> Callable[[bytes], None]:
    trust = TrustStore.from_pem(ca_pem)
    keys = KeyCache()
    policy = SealPolicy()

    def run(data: bytes) -> None:
        tree = parse_xml(data, max_bytes=DEFAULT_MAX_PACKET_BYTES)
        verify_seal(tree, policy=policy, trust=trust, at=dt.datetime.now(dt.timezone.utc), keys=keys)

    return run


def _bare(data: bytes) -> None:
    root = etree.fromstring(data)
    sig = root.find(f".//{{{DS}}}Signature")
    cert = sig.find(f".//{{{DS}}}X509Certificate").text  # type: ignore[union-attr]
    key = xmlsec.Key.from_memory(base64.b64decode(cert), xmlsec.KeyFormat.CERT_DER)  # type: ignore[arg-type]
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    ctx.verify(sig)


def _bare_cached() -> Callable[[bytes], None]:
    keys: dict[bytes, xmlsec.Key] = {}

    def run(data: bytes) -> None:
        root = etree.fromstring(data)
        sig = root.find(f".//{{{DS}}}Signature")
        cert = base64.b64decode(sig.find(f".//{{{DS}}}X509Certificate").text)  # type: ignore[union-attr,arg-type]
        key = keys.get(cert)
        if key is None:
            key = keys[cert] = xmlsec.Key.from_memory(cert, xmlsec.KeyFormat.CERT_DER)
        ctx = xmlsec.SignatureContext()
        ctx.key = key
        ctx.verify(sig)

    return run


def _wss_gateway(max_request_bytes: int) -> Callable[[bytes], None]:
    keys = KeyCache()
    policy = TimestampPolicy()

    def run(data: bytes) -> None:
        tree = parse_xml(data, max_bytes=max_request_bytes, limits=REQUEST_TREE)
        verify_envelope(tree.getroot(), at=dt.datetime.now(dt.timezone.utc), policy=policy, keys=keys)

    return run


def _wss_parts(data: bytes) -> tuple[etree._Element, etree._Element, etree._Element, etree._Element, bytes]:
    """(Signature, Body, Timestamp, root, the token's DER): the parse and look-ups of a bare verifier."""
    root = etree.fromstring(data)
    security = root.find(f"{{{SOAP}}}Header/{{{WSSE}}}Security")
    body = root.find(f"{{{SOAP}}}Body")
    sig = security.find(f"{{{DS}}}Signature")  # type: ignore[union-attr]
    stamp = security.find(f"{{{WSU_NS}}}Timestamp")  # type: ignore[union-attr]
    token = security.find(f"{{{WSSE}}}BinarySecurityToken").text  # type: ignore[union-attr]
    return sig, body, stamp, root, base64.b64decode(token)  # type: ignore[arg-type,return-value]


def _wss_bare(data: bytes) -> None:
    sig, body, stamp, _root, der = _wss_parts(data)
    ctx = xmlsec.SignatureContext()
    ctx.register_id(body, "Id", WSU_NS)
    ctx.register_id(stamp, "Id", WSU_NS)
    ctx.key = xmlsec.Key.from_memory(der, xmlsec.KeyFormat.CERT_DER)
    ctx.verify(sig)


def _wss_bare_cached() -> Callable[[bytes], None]:
    keys: dict[bytes, xmlsec.Key] = {}

    def run(data: bytes) -> None:
        sig, body, stamp, _root, der = _wss_parts(data)
        key = keys.get(der)
        if key is None:
            key = keys[der] = xmlsec.Key.from_memory(der, xmlsec.KeyFormat.CERT_DER)
        ctx = xmlsec.SignatureContext()
        ctx.register_id(body, "Id", WSU_NS)
        ctx.register_id(stamp, "Id", WSU_NS)
        ctx.key = key
        ctx.verify(sig)

    return run


def _time(fn: Callable[[bytes], None], data: bytes, iterations: int) -> float:
    started = time.perf_counter()
    for _ in range(iterations):
        fn(data)
    return (time.perf_counter() - started) / iterations


def _measure(
    variants: dict[str, Callable[[bytes], None]],
    packets: dict[str, bytes],
    *,
    rounds: int,
    round_seconds: float,
) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": rounds, "packets": {}}
    for label, data in packets.items():
        for fn in variants.values():  # warm up: caches filled, code paths hot; and it must verify
            fn(data)
        one = _time(variants["bare"], data, 3)
        iterations = max(3, int(round_seconds / max(one, 1e-6)))
        per_round: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                per_round[name].append(_time(variants[name], data, iterations))
        medians = {name: statistics.median(v) * 1e6 for name, v in per_round.items()}
        out["packets"][label] = {
            "size": len(data),
            "iterations_per_round": iterations,
            "us": medians,
            "us_rounds": {name: [x * 1e6 for x in v] for name, v in per_round.items()},
            "ratio": medians["gateway"] / medians["bare"],
            "ratio_key_cached": medians["gateway"] / medians["bare_key_cached"],
        }
    return out


def run_verify(
    ca_pem: bytes, packets: dict[str, bytes], *, rounds: int, round_seconds: float
) -> dict[str, Any]:
    """Seal verification: gateway vs bare, per packet."""
    variants = {"gateway": _gateway(ca_pem), "bare": _bare, "bare_key_cached": _bare_cached()}
    return _measure(variants, packets, rounds=rounds, round_seconds=round_seconds)


def run_wss_verify(
    requests: dict[str, bytes], *, max_request_bytes: int, rounds: int, round_seconds: float
) -> dict[str, Any]:
    """WS-Security verification of signed requests: gateway vs bare, per request. The requests must stay
    fresh (their Timestamps) for the whole measurement: the gateway's verify checks them."""
    variants = {
        "gateway": _wss_gateway(max_request_bytes),
        "bare": _wss_bare,
        "bare_key_cached": _wss_bare_cached(),
    }
    return _measure(variants, requests, rounds=rounds, round_seconds=round_seconds)
