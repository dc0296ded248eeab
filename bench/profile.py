"""Where a ``sendEdoc`` spends its time, in one process, without HTTP: the gateway's own WSGI application
(``gateway.soap.app.create_app``: guard, spyne, axis, database) called with pre-built environ dicts.

Two passes over distinct packets (a packet can be accepted only once):

1. the breakdown: the request's steps are wrapped with timers (in this process only) that charge time
   to the innermost step running, so every microsecond lands in exactly one category: parse (the SOAP
   envelope in the guard, the packet in ``check_packet``), schema, seal verify, SOAP (spyne: the request
   object, base64, the reply), database (SQLAlchemy and the driver, commit included), edXML reading and
   routing, logging, and other (the guard's checks, WSGI glue);
2. cProfile, for the functions behind each figure (its overhead inflates Python code more than C code,
   which is why the breakdown comes from pass 1). The stats are saved as ``profile-<db>.pstats``;
3. (UsernameToken requests) the CPU time of a request with warm and with cold caches
   (:func:`cache_pass`): the same calls back to back, as the raw bound's loop runs, then with what a
   server's CPU does between two requests over HTTP put between them — it waits for the next one (1 ms
   idle), and other processes (the clients, the other worker, the kernel) run on the CPU meanwhile (2 MB
   of memory touched: more than the CPU's own cache). Only the request's own CPU time is counted.
"""

from __future__ import annotations

import cProfile
import functools
import io
import logging
import os
import pstats
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import world
from bench.packets import PacketPool, send_edoc_request

DB_READ = "database: reads before the transaction (credentials, seal policy, pre-checks)"
DB_WRITE = "database: store packet + deliveries (write, commit)"
SOAP = "SOAP in/out (spyne, or the direct path: arguments, answer tree)"
ADMIT = "database: replay record of a signed request (admit: write, commit)"
CATEGORIES = (
    "parse: SOAP envelope (guard)",
    "parse: packet",
    "schema validation",
    "seal verify",
    "WS-Security: request signature verify",
    ADMIT,
    "WS-Security: response signing",
    SOAP,
    "spyne gc.collect (once a second)",
    DB_READ,
    DB_WRITE,
    "edXML reading + routing",
    "logging",
    "other (guard checks, WSGI)",
)


