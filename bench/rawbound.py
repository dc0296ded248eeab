"""The raw bound: what a packet costs at minimum, with no HTTP and no SOAP framework, measured in the same
run, on the same machine, with the same number of processes as the gateway has workers.

Each process loops over its share of the same sealed 4 KB packets the gateway gets:

1. parse: ``lxml.etree.fromstring`` with the gateway's hardened parser settings, then the routing fields
   (From, To, DocumentId, Subject) read from the tree;
2. schema: the edXML document schema (``gateway.resources.load_schemas().document``);
3. seal: a bare xmlsec verify of the packet's ``ds:Signature`` with the signer's key, read once per
   process from the certificate in KeyInfo (a minimal implementation caches it, as the gateway does);
4. database: one durable commit inserting the packet's bytes (``packets``, the gateway's own schema,
   created by its migrations) and its 3 ``deliveries`` rows: on SQLite in WAL mode with
   ``synchronous=FULL`` and ``BEGIN IMMEDIATE``, the gateway's settings; on PostgreSQL with psycopg and
   the server's default (synchronous) commit.

Given the packets' signed ``sendEdoc`` requests (``requests=``, WS-Security X.509, signed before the timed
phase), the bound also does what the least verifier of a signed request must (:data:`WSS_VERIFY`, step 0,
"request"): parse the envelope (same hardened parser), a bare xmlsec verify of its signature over the Body
and the Timestamp (the two ``wsu:Id`` registered, the key read once per process from the
BinarySecurityToken and the token compared with it on every request), the Timestamp's Created/Expires
checked against the clock, and the packet taken from the verified Body (base64); steps 1-3 then work on
those bytes; and step 4 also inserts the signature's replay record (``replay_records``: a signature is
accepted once) in the same transaction. That is the issue's bound, "the request's WS-Security verify"
included; without ``requests=`` it is the bound of a UsernameToken request, which has no signature.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import multiprocessing
import os
import queue as queue_mod
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import xmlsec
from lxml import etree

from gateway.core.xmlparse import make_small_parser
from gateway.resources import load_schemas
from gateway.store.db import SQLITE_BUSY_TIMEOUT_MS

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DS = "http://www.w3.org/2000/09/xmldsig#"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
TNS = "urn:lienthong:axis:1"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
STEPS = ("request", "parse", "schema", "seal", "database")

_MH = f"{{{NS}}}edXMLEnvelope/{{{NS}}}edXMLHeader/{{{NS}}}MessageHeader"

_SQLITE_PACKET = (
    "INSERT INTO packets (doc_id, message_type, sender_code, sender_system, document_id, business_doc_type, "
    "subject, code, sha256, size, content, created_at, signer_fingerprint, signer_subject, signer_serial, "
    "signature_algorithm, digest_algorithm, seal_verified_at, legacy_sha1) "
    "VALUES (?, 'edoc', ?, 'vpcp', ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'rsa-sha256', 'sha256', ?, 0)"
)
_SQLITE_DELIVERY = (
    "INSERT INTO deliveries (packet_id, recipient_code, message_type, state, created_at) "
    "VALUES (?, ?, 'edoc', 'pending', ?)"
)
_SQLITE_REPLAY = "INSERT INTO replay_records (signature_digest, fingerprint, expires_at) VALUES (?, ?, ?)"
_PG_PACKET = _SQLITE_PACKET.replace("?", "%s").replace(", 0)", ", false)") + " RETURNING id"
_PG_DELIVERY = _SQLITE_DELIVERY.replace("?", "%s")
_PG_REPLAY = _SQLITE_REPLAY.replace("?", "%s")


def _sqlite_time(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(" ")


#: the gateway's tolerated clock difference (``LIENTHONG_CLOCK_SKEW``, 300 s)
SKEW = dt.timedelta(seconds=300)


class BareWssVerify:
    """The least a verifier of the gateway's signed requests does per request, with lxml and python-xmlsec
    only: parse the envelope, register the ``wsu:Id`` of the Body and the Timestamp, verify the signature
    with the key of the BinarySecurityToken's certificate (read once per process, as a minimal
    implementation caches it; the token of each request is compared with the cached one), check the
    Timestamp against the clock, and take the packet from the verified Body. Returns (packet bytes,
    SHA-256 of the SignatureValue: the replay record's key, Expires)."""

    def __init__(self, first_request: bytes, parser: etree.XMLParser) -> None:
        self.parser = parser
        root = etree.fromstring(first_request, parser)
        token = root.find(f"{{{SOAP}}}Header/{{{WSSE}}}Security/{{{WSSE}}}BinarySecurityToken")
        if token is None or not token.text:
            raise RuntimeError("the benchmark's signed request has no BinarySecurityToken")
        self.token_text = token.text
        der = base64.b64decode("".join(token.text.split()))
        self.key = xmlsec.Key.from_memory(der, xmlsec.KeyFormat.CERT_DER)
        self.fingerprint = hashlib.sha256(der).hexdigest()

    def __call__(self, request: bytes) -> tuple[bytes, str, dt.datetime]:
        root = etree.fromstring(request, self.parser)
        security = root.find(f"{{{SOAP}}}Header/{{{WSSE}}}Security")
        body = root.find(f"{{{SOAP}}}Body")
        token = security.find(f"{{{WSSE}}}BinarySecurityToken")  # type: ignore[union-attr]
        if token is None or token.text != self.token_text:
            raise RuntimeError("a request signed with another certificate than the first one")
        sig = security.find(f"{{{DS}}}Signature")  # type: ignore[union-attr]
        stamp = security.find(f"{{{WSU}}}Timestamp")  # type: ignore[union-attr]
        ctx = xmlsec.SignatureContext()
        ctx.key = self.key
        ctx.register_id(body, "Id", WSU)
        ctx.register_id(stamp, "Id", WSU)
        ctx.verify(sig)
        now = dt.datetime.now(dt.timezone.utc)
        created = dt.datetime.fromisoformat(stamp.findtext(f"{{{WSU}}}Created").replace("Z", "+00:00"))  # type: ignore[union-attr]
        expires = dt.datetime.fromisoformat(stamp.findtext(f"{{{WSU}}}Expires").replace("Z", "+00:00"))  # type: ignore[union-attr]
        if not created - SKEW <= now <= expires + SKEW:
            raise RuntimeError(f"a signed request is no longer fresh (Created {created}, Expires {expires})")
        value = sig.findtext(f"{{{DS}}}SignatureValue") or ""  # type: ignore[union-attr]
        digest = hashlib.sha256(base64.b64decode(value)).hexdigest()
        packet = base64.b64decode(body.findtext(f"{{{TNS}}}sendEdoc/{{{TNS}}}packet") or "")  # type: ignore[union-attr]
        return packet, digest, expires


#: the request's WS-Security verify the bound includes when it is given signed requests (the issue: "the
#: request's WS-Security verify (as soon as that exists)"); made once per bound process
WSS_VERIFY: Callable[[bytes, etree.XMLParser], Callable[[bytes], tuple[bytes, str, dt.datetime]]] = (
    BareWssVerify
)


class _Sqlite:
    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=FULL",
            "PRAGMA foreign_keys=ON",
            f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
        ):
            self.conn.execute(pragma)

    def store(self, row: dict[str, Any], recipients: Sequence[str]) -> None:
        now = _sqlite_time(row["now"])
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            if row.get("replay") is not None:
                digest, expires = row["replay"]
                cur.execute(_SQLITE_REPLAY, (digest, row["fingerprint_request"], _sqlite_time(expires)))
            cur.execute(
                _SQLITE_PACKET,
                _packet_params(row, now),
            )
            packet_id = cur.lastrowid
            cur.executemany(_SQLITE_DELIVERY, [(packet_id, r, now) for r in recipients])
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.conn.close()


