"""``python -m bench``: options, the order of the run, and the guarantee that everything it started stops
(gateways, PostgreSQL, load and bound processes), on success, error, Ctrl-C or SIGTERM alike."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console

from bench import report, world
from bench.packets import (
    SIGNED_LIFETIME,
    PacketPool,
    SignedRequests,
    large_packet,
    send_requests,
    signed_send_edoc_request,
)
from bench.rawbound import run_raw_bound
from bench.scenarios import MB, Settings, run_floor, run_large, run_mixed, run_receive, run_send
from bench.verify import run_verify, run_wss_verify

HTTP_SCENARIOS = ("send", "floor", "send-x509", "receive", "mixed", "large")
ALL_SCENARIOS = (*HTTP_SCENARIOS, "verify", "wss-verify")
#: packets the raw bound loops over (the same for both bounds)
BOUND_PACKETS = 2000
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
#: the most packets prepared for one scenario (about 10 KB of memory each, request included)
MAX_POOL = 60_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark a real lienthong gateway (gunicorn, N workers) on SQLite and PostgreSQL over HTTP, "
        "beside the raw bound measured in the same run. See bench/README.md.",
    )
    p.add_argument(
        "--duration", type=float, default=20.0, metavar="SECONDS", help="timed phase per scenario (20)"
    )
    p.add_argument("--workers", type=int, default=2, metavar="N", help="gateway worker processes (2)")
    p.add_argument("--threads", type=int, default=4, metavar="N", help="gunicorn threads per worker (4)")
    p.add_argument(
        "--clients", type=int, default=None, metavar="N",
        help="concurrent load-generator connections, one process each (default 2 × workers)",
    )  # fmt: skip
    p.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument(
        "--scenario", choices=(*ALL_SCENARIOS, "all"), action="append",
        help="send, floor, send-x509, receive, mixed, large, verify, wss-verify or all (default); may be "
        "repeated",
    )  # fmt: skip
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, metavar="DIR", help="results directory (bench/results)"
    )
    p.add_argument(
        "--quick", action="store_true", help="a short smoke run (2 s scenarios, 1 MB + 5 MB large)"
    )
    p.add_argument(
        "--profile", action="store_true",
        help="instead of the scenarios: profile sendEdoc in-process (no HTTP) and print where the time goes",
    )  # fmt: skip
    p.add_argument(
        "--profile-packets", type=int, default=None, metavar="N", help="packets per profile pass (1000)"
    )
    p.add_argument(
        "--profile-x509", action="store_true",
        help="with --profile: profile X.509-signed sendEdoc requests too (system vpcp-signed)",
    )  # fmt: skip
    p.add_argument(
        "--receive-batch", type=int, default=0, metavar="N",
        help="packets a receiver fetches and acknowledges per getReceivedEdocList: 0 (default) = all of its share "
        "of the list, the documented receive loop; 1 = list, get, done for every packet",
    )  # fmt: skip
    p.add_argument(
        "--pin-workers", action="store_true",
        help="run the gateway with lienthong serve --pin-workers (each worker on a CPU of its own), and the "
        "HTTP floor's workers and the raw bound's processes pinned alike",
    )  # fmt: skip
    p.add_argument("--keep", action="store_true", help="keep the temporary data directories (gateway logs)")
    args = p.parse_args(argv)
    if args.workers < 1 or args.threads < 1 or args.duration <= 0:
        p.error("--workers, --threads and --duration must be positive")
    if args.clients is None:
        args.clients = 2 * args.workers
    if args.clients < 1:
        p.error("--clients must be positive")
    scenarios = args.scenario or ["all"]
    args.scenarios = (
        list(ALL_SCENARIOS) if "all" in scenarios else [s for s in ALL_SCENARIOS if s in scenarios]
    )
    args.databases = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    if args.quick:
        args.duration = min(args.duration, 2.0)
    args.warmup = 0.5 if args.quick else 1.0
    args.large_sizes = (1 * MB, 5 * MB) if args.quick else (1 * MB, 50 * MB)
    if args.profile_packets is None:
        args.profile_packets = 100 if args.quick else 1000
    return args


class _Terminated(Exception):
    pass


def _on_sigterm(_signum: int, _frame: object) -> None:
    raise _Terminated("SIGTERM")


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _stop_leftovers() -> None:
    """Stop any child process of ours still alive (there should be none): by pid, ours only."""
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _gone, alive = psutil.wait_procs(psutil.Process().children(recursive=True), timeout=5)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if console.width < 160:  # the tables have many columns: keep them readable in a log file too
        console = Console(width=160)
    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    base = Path(tempfile.mkdtemp(prefix="lienthong-bench-"))
    try:
        return _run(args, console, base)
    except (KeyboardInterrupt, _Terminated):
        console.print("[red]interrupted: everything started by the benchmark has been stopped[/red]")
        return 130
    finally:
        _stop_leftovers()
        signal.signal(signal.SIGTERM, old_term)
        if args.keep:
            console.print(f"data directories kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def _run(args: argparse.Namespace, console: Console, base: Path) -> int:
    started = dt.datetime.now().astimezone()
    stamp = started.strftime("%Y%m%d-%H%M%S")
    say = console.log
    say(f"test seals and secrets; work directory {base}")
    creds = world.Credentials.make()
    pool = PacketPool(creds.sender_key_pem, creds.sender_cert_pem)
    results: dict[str, Any] = {
        "meta": {
            "started": started.isoformat(timespec="seconds"),
            "commit": _git_commit(),
            "python": platform.python_version(),
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "workers": args.workers,
            "threads": args.threads,
            "pin_workers": args.pin_workers,
            "clients": args.clients,
            "duration": args.duration,
            "warmup": args.warmup,
            "quick": args.quick,
            "scenarios": args.scenarios,
            "receive_batch": args.receive_batch,
            "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "packet_bytes": 0.0,
        },
        "databases": {},
    }
    if args.profile:
        return _run_profile(args, console, creds, pool, base, results, stamp)

    pool.ensure(2000 if not args.quick else 400)
    results["meta"]["packet_bytes"] = pool.mean_size
    say(
        f"{len(pool)} sealed packets of {pool.mean_size:.0f} bytes (mean) built in {pool.build_seconds:.1f} s"
    )
    requests: list[bytes] = send_requests(
        pool.packets, world.SENDER_SYSTEM, creds.secrets[world.SENDER_SYSTEM]
    )
    http = [s for s in args.scenarios if s in HTTP_SCENARIOS]
    # the signing system's X.509-signed requests of the same packets, signed right before they are used
    signed = SignedRequests(pool, creds.signing.key_pem, creds.signing.cert_pem)

    def sign(count: int, valid_for: float, what: str) -> None:
        signed.ensure(count, valid_for=valid_for)
        if signed.last_count:
            say(
                f"{what}: {signed.last_count} sendEdoc requests signed (X.509, lifetime "
                f"{SIGNED_LIFETIME.total_seconds() / 60:g} min) in {signed.last_seconds:.1f} s, "
                f"{signed.mean_size:.0f} bytes each (mean)"
            )

    def grow(count: int) -> None:
        count = min(count, MAX_POOL)
        if count > len(pool):
            before = pool.build_seconds
            pool.ensure(count)
            requests.extend(
                send_requests(
                    pool.packets[len(requests) :], world.SENDER_SYSTEM, creds.secrets[world.SENDER_SYSTEM]
                )
            )
            say(f"pool grown to {len(pool)} packets in {pool.build_seconds - before:.1f} s")

    for kind in args.databases if http else []:
        if kind == "postgres":
            reason = world.postgres_skip_reason()
            if reason is not None:
                console.print(f"[yellow]PostgreSQL skipped: {reason}[/yellow]")
                results["databases"][kind] = {"skipped": reason}
                continue
        databases = world.Databases(kind, base)
        try:
            r: dict[str, Any] = {"version": databases.version()}
            results["databases"][kind] = r
            settings = Settings(
                creds=creds,
                pool=pool,
                send_requests=requests,
                workers=args.workers,
                threads=args.threads,
                clients=args.clients,
                duration=args.duration,
                warmup=args.warmup,
                receive_batch=args.receive_batch,
                large_sizes=args.large_sizes,
                pin_workers=args.pin_workers,
            )
            if {"send", "floor", "receive", "mixed"} & set(http):
                with world.target(
                    databases, "bound", creds, workers=args.workers, threads=args.threads, start=False
                ) as tgt:
                    r["raw_bound"] = run_raw_bound(
                        kind,
                        tgt.direct,
                        pool.packets[:BOUND_PACKETS],
                        processes=args.workers,
                        duration=args.duration,
                        pin=args.pin_workers,
                    )
                say(
                    f"{kind}: raw bound {r['raw_bound']['packets_per_s']:.0f} packets/s (UsernameToken requests)"
                )
                # enough packets for the clients to keep going for the whole timed phase (the gateway
                # cannot beat the raw bound by much; if it does, the scenario says the packets ran out)
                grow(math.ceil(r["raw_bound"]["packets_per_s"] * (args.duration + args.warmup) * 1.3) + 200)
            if "send-x509" in http:
                # the bound with the request's WS-Security verify: the bound of a signed request
                sign(min(BOUND_PACKETS, len(pool)), args.duration + 180, f"{kind}: raw bound")
                with world.target(
                    databases, "bound_x509", creds, workers=args.workers, threads=args.threads, start=False
                ) as tgt:
                    r["raw_bound_x509"] = run_raw_bound(
                        kind,
                        tgt.direct,
                        pool.packets[:BOUND_PACKETS],
                        processes=args.workers,
                        duration=args.duration,
                        pin=args.pin_workers,
                        requests=signed.requests[:BOUND_PACKETS],
                    )
                say(
                    f"{kind}: raw bound with the request's WS-Security verify "
                    f"{r['raw_bound_x509']['packets_per_s']:.0f} packets/s (X.509-signed requests)"
                )
            if "send" in http:
                r["send"] = run_send(settings, databases)
                say(
                    f"{kind}: send {r['send']['accepted_per_s']:.0f} accepted/s, "
                    f"p99 {r['send']['latency']['sendEdoc'].get('p99_ms', float('nan')):.1f} ms, "
                    f"{r['send']['errors']} errors"
                )
            if "floor" in http:
                r["floor"] = run_floor(settings, databases)
                bound = r["raw_bound"]["packets_per_s"]
                say(
                    f"{kind}: HTTP floor (the bound's work behind the same server) "
                    f"{r['floor']['accepted_per_s']:.0f} accepted/s"
                    + (f" = {r['floor']['accepted_per_s'] / bound:.2f}× the raw bound" if bound else "")
                    + f", p99 {r['floor']['latency']['sendEdoc'].get('p99_ms', float('nan')):.1f} ms, "
                    f"{r['floor']['errors']} errors"
                )
            if "send-x509" in http:
                # sized on what the gateway did with UsernameTokens (X.509 does more work), else the bound
                rate = (
                    r["send"]["accepted_per_s"] * 1.5
                    if "send" in r
                    else r["raw_bound_x509"]["packets_per_s"] * 1.3
                )
                need = min(MAX_POOL, math.ceil(rate * (args.duration + args.warmup)) + 200)
                grow(need)
                sign(need, args.warmup + args.duration + 120, f"{kind}: send-x509")
                r["send-x509"] = run_send(settings, databases, name="send-x509", requests=signed.requests)
                x = r["send-x509"]
                x["signing"] = {
                    "system": world.SIGNING_SYSTEM,
                    "lifetime_s": SIGNED_LIFETIME.total_seconds(),
                    "requests": len(signed),
                    "sign_seconds": signed.last_seconds,
                }
                if "send" in r and r["send"]["accepted_per_s"]:
                    x["vs_send"] = x["accepted_per_s"] / r["send"]["accepted_per_s"]
                say(
                    f"{kind}: send-x509 {x['accepted_per_s']:.0f} accepted/s"
                    + (f" ({x['vs_send']:.2f}× send)" if "vs_send" in x else "")
                    + f", p99 {x['latency']['sendEdoc'].get('p99_ms', float('nan')):.1f} ms, {x['errors']} errors"
                )
            if "receive" in http:
                rate = r["send"]["accepted_per_s"] if "send" in r else r["raw_bound"]["packets_per_s"] / 2
                preload = math.ceil(rate * (args.duration + args.warmup) * 1.5) + 50
                grow(preload)
                r["receive"] = run_receive(settings, databases, preload)
                say(
                    f"{kind}: receive {r['receive']['delivered_per_s']:.0f} delivered/s "
                    f"({r['receive']['preloaded_packets']} packets pre-loaded in {r['receive']['preload_s']:.0f} s), "
                    f"{r['receive']['errors']} errors"
                )
            if "mixed" in http:
                r["mixed"] = run_mixed(settings, databases)
                say(
                    f"{kind}: mixed {r['mixed']['accepted_per_s']:.0f} accepted/s, "
                    f"{r['mixed']['delivered_per_s']:.0f} delivered/s, {r['mixed']['errors']} errors"
                )
            if "large" in http:
                r["large"] = run_large(settings, databases)
                for p in r["large"]["packets"]:
                    say(
                        f"{kind}: large {p['label']}: send {p['sendEdoc']['seconds']:.2f} s, "
                        f"get {p['getEdoc']['seconds']:.2f} s, growth {p['growth_x_packet']:.2f}× packet"
                    )
        finally:
            databases.close()

    if "verify" in args.scenarios:
        pool.ensure(1)
        say("verify: building a 1 MB sealed packet")
        big = large_packet(1 * MB, creds.sender_key_pem, creds.sender_cert_pem, "V1")
        results["verify"] = run_verify(
            creds.ca.cert_pem,
            {"4 KB": pool.packets[0], "1 MB": big},
            rounds=3 if args.quick else 9,
            round_seconds=0.1 if args.quick else 0.6,
        )
        for label, v in results["verify"]["packets"].items():
            say(
                f"verify {label}: gateway {v['us']['gateway']:.0f} µs, bare {v['us']['bare']:.0f} µs ({v['ratio']:.2f}×)"
            )
        results["meta"]["packet_bytes"] = results["meta"]["packet_bytes"] or pool.mean_size

    if "wss-verify" in args.scenarios:
        from gateway.config import Config
        from gateway.core.wssec import EnvelopeSigner

        pool.ensure(1)
        signer = EnvelopeSigner(
            key_pem=creds.signing.key_pem, cert_pem=creds.signing.cert_pem, lifetime=SIGNED_LIFETIME
        )
        request = signed_send_edoc_request(pool.packets[0], signer)
        config = Config.from_sources({}, data_dir=base / "wss-verify")
        results["wss_verify"] = run_wss_verify(
            {"sendEdoc, 4 KB packet": request},
            max_request_bytes=config.max_request_bytes,
            rounds=3 if args.quick else 9,
            round_seconds=0.1 if args.quick else 0.6,
        )
        for label, v in results["wss_verify"]["packets"].items():
            say(
                f"wss-verify {label} ({v['size']} bytes): gateway {v['us']['gateway']:.0f} µs, "
                f"bare {v['us']['bare']:.0f} µs ({v['ratio']:.2f}×), bare with the key cached "
                f"{v['us']['bare_key_cached']:.0f} µs"
            )
        results["meta"]["packet_bytes"] = results["meta"]["packet_bytes"] or pool.mean_size

    results["meta"]["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results["meta"]["finished"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    results["meta"]["pool_build_s"] = pool.build_seconds
    results["meta"]["signing_s"] = signed.sign_seconds
    results["targets"] = report.targets(results)
    report.print_report(results, console)
    path, latest = report.write_json(results, args.out, stamp)
    chart = report.write_chart(results, args.out / "latest.png")
    if chart is not None:
        shutil.copyfile(chart, args.out / f"bench-{stamp}.png")
    console.print(f"\nresults: {path} (and {latest}); chart: {chart}")
    return 0


def _run_profile(
    args: argparse.Namespace,
    console: Console,
    creds: world.Credentials,
    pool: PacketPool,
    base: Path,
    results: dict[str, Any],
    stamp: str,
) -> int:
    from bench.profile import run_memory_profile, run_profile

    results["profile"] = {}
    for kind in args.databases:
        if kind == "postgres":
            reason = world.postgres_skip_reason()
            if reason is not None:
                console.print(f"[yellow]PostgreSQL skipped: {reason}[/yellow]")
                continue
        databases = world.Databases(kind, base)
        try:
            console.log(f"profile on {kind}: {args.profile_packets} packets per pass")
            started = time.perf_counter()
            results["profile"][kind] = run_profile(
                databases, creds, pool, count=args.profile_packets, out_dir=args.out
            )
            console.log(f"profile on {kind} done in {time.perf_counter() - started:.0f} s")
            if args.profile_x509:
                need = 30 + 2 * args.profile_packets
                pool.ensure(need)
                signed = SignedRequests(pool, creds.signing.key_pem, creds.signing.cert_pem)
                signed.ensure(need, valid_for=600)
                console.log(
                    f"profile on {kind}, X.509-signed requests ({need} signed in {signed.last_seconds:.1f} s)"
                )
                started = time.perf_counter()
                results["profile"][f"{kind}-x509"] = run_profile(
                    databases,
                    creds,
                    pool,
                    count=args.profile_packets,
                    out_dir=args.out,
                    signed=signed.requests,
                )
                console.log(f"X.509 profile on {kind} done in {time.perf_counter() - started:.0f} s")
            size = args.large_sizes[-1]
            console.log(f"memory profile on {kind}: one {size / MB:g} MB packet, sendEdoc then getEdoc")
            results["profile"][kind]["memory"] = run_memory_profile(databases, creds, size=size)
        finally:
            databases.close()
    results["meta"]["packet_bytes"] = pool.mean_size
    for prof in results["profile"].values():
        report.print_profile(prof, console)
    args.out.mkdir(parents=True, exist_ok=True)
    import json

    text = json.dumps(results, indent=2, ensure_ascii=False, default=str)
    (args.out / f"profile-{stamp}.json").write_text(text, encoding="utf-8")
    (args.out / "profile-latest.json").write_text(text, encoding="utf-8")
    console.print(
        f"\nprofile: {args.out / 'profile-latest.json'}; cProfile stats: {args.out}/profile-<db>.pstats"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
