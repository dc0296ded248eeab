"""Everything the client side costs, done before the timed phase: sealed edXML packets and complete SOAP
requests (bytes) carrying a WS-Security UsernameToken, as ``tests/support/raw.py`` writes them, or signed
with a system's certificate (WS-Security X.509, :class:`gateway.core.wssec.EnvelopeSigner`, what the
reference client sends).

Packets are built with the reference client's :func:`lienthong_client.packets.build_document` and sealed
with :func:`gateway.core.seal.sign_packet` (RSA-SHA256, exclusive c14n, the certificate in KeyInfo), by a
pool of processes. Each has its own DocumentId (``<sender>,<date>,<number>/BENCH``), so no two are the same
document, and goes to the three recipients.
"""

from __future__ import annotations

import base64
import datetime as dt
import multiprocessing
import os
import re
import secrets
import signal
import time
from collections.abc import Sequence

from lxml import etree

from bench.world import RECIPIENTS, SENDER
from gateway.core.seal import sign_packet
from gateway.core.wssec import EnvelopeSigner, TimestampPolicy
from lienthong_client.packets import build_document

TNS = "urn:lienthong:axis:1"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"

SMALL_PACKET_BYTES = 4096
#: a packet of this benchmark always carries an attachment (the sealed header alone is about 4.3 KB)
MIN_ATTACHMENT = 48


# --- SOAP requests ----------------------------------------------------------------------------------------


def security_header(system_id: str, secret: str) -> str:
    return (
        f'<wsse:Security xmlns:wsse="{WSSE}"><wsse:UsernameToken><wsse:Username>{system_id}</wsse:Username>'
        f"<wsse:Password>{secret}</wsse:Password></wsse:UsernameToken></wsse:Security>"
    )


def _head(system_id: str, secret: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP}" xmlns:tns="{TNS}">'
        f"<soapenv:Header>{security_header(system_id, secret)}</soapenv:Header><soapenv:Body>"
    ).encode()


_TAIL = b"</soapenv:Body></soapenv:Envelope>"


def send_edoc_request(packet: bytes, system_id: str, secret: str) -> bytes:
    return (
        _head(system_id, secret)
        + b"<tns:sendEdoc><tns:packet>"
        + base64.b64encode(packet)
        + b"</tns:packet></tns:sendEdoc>"
        + _TAIL
    )


def signed_send_edoc_request(packet: bytes, signer: EnvelopeSigner, at: dt.datetime | None = None) -> bytes:
    """A ``sendEdoc`` request signed as the reference client signs it (``clients/wsse.py``): the envelope
    built with lxml, then :meth:`EnvelopeSigner.sign` adds the Security header (BinarySecurityToken,
    Timestamp, a Signature over the Body and the Timestamp). Each call makes a fresh signature and
    Timestamp, so no two requests are the same (the gateway accepts a signature once)."""
    envelope = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"soapenv": SOAP, "tns": TNS})
    body = etree.SubElement(envelope, f"{{{SOAP}}}Body")
    operation = etree.SubElement(body, f"{{{TNS}}}sendEdoc")
    etree.SubElement(operation, f"{{{TNS}}}packet").text = base64.b64encode(packet).decode("ascii")
    signer.sign(envelope, at or dt.datetime.now(dt.timezone.utc))
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


class ReceiverRequests:
    """A recipient system's requests: the list is constant bytes, getEdoc and updateStatus differ only by
    the docId (a format of a pre-built template, microseconds)."""

    def __init__(self, system_id: str, secret: str) -> None:
        head = _head(system_id, secret)
        self.list = (
            head
            + b"<tns:getReceivedEdocList><tns:messageType>edoc</tns:messageType></tns:getReceivedEdocList>"
            + _TAIL
        )
        self._get = head + b"<tns:getEdoc><tns:docId>%s</tns:docId></tns:getEdoc>" + _TAIL
        self._done = (
            head
            + b"<tns:updateStatus><tns:docId>%s</tns:docId><tns:status>done</tns:status></tns:updateStatus>"
            + _TAIL
        )

    def get(self, doc_id: bytes) -> bytes:
        return self._get % doc_id

    def done(self, doc_id: bytes) -> bytes:
        return self._done % doc_id


# --- reading replies (bytes, no XML parser: the client side must stay cheap) ------------------------------

_DOC_ID = re.compile(rb"<(?:[\w.-]+:)?docId>([0-9a-fA-F-]{36})</(?:[\w.-]+:)?docId>")
_PACKET = re.compile(rb"<(?:[\w.-]+:)?packet>")
_FAULT_CODE = re.compile(rb"<faultcode>([^<]*)</faultcode>")
_FAULT_STRING = re.compile(rb"<faultstring>([^<]*)</faultstring>")


