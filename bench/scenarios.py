"""The HTTP scenarios, each on a fresh database and a fresh gateway: ``send``, ``send-x509``, ``receive``,
``mixed``, ``large``; and ``floor``, the raw bound's work behind the same server (:mod:`bench.floor`). Each returns a plain dict (it goes to the JSON file as it is)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import multiprocessing
import time
from collections.abc import Sequence
from typing import Any

from bench import load, world
from bench import monitor as monitor_mod
from bench.load import LoadResult, ReceiverPlan, SenderPlan
from bench.packets import PacketPool, doc_ids, fault_of, large_packet, packet_of, send_edoc_request

MB = 1_000_000
LARGE_TIMEOUT = 300.0


@dataclasses.dataclass
class Settings:
    creds: world.Credentials
    pool: PacketPool
    #: the pool's packets as sendEdoc requests of the sender system, same order
    send_requests: list[bytes]
    workers: int
    threads: int
    clients: int
    duration: float
    warmup: float
    receive_batch: int
    large_sizes: Sequence[int]
    #: the gateway's and the floor's workers on a CPU each (``lienthong serve --pin-workers``), the raw
    #: bound's processes too
    pin_workers: bool = False

    @property
    def sender_secret(self) -> str:
        return self.creds.secrets[world.SENDER_SYSTEM]


# --- figures ---------------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(values: Sequence[float]) -> dict[str, Any]:
    s = sorted(values)
    if not s:
        return {"count": 0}
    return {
        "count": len(s),
        "p50_ms": percentile(s, 0.50) * 1000,
        "p95_ms": percentile(s, 0.95) * 1000,
        "p99_ms": percentile(s, 0.99) * 1000,
        "mean_ms": sum(s) / len(s) * 1000,
        "max_ms": s[-1] * 1000,
    }


def summarize(name: str, kind: str, result: LoadResult, *, senders: int, receivers: int) -> dict[str, Any]:
    accepted = result.total("accepted")
    delivered = result.total("delivered")
    requests = len(result.latencies())
    packets = accepted + delivered
    out: dict[str, Any] = {
        "scenario": name,
        "database": kind,
        "senders": senders,
        "receivers": receivers,
        "elapsed_s": result.elapsed,
        "accepted": accepted,
        "accepted_per_s": accepted / result.elapsed,
        "delivered": delivered,
        "delivered_per_s": delivered / result.elapsed,
        "requests": requests,
        "requests_per_s": requests / result.elapsed,
        "latency": {"all": latency_summary(result.latencies())},
        "errors": result.total("errors"),
        "error_samples": result.error_samples(),
        "baseline_rss_mb": result.baseline_rss / MB,
        "peak_rss_mb": result.peak_rss / MB,
        "cpu_s": result.cpu_seconds,
        "cpu_ms_per_packet": (result.cpu_seconds / packets * 1000) if packets else None,
        "exhausted_after_s": result.exhausted_after(),
        "notes": [],
    }
    for op in result.ops():
        out["latency"][op] = latency_summary(result.latencies(op))
    if delivered:
        out["latency"]["delivered packet"] = latency_summary(result.packet_latencies())
    return out


def _receiver_plans(settings: Settings, count: int, *, stop_when_empty: bool) -> list[ReceiverPlan]:
    systems = [world.RECEIVER_SYSTEMS[i % len(world.RECEIVER_SYSTEMS)] for i in range(count)]
    plans = []
    for i, system in enumerate(systems):
        plans.append(
            ReceiverPlan(
                system_id=system,
                secret=settings.creds.secrets[system],
                share=systems[:i].count(system),
                shares=systems.count(system),
                batch=settings.receive_batch or 10_000,
                stop_when_empty=stop_when_empty,
            )
        )
    return plans


def _sender_plans(requests: Sequence[bytes], count: int) -> list[SenderPlan]:
    return [SenderPlan(requests[i::count]) for i in range(count)]


def _note_gateway(out: dict[str, Any], tgt: world.Target, mon: monitor_mod.ProcessTreeMonitor) -> None:
    out["worker_threads_seen"] = mon.threads_per_worker()
    log = tgt.gateway.log_text()
    out["gateway_log_errors"] = sum(1 for line in log.splitlines() if " ERROR " in line or "CRITICAL" in line)


# --- send ------------------------------------------------------------------------------------------------


def run_send(
    settings: Settings,
    databases: world.Databases,
    *,
    name: str = "send",
    requests: Sequence[bytes] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Clients post ``requests`` (default: the UsernameToken requests) back to back. ``send-x509`` is the
    same with the signing system's X.509-signed requests of the same packets."""
    requests = settings.send_requests if requests is None else requests
    with (
        world.target(
            databases,
            name.replace("-", "_"),  # also a PostgreSQL database name
            settings.creds,
            workers=settings.workers,
            threads=settings.threads,
            pin_workers=settings.pin_workers,
            env=env,
        ) as tgt,
        monitor_mod.ProcessTreeMonitor(tgt.gateway.proc.pid) as mon,
    ):  # type: ignore[union-attr]
        result = load.run_load(
            tgt.gateway.port,
            _sender_plans(requests, settings.clients),
            warmup=settings.warmup,
            duration=settings.duration,
            monitor=mon,
        )
        out = summarize(name, databases.kind, result, senders=settings.clients, receivers=0)
        out["request_bytes"] = sum(map(len, requests)) / max(1, len(requests))
        if out["exhausted_after_s"] is not None:
            out["notes"].append(
                f"the {len(requests)} prepared requests ran out after {out['exhausted_after_s']:.1f} s"
            )
        _note_gateway(out, tgt, mon)
        return out