def _packet_params(row: dict[str, Any], now: Any) -> tuple:
    """The packet insert's parameters, in the order both databases' statements take them."""
    return (
        row["doc_id"],
        row["sender"],
        row["document_id"],
        row["subject"],
        row["code"],
        row["sha256"],
        row["size"],
        row["content"],
        now,
        row["fingerprint"],
        row["subject_dn"],
        row["serial"],
        now,
    )


class _Postgres:
    def __init__(self, dsn: str) -> None:
        import psycopg

        self.conn = psycopg.connect(dsn)

    def store(self, row: dict[str, Any], recipients: Sequence[str]) -> None:
        now = row["now"]
        with self.conn.cursor() as cur:
            if row.get("replay") is not None:
                digest, expires = row["replay"]
                cur.execute(_PG_REPLAY, (digest, row["fingerprint_request"], expires))
            cur.execute(
                _PG_PACKET,
                _packet_params(row, now),
            )
            packet_id = cur.fetchone()[0]  # type: ignore[index]
            cur.executemany(_PG_DELIVERY, [(packet_id, r, now) for r in recipients])
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def _text(el: etree._Element | None, path: str) -> str | None:
    if el is None:
        return None
    value = el.findtext(path)
    return value.strip() if value else None


class PacketWork:
    """Steps 1-4 for one packet (see the module's text), with what a process sets up once: the parser, the
    schema, the database connection and the signer's key, read from the first packet's certificate.
    Shared by the bound's loop and the HTTP floor (:mod:`bench.floor`), so both do exactly the same work."""

    def __init__(self, kind: str, direct: str, first_packet: bytes) -> None:
        self.schema = load_schemas().document
        self.parser = make_small_parser()
        self.store = _Sqlite(direct) if kind == "sqlite" else _Postgres(direct)
        first = etree.fromstring(first_packet, self.parser)
        cert_text = first.find(f".//{{{DS}}}X509Certificate").text  # type: ignore[union-attr]
        der = base64.b64decode("".join((cert_text or "").split()))
        self.key = xmlsec.Key.from_memory(der, xmlsec.KeyFormat.CERT_DER)
        self.fingerprint = hashlib.sha256(der).hexdigest()

    def __call__(
        self,
        data: bytes,
        *,
        sender_suffix: str = "",
        replay: tuple[str, dt.datetime] | None = None,
        fingerprint_request: str | None = None,
    ) -> tuple[float, float, float, float, str]:
        """Parse, validate, verify and store ``data``: (the four steps' seconds, the new docId).
        ``sender_suffix`` keeps the unique keys unique when the same packet is stored again."""
        clock = time.perf_counter
        t0 = clock()
        root = etree.fromstring(data, self.parser)
        mh = root.find(_MH)
        sender = _text(mh, f"{{{NS}}}From/{{{NS}}}OrganId") or ""
        recipients = [_text(to, f"{{{NS}}}OrganId") or "" for to in mh.findall(f"{{{NS}}}To")]  # type: ignore[union-attr]
        row = {
            "document_id": _text(mh, f"{{{NS}}}DocumentId"),
            "subject": _text(mh, f"{{{NS}}}Subject"),
            "code": _text(mh, f"{{{NS}}}Code/{{{NS}}}CodeNumber"),
        }
        t1 = clock()
        if not self.schema.validate(root):
            raise RuntimeError(f"schema refused a benchmark packet: {self.schema.error_log.last_error}")
        t2 = clock()
        sig = root.find(f".//{{{DS}}}Signature")
        ctx = xmlsec.SignatureContext()
        ctx.key = self.key
        ctx.verify(sig)
        t3 = clock()
        doc_id = str(uuid.uuid4())
        row.update(
            doc_id=doc_id,
            sender=sender + sender_suffix,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            content=data,
            now=dt.datetime.now(dt.timezone.utc),
            fingerprint=self.fingerprint,
            subject_dn="bench",
            serial="0",
            replay=replay,
            fingerprint_request=fingerprint_request,
        )
        self.store.store(row, recipients)
        t4 = clock()
        return t1 - t0, t2 - t1, t3 - t2, t4 - t3, doc_id

    def close(self) -> None:
        self.store.close()