class Ledger:
    """Exclusive time per category: time is charged to the innermost wrapped step running."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.stack: list[str] = []
        self.mark = 0.0

    def _charge(self, now: float) -> None:
        if self.stack:
            self.totals[self.stack[-1]] += now - self.mark
        self.mark = now

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kw: Any) -> Any:
            self._charge(time.perf_counter())
            self.stack.append(name)
            try:
                return fn(*args, **kw)
            finally:
                self._charge(time.perf_counter())
                self.stack.pop()

        return timed


class _SchemaProxy:
    """An XMLSchema whose ``validate`` is timed (lxml's schema objects take no new attributes)."""

    def __init__(self, schema: Any, ledger: Ledger) -> None:
        self._schema = schema
        self.validate = ledger.wrap("schema validation", schema.validate)

    @property
    def error_log(self) -> Any:
        return self._schema.error_log


class _Patches:
    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def set(self, obj: Any, name: str, value: Any) -> None:
        own = name in getattr(obj, "__dict__", {})
        old = obj.__dict__[name] if own else None
        _force(obj, name, value)
        if own:
            self._undo.append(lambda: _force(obj, name, old))
        else:
            self._undo.append(lambda: object.__delattr__(obj, name))

    def undo(self) -> None:
        while self._undo:
            self._undo.pop()()


class _Gc:
    def __init__(self, collect: Callable[..., Any]) -> None:
        self.collect = collect


def _force(obj: Any, name: str, value: Any) -> None:
    try:
        setattr(obj, name, value)
    except AttributeError:  # a frozen dataclass (SealSettings)
        object.__setattr__(obj, name, value)


def _instrument(app: Any, ledger: Ledger) -> _Patches:
    import gateway.axis as axis_mod
    import gateway.core.packet as packet_mod
    import gateway.soap.guard as guard_mod
    from gateway.core.packet import SchemaSet

    p = _Patches()
    axis = app.axis
    p.set(guard_mod, "parse_xml", ledger.wrap("parse: SOAP envelope (guard)", guard_mod.parse_xml))
    p.set(packet_mod, "parse_xml", ledger.wrap("parse: packet", packet_mod.parse_xml))
    p.set(
        axis,
        "schemas",
        SchemaSet(
            document=_SchemaProxy(axis.schemas.document, ledger),  # type: ignore[arg-type]
            status=_SchemaProxy(axis.schemas.status, ledger),  # type: ignore[arg-type]
        ),
    )
    p.set(axis_mod, "verify_seal", ledger.wrap("seal verify", axis_mod.verify_seal))
    p.set(axis_mod, "check_signer_agency", ledger.wrap("seal verify", axis_mod.check_signer_agency))
    p.set(axis.seals, "trust", ledger.wrap("seal verify", axis.seals.trust))
    p.set(axis, "_identity_and_policies", ledger.wrap(DB_READ, axis._identity_and_policies))
    # a plain new document's reads before its transaction (resent bytes, recipients, DocumentId)
    for name in ("_resent", "_document_step"):
        if hasattr(axis, name):
            p.set(axis, name, ledger.wrap(DB_READ, getattr(axis, name)))
    run = axis.db.run
    timed_run = ledger.wrap(DB_WRITE, run)

    def db_run(*args: Any, **kw: Any) -> Any:
        # the replay record's transaction is charged to ADMIT, every other one to DB_WRITE
        return run(*args, **kw) if ledger.stack and ledger.stack[-1] == ADMIT else timed_run(*args, **kw)

    p.set(axis.db, "run", db_run)
    if hasattr(axis, "admit"):
        p.set(axis, "admit", ledger.wrap(ADMIT, axis.admit))
    p.set(axis, "send_edoc", ledger.wrap("edXML reading + routing", axis.send_edoc))
    p.set(logging.Logger, "_log", ledger.wrap("logging", logging.Logger._log))
    # spyne runs a full gc.collect() after a request at most once a second (spyne.const.MIN_GC_INTERVAL)
    import spyne.context

    p.set(spyne.context, "gc", _Gc(ledger.wrap("spyne gc.collect (once a second)", spyne.context.gc.collect)))
    # the WS-Security steps, where this gateway has them (verify_envelope runs for signed requests only)
    if hasattr(guard_mod, "verify_envelope"):
        p.set(
            guard_mod,
            "verify_envelope",
            ledger.wrap("WS-Security: request signature verify", guard_mod.verify_envelope),
        )
    if hasattr(app, "_sign"):
        p.set(app, "_sign", ledger.wrap("WS-Security: response signing", app._sign))
    if hasattr(app, "_serialize"):  # answers built as a tree (gateway.soap.direct): signed, serialized once
        p.set(app, "_serialize", ledger.wrap("WS-Security: response signing", app._serialize))
    if getattr(app, "direct", None) is not None:
        p.set(app, "direct", ledger.wrap(SOAP, app.direct))

    spyne_app = app.app

    def spyne_call(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        return [b"".join(spyne_app(environ, start_response))]  # the reply is serialized in here

    p.set(app, "app", ledger.wrap(SOAP, spyne_call))
    return p


def _environ(body: bytes) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "CONTENT_TYPE": "text/xml; charset=utf-8",
        "CONTENT_LENGTH": str(len(body)),
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:8080",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def _call(app: Any, body: bytes) -> None:
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
        status.append(s)
        return lambda _data: None

    reply = b"".join(app(_environ(body), start_response))
    if not status or not status[0].startswith("200") or b"duplicate>false<" not in reply:
        raise RuntimeError(f"the gateway refused a profiled packet: {status} {reply[:600]!r}")


#: how many bytes the cold-cache mode touches between two requests: twice this machine's per-core L2 (1 MB on
#: the 2-CPU machine of the figures), so that none of the last request's data is left in it
CACHE_SPILL_BYTES = 2 * 1024 * 1024
CACHE_MODES = (
    ("back to back (the raw bound's loop)", 0.0, False),
    ("1 ms idle before each request", 0.001, False),
    ("2 MB touched, then 1 ms idle, before each request", 0.001, True),
)


def cache_pass(app: Any, bodies: Sequence[bytes], *, rounds: int = 2) -> list[dict[str, Any]]:
    """CPU time per request (``time.process_time`` around each call, nothing else) in each of
    :data:`CACHE_MODES`, the modes interleaved over ``rounds`` rounds so that the machine's drift lands on
    all of them alike. ``bodies``: fresh requests, as many for each mode."""
    per_mode = len(bodies) // len(CACHE_MODES)
    per_round = per_mode // rounds
    if per_round < 1:
        raise ValueError("the cache pass needs at least one request per mode and round")
    spill = bytearray(CACHE_SPILL_BYTES)
    cpu = [0.0] * len(CACHE_MODES)
    done = [0] * len(CACHE_MODES)
    it = iter(bodies)
    for _round in range(rounds):
        for index, (_name, idle, touch) in enumerate(CACHE_MODES):
            for _ in range(per_round):
                body = next(it)
                if touch:
                    for offset in range(0, CACHE_SPILL_BYTES, 64):  # one write per cache line
                        spill[offset] = (spill[offset] + 1) & 0xFF
                if idle:
                    time.sleep(idle)
                started = time.process_time()
                _call(app, body)
                cpu[index] += time.process_time() - started
                done[index] += 1
    base = cpu[0] / done[0]
    return [
        {
            "mode": name,
            "requests": done[i],
            "cpu_us_per_request": cpu[i] / done[i] * 1e6,
            "vs_back_to_back": (cpu[i] / done[i]) / base if base else 0.0,
        }
        for i, (name, _idle, _touch) in enumerate(CACHE_MODES)
    ]


def _configure_logging(path: Path) -> list[logging.Handler]:
    """The server's logging (INFO, same format), into a file rather than the console."""
    from gateway.server import LOG_FORMAT

    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    old = root.handlers[:]
    for h in old:
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("spyne").setLevel(logging.WARNING)
    return old


def run_profile(
    databases: world.Databases,
    creds: world.Credentials,
    pool: PacketPool,
    *,
    count: int,
    out_dir: Path,
    warmup: int = 30,
    signed: Sequence[bytes] | None = None,
) -> dict[str, Any]:
    """Profile UsernameToken requests, or with ``signed`` those X.509-signed requests (at least
    ``warmup + 2 * count`` of them, fresh for the whole profile)."""
    from gateway.config import Config
    from gateway.soap.app import create_app

    auth = "x509" if signed is not None else "username-token"
    #: the cache pass (UsernameToken requests only: signed ones are all made before and age meanwhile)
    cache_count = 0 if signed is not None else len(CACHE_MODES) * count
    pool.ensure(warmup + 2 * count + cache_count)
    if signed is not None:
        if len(signed) < warmup + 2 * count:
            raise ValueError(
                f"the X.509 profile needs {warmup + 2 * count} signed requests, not {len(signed)}"
            )
        bodies = list(signed[: warmup + 2 * count])
    else:
        secret = creds.secrets[world.SENDER_SYSTEM]
        bodies = [
            send_edoc_request(p, world.SENDER_SYSTEM, secret)
            for p in pool.packets[: warmup + 2 * count + cache_count]
        ]
    with world.target(
        databases, f"profile_{auth.replace('-', '_')}", creds, workers=1, threads=1, start=False
    ) as tgt:
        config = Config.from_sources(
            {"LIENTHONG_TRUST_ANCHORS": str(tgt.data_dir / "trust-anchors.pem")},
            data_dir=tgt.data_dir / "home",
            database_url=tgt.url,
        )
        old_handlers = _configure_logging(tgt.data_dir / "profile.log")
        app = create_app(config)
        try:
            for body in bodies[:warmup]:
                _call(app, body)
            ledger = Ledger()
            patches = _instrument(app, ledger)
            outer = ledger.wrap("other (guard checks, WSGI)", _call)
            started = time.perf_counter()
            try:
                for body in bodies[warmup : warmup + count]:
                    outer(app, body)
            finally:
                patches.undo()
            wall = time.perf_counter() - started

            profiler = cProfile.Profile()
            profiler.enable()
            for body in bodies[warmup + count : warmup + 2 * count]:
                _call(app, body)
            profiler.disable()
            cache = cache_pass(app, bodies[warmup + 2 * count :]) if cache_count else []
        finally:
            app.axis.db.dispose()
            root = logging.getLogger()
            for h in root.handlers[:]:
                root.removeHandler(h)
                h.close()
            for h in old_handlers:
                root.addHandler(h)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats_path = out_dir / (
        f"profile-{databases.kind}.pstats" if signed is None else f"profile-{databases.kind}-x509.pstats"
    )
    profiler.dump_stats(stats_path)
    total = sum(ledger.totals.values())
    breakdown = [
        {
            "category": name,
            "us_per_packet": ledger.totals.get(name, 0.0) / count * 1e6,
            "share": ledger.totals.get(name, 0.0) / total if total else 0.0,
        }
        for name in CATEGORIES
    ]
    return {
        "database": databases.kind,
        "auth": auth,
        "packets": count,
        "wall_us_per_packet": wall / count * 1e6,
        "breakdown": breakdown,
        "top_functions": _top(stats_path, count),
        "cache": cache,
        "pstats": str(stats_path),
    }


def _top(path: Path, count: int, limit: int = 25) -> list[dict[str, Any]]:
    stats = pstats.Stats(str(path))
    rows = []
    for (filename, line, name), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": name,
                "where": f"{_short(filename)}:{line}",
                "calls_per_packet": ncalls / count,
                "tottime_us_per_packet": tottime / count * 1e6,
                "cumtime_us_per_packet": cumtime / count * 1e6,
            }
        )
    rows.sort(key=lambda r: r["tottime_us_per_packet"], reverse=True)
    return rows[:limit]


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def breakdown_rows(result: dict[str, Any]) -> Sequence[tuple[str, float, float]]:
    return [(r["category"], r["us_per_packet"], r["share"]) for r in result["breakdown"]]


