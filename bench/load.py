"""The load generator: client processes that post pre-built SOAP requests over keep-alive HTTP/1.1
connections to 127.0.0.1 and time each reply (``time.perf_counter``).

Each client is its own process (multiprocessing, fork), so the load generator never shares a GIL with the
gateway or with another client. A client runs a warm-up, waits at a barrier with the others and the parent
(which then reads the gateway's CPU time and resets the memory peak), runs the timed phase until its
deadline, and reports its counts and latencies. Every non-200 reply or SOAP fault is an error, kept with
its message.

Two kinds of client:

- a *sender* posts its share of pre-built ``sendEdoc`` requests (sealed 4 KB packets), one after the other;
- a *receiver* acts for one recipient system: ``getReceivedEdocList``, then ``getEdoc`` and
  ``updateStatus done`` for the packets of its share (several receivers of one system split the list by
  docId), listing again after ``batch`` packets (batch 1: the three calls for every packet).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import multiprocessing
import queue as queue_mod
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.packets import ReceiverRequests, doc_ids, fault_of

HOST = "127.0.0.1"
MAX_ERROR_SAMPLES = 10


@dataclasses.dataclass
class SenderPlan:
    requests: Sequence[bytes]


@dataclasses.dataclass
class ReceiverPlan:
    system_id: str
    secret: str
    share: int = 0
    shares: int = 1
    #: packets handled per getReceivedEdocList (1: list, get, done for every packet)
    batch: int = 1
    #: stop when the list comes back empty (receive); otherwise wait and list again (mixed)
    stop_when_empty: bool = True


Plan = SenderPlan | ReceiverPlan


class Http:
    """One keep-alive connection; a reply is (HTTP status, body, seconds)."""

    def __init__(self, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def connect(self) -> None:
        self.close()
        self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
        self.conn.connect()
        assert self.conn.sock is not None
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def post(self, body: bytes) -> tuple[int, bytes, float]:
        if self.conn is None:
            self.connect()
        assert self.conn is not None
        started = time.perf_counter()
        try:
            self.conn.request("POST", "/", body=body, headers={"Content-Type": "text/xml; charset=utf-8"})
            resp = self.conn.getresponse()
            data = resp.read()
            status = resp.status
            if resp.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return 0, f"{type(exc).__name__}: {exc}".encode(), time.perf_counter() - started
        return status, data, time.perf_counter() - started


@dataclasses.dataclass
class Stats:
    latencies: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    #: seconds per delivered packet: the calls made for it (list, when one preceded it, get, done)
    packet_latencies: list[float] = dataclasses.field(default_factory=list)
    accepted: int = 0
    delivered: int = 0
    errors: int = 0
    error_samples: list[str] = dataclasses.field(default_factory=list)
    exhausted_at: float | None = None
    started: float = 0.0
    ended: float = 0.0

    def record(self, op: str, seconds: float) -> None:
        self.latencies.setdefault(op, []).append(seconds)

    def error(self, op: str, status: int, body: bytes) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            reason = fault_of(body) or body[:200].decode(errors="replace")
            self.error_samples.append(f"{op}: HTTP {status}: {reason}")


class _Client:
    def __init__(self, plan: Plan, http_: Http) -> None:
        self.plan = plan
        self.http = http_
        self.next = 0
        self.mine: list[bytes] = []
        self.exhausted = False
        if isinstance(plan, ReceiverPlan):
            self.req = ReceiverRequests(plan.system_id, plan.secret)

    def step(self, stats: Stats) -> None:
        if isinstance(self.plan, SenderPlan):
            self._send(stats)
        else:
            self._receive(stats)

    def _send(self, stats: Stats) -> None:
        assert isinstance(self.plan, SenderPlan)
        if self.next >= len(self.plan.requests):
            self.exhausted = True
            return
        body = self.plan.requests[self.next]
        self.next += 1
        status, reply, seconds = self.http.post(body)
        stats.record("sendEdoc", seconds)
        if status != 200 or fault_of(reply) is not None:
            stats.error("sendEdoc", status, reply)
        elif b"duplicate>false<" not in reply:
            stats.error("sendEdoc", status, b"the gateway took a fresh packet for a resend: " + reply[-300:])
        else:
            stats.accepted += 1

    def _receive(self, stats: Stats) -> None:
        plan = self.plan
        assert isinstance(plan, ReceiverPlan)
        spent = 0.0
        if not self.mine:
            status, reply, seconds = self.http.post(self.req.list)
            stats.record("getReceivedEdocList", seconds)
            if status != 200 or fault_of(reply) is not None:
                stats.error("getReceivedEdocList", status, reply)
                return
            listed = doc_ids(reply)
            if not listed:
                if plan.stop_when_empty:
                    self.exhausted = True
                else:
                    time.sleep(0.02)  # nothing pending yet: poll again shortly
                return
            self.mine = [d for d in listed if int(d[:8], 16) % plan.shares == plan.share][: plan.batch]
            if not self.mine:
                time.sleep(0.005)  # pending packets, none in this client's share right now
                return
            spent = seconds
        doc_id = self.mine.pop(0)
        status, reply, seconds = self.http.post(self.req.get(doc_id))
        stats.record("getEdoc", seconds)
        spent += seconds
        if status != 200 or fault_of(reply) is not None:
            stats.error("getEdoc", status, reply)
            return
        status, reply, seconds = self.http.post(self.req.done(doc_id))
        stats.record("updateStatus", seconds)
        spent += seconds
        if status != 200 or fault_of(reply) is not None:
            stats.error("updateStatus", status, reply)
            return
        stats.delivered += 1
        stats.packet_latencies.append(spent)


def _client_main(
    index: int,
    plan: Plan,
    port: int,
    warmup: float,
    duration: float,
    max_ops: int | None,
    barrier: Any,
    results: Any,
    timeout: float,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us; a Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, inherited through fork
    conn = Http(port, timeout)
    client = _Client(plan, conn)
    try:
        scratch = Stats()
        end = time.monotonic() + warmup
        while time.monotonic() < end and not client.exhausted:
            client.step(scratch)
        barrier.wait(timeout=warmup + 120)
        conn.connect()  # a fresh connection for the timed phase (keep-alive may have lapsed while waiting)
        stats = Stats(started=time.monotonic())
        if scratch.errors:
            stats.error_samples.extend(f"(warm-up) {s}" for s in scratch.error_samples[:3])
            stats.errors += scratch.errors
        deadline = stats.started + duration
        ops = 0
        while time.monotonic() < deadline and not client.exhausted:
            client.step(stats)
            ops += 1
            if max_ops is not None and ops >= max_ops:
                break
        if client.exhausted:
            stats.exhausted_at = time.monotonic()
        stats.ended = time.monotonic()
        results.put((index, dataclasses.asdict(stats)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which stops the run
        barrier.abort()
        results.put((index, {"crash": f"{type(exc).__name__}: {exc}"}))
    finally:
        conn.close()


@dataclasses.dataclass
class LoadResult:
    started: float
    ended: float
    clients: list[dict[str, Any]]
    cpu_seconds: float
    peak_rss: int
    baseline_rss: int

    @property
    def elapsed(self) -> float:
        return max(1e-9, self.ended - self.started)

    def total(self, key: str) -> int:
        return sum(c.get(key, 0) for c in self.clients)

    def latencies(self, op: str | None = None) -> list[float]:
        out: list[float] = []
        for c in self.clients:
            for name, values in c.get("latencies", {}).items():
                if op is None or name == op:
                    out.extend(values)
        return out

    def ops(self) -> list[str]:
        names: list[str] = []
        for c in self.clients:
            for name in c.get("latencies", {}):
                if name not in names:
                    names.append(name)
        return names

    def packet_latencies(self) -> list[float]:
        return [v for c in self.clients for v in c.get("packet_latencies", [])]

    def error_samples(self) -> list[str]:
        return [s for c in self.clients for s in c.get("error_samples", [])][:MAX_ERROR_SAMPLES]

    def exhausted_after(self) -> float | None:
        times = [c["exhausted_at"] for c in self.clients if c.get("exhausted_at")]
        return (min(times) - self.started) if times else None


def run_load(
    port: int,
    plans: Sequence[Plan],
    *,
    warmup: float,
    duration: float,
    monitor: Any = None,
    max_ops: int | None = None,
    timeout: float = 300.0,
    on_start: Callable[[], None] | None = None,
) -> LoadResult:
    """Run the clients; the timed phase starts when all have warmed up, and ends at ``duration`` (or when
    every client ran out of work). Client processes are always stopped before this returns."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(plans) + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_client_main,
            args=(i, plan, port, warmup, duration, max_ops, barrier, results, timeout),
            name=f"bench-client-{i}",
            daemon=True,
        )
        for i, plan in enumerate(plans)
    ]
    try:
        for p in procs:
            p.start()
        try:
            barrier.wait(timeout=warmup + 120)
        except threading.BrokenBarrierError:
            crash = "no client reached the timed phase"
            with contextlib.suppress(queue_mod.Empty):
                crash = results.get(timeout=2)[1].get("crash", crash)
            raise RuntimeError(f"load-generator client failed during warm-up: {crash}") from None
        baseline = monitor.mark() if monitor is not None else 0
        cpu0 = monitor.cpu_seconds() if monitor is not None else 0.0
        started = time.monotonic()
        if on_start is not None:
            on_start()
        collected: dict[int, dict[str, Any]] = {}
        limit = time.monotonic() + duration + timeout + 60
        while len(collected) < len(procs):
            try:
                index, stats = results.get(timeout=max(1.0, limit - time.monotonic()))
            except queue_mod.Empty:
                raise RuntimeError("load-generator clients did not report in time") from None
            collected[index] = stats
            if time.monotonic() > limit:
                raise RuntimeError("load-generator clients did not report in time")
        cpu1 = monitor.cpu_seconds() if monitor is not None else 0.0
        crashes = [s["crash"] for s in collected.values() if "crash" in s]
        if crashes:
            raise RuntimeError(f"load-generator client failed: {crashes[0]}")
        clients = [collected[i] for i in range(len(procs))]
        ended = max(c["ended"] for c in clients)
        return LoadResult(
            started=started,
            ended=ended,
            clients=clients,
            cpu_seconds=cpu1 - cpu0,
            peak_rss=monitor.peak if monitor is not None else 0,
            baseline_rss=baseline,
        )
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        results.close()
        results.cancel_join_thread()