# --- floor -----------------------------------------------------------------------------------------------


def run_floor(settings: Settings, databases: world.Databases) -> dict[str, Any]:
    """The raw bound's work behind the same gunicorn, driven as ``send`` is (see :mod:`bench.floor`)."""
    from bench.floor import FloorProcess

    with world.target(
        databases,
        "floor",
        settings.creds,
        workers=settings.workers,
        threads=settings.threads,
        pin_workers=settings.pin_workers,
        start=False,
    ) as tgt:
        floor = FloorProcess(
            tgt.data_dir,
            kind=databases.kind,
            direct=tgt.direct,
            workers=settings.workers,
            threads=settings.threads,
            pin_workers=settings.pin_workers,
            log_path=tgt.data_dir / "floor.log",
        )
        with floor, monitor_mod.ProcessTreeMonitor(floor.proc.pid) as mon:  # type: ignore[union-attr]
            result = load.run_load(
                floor.port,
                _sender_plans(settings.send_requests, settings.clients),
                warmup=settings.warmup,
                duration=settings.duration,
                monitor=mon,
            )
        out = summarize("floor", databases.kind, result, senders=settings.clients, receivers=0)
        if out["exhausted_after_s"] is not None:
            out["notes"].append(
                f"the {len(settings.send_requests)} prepared requests ran out after {out['exhausted_after_s']:.1f} s"
            )
        return out


# --- receive ---------------------------------------------------------------------------------------------