# --- where the memory of a large packet goes --------------------------------------------------------------


def _rss_sampler(pid: int, current: Any, phase: Any, stop: Any, results: Any, interval: float) -> None:
    """In its own process (the GIL cannot delay it): the profiled process's RSS every ``interval``
    seconds, the peak kept per operation and step that were running (``phase``: 1 sendEdoc, 2 getEdoc;
    ``current``: the step's index)."""
    import signal

    import psutil

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    proc = psutil.Process(pid)
    peaks: dict[tuple[int, int], int] = {}
    while not stop.is_set():
        try:
            rss = proc.memory_info().rss
        except psutil.Error:
            break
        step = (phase.value, current.value)
        if rss > peaks.get(step, 0):
            peaks[step] = rss
        time.sleep(interval)
    results.put(peaks)


MEMORY_STEPS = (
    "(between steps)",
    "guard: read body + envelope checks",
    *CATEGORIES,
    "database: read packet (getEdoc)",
)


def _post(app: Any, body: bytes, op: str) -> bytes:
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
        status.append(s)
        return lambda _data: None

    reply = b"".join(app(_environ(body), start_response))
    if not status or not status[0].startswith("200"):
        raise RuntimeError(f"{op} refused in the memory profile: {status} {reply[:600]!r}")
    return reply