def fault_of(body: bytes) -> str | None:
    """The fault code and message in a reply, or None (only the start of a reply can hold a fault)."""
    head = body[:8192]
    if b"Fault>" not in head:
        return None
    code = _FAULT_CODE.search(head)
    msg = _FAULT_STRING.search(head)
    return (
        f"{code.group(1).decode(errors='replace') if code else '?'}: "
        f"{msg.group(1).decode(errors='replace')[:300] if msg else ''}"
    )


def doc_ids(body: bytes) -> list[bytes]:
    return _DOC_ID.findall(body)


def packet_of(body: bytes) -> bytes:
    """The packet bytes of a getEdoc reply."""
    m = _PACKET.search(body)
    if m is None:
        raise ValueError("no packet element in the getEdoc reply")
    end = body.index(b"</", m.end())
    return base64.b64decode(body[m.end() : end])


# --- packets ----------------------------------------------------------------------------------------------


_KEY: bytes = b""
_CERT: bytes = b""


class _KeyMemo:
    """Stands in for ``cryptography...serialization`` inside :mod:`gateway.core.seal`, in the packet
    builder's processes only: ``sign_packet`` loads the private key with ``load_pem_private_key`` on every
    call (only to choose RSA or ECDSA), and that check of an RSA key costs ~40 ms, ten times the signature.
    The signature itself is still made by ``sign_packet``, byte for byte."""

    def __init__(self, real: object) -> None:
        self._real = real
        self._keys: dict[tuple[bytes, bytes | None], object] = {}

    def load_pem_private_key(self, data: bytes, password: bytes | None = None, **kw: object) -> object:
        key = (bytes(data), password)
        if key not in self._keys:
            self._keys[key] = self._real.load_pem_private_key(data, password, **kw)  # type: ignore[attr-defined]
        return self._keys[key]

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)


def _init_signer(key_pem: bytes, cert_pem: bytes) -> None:
    global _KEY, _CERT
    _KEY, _CERT = key_pem, cert_pem
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from gateway.core import seal

    if not isinstance(seal.serialization, _KeyMemo):
        seal.serialization = _KeyMemo(seal.serialization)  # type: ignore[assignment]


def _number(index: int) -> str:
    return str(index)  # CodeNumber: at most 11 characters


def make_packet(tag: str, index: int, attachment: bytes, key_pem: bytes, cert_pem: bytes) -> bytes:
    """One sealed document packet from the sender to the three recipients."""
    doc = build_document(
        sender=SENDER,
        recipients=list(RECIPIENTS),
        number=_number(index),
        notation=f"{tag}-BENCH",
        subject=f"Benchmark document {tag}-{index}",
        attachments=[("phu-luc.bin", "application/octet-stream", attachment)] if attachment else (),
    )
    return sign_packet(doc, key_pem, cert_pem, max_bytes=len(doc) + 1024)


def _make_small(args: tuple[str, int, int]) -> bytes:
    tag, index, attachment_bytes = args
    # random bytes per packet: every packet (and its SHA-256) is distinct
    return make_packet(tag, index, os.urandom(attachment_bytes), _KEY, _CERT)