def run_receive(settings: Settings, databases: world.Databases, preload: int) -> dict[str, Any]:
    """Pre-load ``preload`` packets (through the gateway, not timed), then drain them."""
    preload = min(preload, len(settings.send_requests))
    with (
        world.target(
            databases,
            "receive",
            settings.creds,
            workers=settings.workers,
            threads=settings.threads,
            pin_workers=settings.pin_workers,
        ) as tgt,
        monitor_mod.ProcessTreeMonitor(tgt.gateway.proc.pid) as mon,
    ):  # type: ignore[union-attr]
        started = time.monotonic()
        pre = load.run_load(
            tgt.gateway.port,
            _sender_plans(settings.send_requests[:preload], max(settings.clients, 2)),
            warmup=0.0,
            duration=3600.0,
        )
        if pre.total("errors"):
            raise RuntimeError(f"pre-loading the receive scenario failed: {pre.error_samples()}")
        preload_s = time.monotonic() - started
        databases.settle(vacuum=tgt.url)  # the pre-load's writes, and their vacuum, are not this phase's
        monitor_mod.wait_quiet(mon)
        plans = _receiver_plans(settings, settings.clients, stop_when_empty=True)
        result = load.run_load(
            tgt.gateway.port, plans, warmup=settings.warmup, duration=settings.duration, monitor=mon
        )
        out = summarize("receive", databases.kind, result, senders=0, receivers=len(plans))
        out["preloaded_packets"] = pre.total("accepted")
        out["preloaded_deliveries"] = 3 * pre.total("accepted")
        out["preload_s"] = preload_s
        out["receive_batch"] = settings.receive_batch
        if out["exhausted_after_s"] is not None:
            out["notes"].append(
                f"a receiver's backlog ran dry after {out['exhausted_after_s']:.1f} s "
                f"({out['preloaded_deliveries']} deliveries pre-loaded)"
            )
        _note_gateway(out, tgt, mon)
        return out


# --- mixed -----------------------------------------------------------------------------------------------