def run_memory_profile(databases: world.Databases, creds: world.Credentials, *, size: int) -> dict[str, Any]:
    """One large packet, sendEdoc then getEdoc, in-process: the peak RSS growth seen while each step ran."""
    import multiprocessing

    import psutil

    from bench.packets import MIN_ATTACHMENT, ReceiverRequests, doc_ids, large_packet, make_packet
    from gateway.config import Config
    from gateway.soap.app import create_app

    packet = large_packet(size, creds.sender_key_pem, creds.sender_cert_pem, "M")
    body = send_edoc_request(packet, world.SENDER_SYSTEM, creds.secrets[world.SENDER_SYSTEM])
    receiver = ReceiverRequests(world.RECEIVER_SYSTEMS[0], creds.secrets[world.RECEIVER_SYSTEMS[0]])
    ctx = multiprocessing.get_context("fork")
    current = ctx.Value("i", 0, lock=False)
    phase = ctx.Value("i", 0, lock=False)
    index = {name: i for i, name in enumerate(MEMORY_STEPS)}

    class StepLedger(Ledger):
        def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
            if name not in index:
                return fn
            code = index[name]

            @functools.wraps(fn)
            def marked(*args: Any, **kw: Any) -> Any:
                previous = current.value
                current.value = code
                try:
                    return fn(*args, **kw)
                finally:
                    current.value = previous

            return marked

    out: dict[str, Any] = {"database": databases.kind, "size": len(packet), "request_bytes": len(body)}
    with world.target(databases, "memory", creds, workers=1, threads=1, start=False) as tgt:
        config = Config.from_sources(
            {"LIENTHONG_TRUST_ANCHORS": str(tgt.data_dir / "trust-anchors.pem")},
            data_dir=tgt.data_dir / "home",
            database_url=tgt.url,
        )
        old_handlers = _configure_logging(tgt.data_dir / "profile.log")
        app = create_app(config)
        ledger = StepLedger()
        patches = _instrument(app, ledger)
        patches.set(app, "_admit", ledger.wrap("guard: read body + envelope checks", app._admit))
        patches.set(app.axis, "get_edoc", ledger.wrap("database: read packet (getEdoc)", app.axis.get_edoc))
        stop = ctx.Event()
        results = ctx.Queue()
        sampler = ctx.Process(
            target=_rss_sampler, args=(os.getpid(), current, phase, stop, results, 0.005), daemon=True
        )
        try:
            small = make_packet(
                "W", 1, os.urandom(MIN_ATTACHMENT), creds.sender_key_pem, creds.sender_cert_pem
            )
            _call(app, send_edoc_request(small, world.SENDER_SYSTEM, creds.secrets[world.SENDER_SYSTEM]))
            sampler.start()
            time.sleep(0.2)
            baseline = psutil.Process().memory_info().rss
            phase.value = 1
            reply = _post(app, body, "sendEdoc")
            del body
            doc_id = doc_ids(reply)[0]
            phase.value = 2
            _post(app, receiver.get(doc_id), "getEdoc")
            phase.value = 0
            time.sleep(0.1)
            stop.set()
            peaks = results.get(timeout=30)
        finally:
            stop.set()
            sampler.join(timeout=5)
            if sampler.is_alive():
                sampler.kill()
            patches.undo()
            app.axis.db.dispose()
            root = logging.getLogger()
            for h in root.handlers[:]:
                root.removeHandler(h)
                h.close()
            for h in old_handlers:
                root.addHandler(h)
    out["baseline_rss_mb"] = baseline / 1e6
    out["steps"] = [
        {
            "operation": {1: "sendEdoc", 2: "getEdoc"}[op],
            "step": MEMORY_STEPS[i],
            "peak_growth_mb": (peaks[op, i] - baseline) / 1e6,
            "peak_growth_x_packet": (peaks[op, i] - baseline) / len(packet),
        }
        for op, i in sorted(peaks)
        if op in (1, 2)
    ]
    out["peak_growth_x_packet"] = (max(peaks.values()) - baseline) / len(packet) if peaks else None
    return out