def _bound_process(
    index: int,
    processes: int,
    packets: Sequence[bytes],
    requests: Sequence[bytes] | None,
    kind: str,
    direct: str,
    duration: float,
    barrier: Any,
    results: Any,
    pin: bool = False,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, inherited through fork
    try:
        if pin:  # as ``lienthong serve --pin-workers`` places its workers: round robin over the CPUs
            cpus = sorted(os.sched_getaffinity(0))
            os.sched_setaffinity(0, {cpus[index % len(cpus)]})
        mine = list(packets[index::processes])
        signed = list(requests[index::processes]) if requests is not None else None
        work = PacketWork(kind, direct, mine[0])
        wss = WSS_VERIFY(signed[0], work.parser) if signed else None
        if wss is not None and wss(signed[0])[0] != mine[0]:  # type: ignore[index]
            raise RuntimeError("the signed requests do not carry the bound's packets in the same order")
        spent = dict.fromkeys(STEPS, 0.0)
        count = 0
        barrier.wait(timeout=120)
        started = time.monotonic()
        deadline = started + duration
        clock = time.perf_counter
        while time.monotonic() < deadline:
            lap, slot = divmod(count, len(mine))
            t_req = clock()
            replay = None
            if wss is not None:
                data, digest, expires = wss(signed[slot])  # type: ignore[index]
                if lap:  # the same request again (laps): another key keeps the replay record unique
                    digest = hashlib.sha256(f"{digest}:{index}:{lap}".encode()).hexdigest()
                replay = (digest, expires)
            else:
                data = mine[slot]
            t0 = clock()
            parse, schema, seal, database, _doc_id = work(
                data,
                # a packet may go round again (laps): another sender code keeps the unique keys unique
                sender_suffix=f"#{index}.{lap}" if lap else "",
                replay=replay,
                fingerprint_request=wss.fingerprint if wss is not None else None,  # type: ignore[attr-defined]
            )
            spent["request"] += t0 - t_req
            spent["parse"] += parse
            spent["schema"] += schema
            spent["seal"] += seal
            spent["database"] += database
            count += 1
        ended = time.monotonic()
        work.close()
        results.put((index, {"count": count, "started": started, "ended": ended, "spent": spent}))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        barrier.abort()
        results.put((index, {"crash": f"{type(exc).__name__}: {exc}"}))


def run_raw_bound(
    kind: str,
    direct: str,
    packets: Sequence[bytes],
    *,
    processes: int,
    duration: float,
    requests: Sequence[bytes] | None = None,
    pin: bool = False,
) -> dict[str, Any]:
    """The bound over ``packets``; with ``requests`` (each packet's signed sendEdoc request, same order)
    it includes the request's WS-Security verify and the replay record (see the module's text). ``pin``:
    each process on one CPU, as the gateway's workers are with ``--pin-workers``."""
    if requests is not None:
        requests = list(requests[: len(packets)])
        packets = list(packets[: len(requests)])
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_bound_process,
            args=(i, processes, packets, requests, kind, direct, duration, barrier, results, pin),
            name=f"bench-bound-{i}",
            daemon=True,
        )
        for i in range(processes)
    ]
    try:
        for p in procs:
            p.start()
        # a process that fails while setting up breaks the barrier and reports why, below
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=120)
        collected = {}
        limit = time.monotonic() + duration + 120
        while len(collected) < processes:
            try:
                index, stats = results.get(timeout=max(1.0, limit - time.monotonic()))
            except queue_mod.Empty:
                raise RuntimeError("raw bound processes did not report in time") from None
            if "crash" in stats:
                raise RuntimeError(f"raw bound process failed: {stats['crash']}")
            collected[index] = stats
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)
        results.close()
        results.cancel_join_thread()
    count = sum(s["count"] for s in collected.values())
    elapsed = max(s["ended"] for s in collected.values()) - min(s["started"] for s in collected.values())
    steps = STEPS if requests is not None else STEPS[1:]
    spent = {k: sum(s["spent"][k] for s in collected.values()) for k in steps}
    return {
        "database": kind,
        "processes": processes,
        "packets": count,
        "elapsed_s": elapsed,
        "packets_per_s": count / elapsed if elapsed > 0 else 0.0,
        # wall time inside each step, per packet, summed over the processes (waits for the lock included)
        "us_per_packet": {k: v / count * 1e6 for k, v in spent.items()} if count else {},
        # the request's WS-Security verify (and replay record) included: the bound of signed requests
        "wss_verify": requests is not None,
        "pinned": pin,
        "request_bytes": (sum(map(len, requests)) / len(requests)) if requests else None,
    }