def attachment_size_for(target: int, key_pem: bytes, cert_pem: bytes) -> int:
    """The raw attachment size that makes a sealed packet ``target`` bytes (base64 grows it by 4/3); at
    least ``MIN_ATTACHMENT`` bytes when the packet without it is already about that size."""
    base = len(make_packet("calib", 0, b"x" * 3, key_pem, cert_pem)) - 4  # 3 raw bytes = 4 base64 chars
    raw = max(MIN_ATTACHMENT, (target - base) * 3 // 4)
    if raw == MIN_ATTACHMENT:
        return raw
    for _ in range(4):  # the base varies by a few bytes (names, signature); settle on the target
        size = len(make_packet("calib", 0, b"x" * raw, key_pem, cert_pem))
        if abs(size - target) <= 4:
            break
        raw = max(MIN_ATTACHMENT, raw + (target - size) * 3 // 4)
    return raw


class PacketPool:
    """Sealed ~4 KB packets, built in parallel before any timed phase; grown on demand."""

    def __init__(self, key_pem: bytes, cert_pem: bytes, *, processes: int | None = None) -> None:
        self.key_pem = key_pem
        self.cert_pem = cert_pem
        self.tag = "B" + secrets.token_hex(3).upper()
        self.processes = processes or os.cpu_count() or 2
        self.attachment_bytes = attachment_size_for(SMALL_PACKET_BYTES, key_pem, cert_pem)
        self.packets: list[bytes] = []
        self.build_seconds = 0.0

    def __len__(self) -> int:
        return len(self.packets)

    def ensure(self, count: int) -> None:
        missing = count - len(self.packets)
        if missing <= 0:
            return
        started = time.perf_counter()
        jobs = [(self.tag, i, self.attachment_bytes) for i in range(len(self.packets), count)]
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(
            self.processes, initializer=_init_signer, initargs=(self.key_pem, self.cert_pem)
        ) as pool:
            self.packets.extend(pool.map(_make_small, jobs, chunksize=64))
        self.build_seconds += time.perf_counter() - started

    @property
    def mean_size(self) -> float:
        return sum(map(len, self.packets)) / max(1, len(self.packets))


def send_requests(packets: Sequence[bytes], system_id: str, secret: str) -> list[bytes]:
    return [send_edoc_request(p, system_id, secret) for p in packets]


#: the longest Timestamp lifetime the gateway accepts (Expires - Created); the requests are signed with it,
#: so that those signed before a scenario are still fresh at its end (plus the gateway's clock skew, 300 s)
SIGNED_LIFETIME = TimestampPolicy().max_lifetime

_ENVELOPE_SIGNER: EnvelopeSigner | None = None


def _init_envelope_signer(key_pem: bytes, cert_pem: bytes, lifetime_s: float) -> None:
    global _ENVELOPE_SIGNER
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # loaded once per process (the private key check of an RSA key costs ~40 ms)
    _ENVELOPE_SIGNER = EnvelopeSigner(
        key_pem=key_pem, cert_pem=cert_pem, lifetime=dt.timedelta(seconds=lifetime_s)
    )


def _sign_one(packet: bytes) -> bytes:
    assert _ENVELOPE_SIGNER is not None
    return signed_send_edoc_request(packet, _ENVELOPE_SIGNER)


class SignedRequests:
    """``sendEdoc`` requests of a signing system for the pool's packets (same order), each signed with its
    certificate: made by a pool of processes right before they are needed (the load generator only posts
    bytes), with the longest lifetime the gateway accepts. :meth:`ensure` signs them all anew when the
    oldest would no longer be fresh by the end of the coming phase."""

    def __init__(
        self,
        pool: PacketPool,
        key_pem: bytes,
        cert_pem: bytes,
        *,
        lifetime: dt.timedelta = SIGNED_LIFETIME,
        processes: int | None = None,
    ) -> None:
        self.pool = pool
        self.key_pem = key_pem
        self.cert_pem = cert_pem
        self.lifetime = lifetime
        self.processes = processes or os.cpu_count() or 2
        self.requests: list[bytes] = []
        #: wall-clock time (time.time) the oldest request was signed at (its wsu:Created)
        self.oldest = 0.0
        self.sign_seconds = 0.0
        #: seconds the last call of :meth:`ensure` spent signing, and how many it signed
        self.last_seconds = 0.0
        self.last_count = 0

    def __len__(self) -> int:
        return len(self.requests)

    def fresh_until(self) -> float:
        """Wall-clock time the oldest request expires at (its wsu:Expires), ignoring the gateway's skew."""
        return self.oldest + self.lifetime.total_seconds() if self.requests else 0.0

    def ensure(self, count: int, *, valid_for: float) -> None:
        """At least ``count`` requests (no more than the pool has packets), all still fresh ``valid_for``
        seconds from now."""
        count = min(count, len(self.pool))
        if self.requests and self.fresh_until() < time.time() + valid_for:
            self.requests = []  # too old for the coming phase: sign them all again (fresh Timestamps)
        missing = count - len(self.requests)
        self.last_seconds, self.last_count = 0.0, max(0, missing)
        if missing <= 0:
            return
        if not self.requests:
            self.oldest = time.time()
        started = time.perf_counter()
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(
            self.processes,
            initializer=_init_envelope_signer,
            initargs=(self.key_pem, self.cert_pem, self.lifetime.total_seconds()),
        ) as workers:
            self.requests.extend(
                workers.map(_sign_one, self.pool.packets[len(self.requests) : count], chunksize=64)
            )
        self.last_seconds = time.perf_counter() - started
        self.sign_seconds += self.last_seconds

    @property
    def mean_size(self) -> float:
        return sum(map(len, self.requests)) / max(1, len(self.requests))


def large_packet(size: int, key_pem: bytes, cert_pem: bytes, tag: str) -> bytes:
    """A sealed packet of about ``size`` bytes: one attachment of random bytes."""
    raw = max(3, (size - 3000) * 3 // 4)
    return make_packet(tag, 0, os.urandom(raw), key_pem, cert_pem)