def run_mixed(settings: Settings, databases: world.Databases) -> dict[str, Any]:
    senders = max(1, settings.clients // 2)
    receivers = max(len(world.RECEIVER_SYSTEMS), settings.clients - senders)
    with (
        world.target(
            databases,
            "mixed",
            settings.creds,
            workers=settings.workers,
            threads=settings.threads,
            pin_workers=settings.pin_workers,
        ) as tgt,
        monitor_mod.ProcessTreeMonitor(tgt.gateway.proc.pid) as mon,
    ):  # type: ignore[union-attr]
        plans: list[load.Plan] = [*_sender_plans(settings.send_requests, senders)]
        plans += _receiver_plans(settings, receivers, stop_when_empty=False)
        result = load.run_load(
            tgt.gateway.port, plans, warmup=settings.warmup, duration=settings.duration, monitor=mon
        )
        out = summarize("mixed", databases.kind, result, senders=senders, receivers=receivers)
        out["receive_batch"] = settings.receive_batch
        if out["exhausted_after_s"] is not None:
            out["notes"].append(f"the prepared packets ran out after {out['exhausted_after_s']:.1f} s")
        _note_gateway(out, tgt, mon)
        return out


# --- large -----------------------------------------------------------------------------------------------


def _large_client(port: int, requests: list[tuple[str, bytes]], receiver: tuple[str, str], pipe: Any) -> None:
    """In its own process: for each packet, on the parent's word, sendEdoc then getEdoc; report timings."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, inherited through fork
    from bench.packets import ReceiverRequests

    http = load.Http(port, LARGE_TIMEOUT)
    req = ReceiverRequests(*receiver)
    try:
        for label, body in requests:
            pipe.recv()  # go: send
            status, reply, seconds = http.post(body)
            fault = fault_of(reply) if status else reply[:300].decode(errors="replace")
            ids = doc_ids(reply) if status == 200 and fault is None else []
            pipe.send(
                {"label": label, "op": "sendEdoc", "status": status, "seconds": seconds, "fault": fault}
            )
            pipe.recv()  # go: get
            if not ids:
                pipe.send({"label": label, "op": "getEdoc", "status": 0, "seconds": 0.0, "fault": "not sent"})
                continue
            status, reply, seconds = http.post(req.get(ids[0]))
            fault = fault_of(reply) if status else reply[:300].decode(errors="replace")
            digest = None
            if status == 200 and fault is None:
                digest = hashlib.sha256(packet_of(reply)).hexdigest()
            del reply
            pipe.send(
                {
                    "label": label,
                    "op": "getEdoc",
                    "status": status,
                    "seconds": seconds,
                    "fault": fault,
                    "sha256": digest,
                }
            )
    finally:
        http.close()
        pipe.close()


def run_large(settings: Settings, databases: world.Databases) -> dict[str, Any]:
    creds = settings.creds
    built = []
    for size in settings.large_sizes:
        started = time.perf_counter()
        packet = large_packet(size, creds.sender_key_pem, creds.sender_cert_pem, f"L{size // MB}")
        label = f"{size / MB:g} MB"
        body = send_edoc_request(packet, world.SENDER_SYSTEM, settings.sender_secret)
        built.append((label, packet, body, time.perf_counter() - started))
    receiver = (world.RECEIVER_SYSTEMS[0], creds.secrets[world.RECEIVER_SYSTEMS[0]])
    out: dict[str, Any] = {"scenario": "large", "database": databases.kind, "packets": [], "notes": []}
    with (
        world.target(
            databases,
            "large",
            creds,
            workers=settings.workers,
            threads=settings.threads,
            pin_workers=settings.pin_workers,
        ) as tgt,
        monitor_mod.ProcessTreeMonitor(tgt.gateway.proc.pid) as mon,
    ):  # type: ignore[union-attr]
        # warm the workers up (database connections, first-request work) with a few small packets
        load.run_load(
            tgt.gateway.port,
            _sender_plans(settings.send_requests[: 8 * settings.workers], settings.workers),
            warmup=0.0,
            duration=60.0,
        )
        monitor_mod.wait_quiet(mon)
        baseline = mon.mark()
        cpu0 = mon.cpu_seconds()
        out["baseline_rss_mb"] = baseline / MB
        ctx = multiprocessing.get_context("fork")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_large_client,
            args=(tgt.gateway.port, [(label, body) for label, _p, body, _s in built], receiver, child),
            name="bench-large-client",
            daemon=True,
        )
        proc.start()
        child.close()
        try:
            for label, packet, body, build_s in built:
                entry: dict[str, Any] = {
                    "label": label,
                    "size": len(packet),
                    "request_bytes": len(body),
                    "build_s": build_s,
                }
                for op in ("sendEdoc", "getEdoc"):
                    before = mon.mark()
                    parent.send("go")
                    if not parent.poll(LARGE_TIMEOUT + 30):
                        raise RuntimeError(f"large: {op} of the {label} packet did not finish in time")
                    reply = parent.recv()
                    peak = mon.peak
                    entry[op] = {
                        "seconds": reply["seconds"],
                        "status": reply["status"],
                        "fault": reply["fault"],
                        "rss_before_mb": before / MB,
                        "peak_rss_mb": peak / MB,
                        "growth_mb": (peak - baseline) / MB,
                        "growth_x_packet": (peak - baseline) / len(packet),
                    }
                    if op == "getEdoc":
                        entry["identical"] = reply.get("sha256") == hashlib.sha256(packet).hexdigest()
                entry["ok"] = (
                    entry["sendEdoc"]["status"] == 200
                    and entry["sendEdoc"]["fault"] is None
                    and entry["getEdoc"]["status"] == 200
                    and entry["getEdoc"]["fault"] is None
                    and entry["identical"]
                )
                entry["timeout"] = any(
                    entry[op]["status"] == 0 and "timed out" in str(entry[op]["fault"])
                    for op in ("sendEdoc", "getEdoc")
                )
                entry["growth_x_packet"] = max(entry[op]["growth_x_packet"] for op in ("sendEdoc", "getEdoc"))
                entry["peak_rss_mb"] = max(entry[op]["peak_rss_mb"] for op in ("sendEdoc", "getEdoc"))
                out["packets"].append(entry)
        finally:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
            parent.close()
        out["cpu_s"] = mon.cpu_seconds() - cpu0
        out["errors"] = sum(0 if p["ok"] else 1 for p in out["packets"])
        out["peak_rss_mb"] = max((p["peak_rss_mb"] for p in out["packets"]), default=0.0)
        _note_gateway(out, tgt, mon)
    return out
