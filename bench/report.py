"""The report: targets checked, a readable table (rich), a JSON file and a PNG chart."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

SEND_BOUND_RATIO = 0.5
SEND_P99_MS = 50.0
LARGE_GROWTH_X = 4.0
VERIFY_RATIO = 1.5
DB_LABEL = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _mark(ok: bool | None) -> str:
    return "–" if ok is None else ("[green]met[/green]" if ok else "[bold red]NOT met[/bold red]")


# --- targets -----------------------------------------------------------------------------------------------


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, database: str | None, figure: str, required: str, ok: bool | None) -> None:
        out.append({"target": name, "database": database, "figure": figure, "required": required, "met": ok})

    for db, r in results.get("databases", {}).items():
        send = r.get("send")
        # each send scenario against the bound of the same work: UsernameToken requests carry no signature,
        # signed requests are bounded with the request's WS-Security verify
        for name, bound_key, bound_text in (
            ("send", "raw_bound", "raw bound"),
            ("send-x509", "raw_bound_x509", "raw bound with the request's verify"),
        ):
            s = r.get(name)
            bound = r.get(bound_key)
            if s is None:
                continue
            if bound is not None and bound["packets_per_s"] > 0:
                ratio = s["accepted_per_s"] / bound["packets_per_s"]
                add(
                    f"{name} throughput vs {bound_text}",
                    db,
                    f"{ratio:.2f}× ({s['accepted_per_s']:.0f}/s of {bound['packets_per_s']:.0f}/s)",
                    f"≥ {SEND_BOUND_RATIO}×",
                    ratio >= SEND_BOUND_RATIO,
                )
            p99 = s["latency"].get("sendEdoc", {}).get("p99_ms")
            add(
                f"{name} p99 latency",
                db,
                f"{_fmt(p99)} ms",
                f"< {SEND_P99_MS:g} ms",
                p99 is not None and p99 < SEND_P99_MS,
            )
        floor, bound = r.get("floor"), r.get("raw_bound")
        if floor is not None and bound is not None and bound["packets_per_s"] > 0:
            add(
                "HTTP floor vs raw bound (for information: the bound's work behind the same server)",
                db,
                f"{floor['accepted_per_s'] / bound['packets_per_s']:.2f}× "
                f"({floor['accepted_per_s']:.0f}/s of {bound['packets_per_s']:.0f}/s)",
                "–",
                None,
            )
            if send is not None and floor["accepted_per_s"] > 0:
                add(
                    "send vs HTTP floor (for information)",
                    db,
                    f"{send['accepted_per_s'] / floor['accepted_per_s']:.2f}× "
                    f"({send['accepted_per_s']:.0f}/s of {floor['accepted_per_s']:.0f}/s)",
                    "–",
                    None,
                )
        x509 = r.get("send-x509")
        if x509 is not None and x509.get("vs_send") is not None:
            add(
                "send-x509 vs send (for information)",
                db,
                f"{x509['vs_send']:.2f}× ({x509['accepted_per_s']:.0f}/s vs {send['accepted_per_s']:.0f}/s)",  # type: ignore[index]
                "–",
                None,
            )
        rec = r.get("receive")
        if rec is not None and send is not None:
            add(
                "receive ≥ send",
                db,
                f"{rec['delivered_per_s']:.0f} delivered/s vs {send['accepted_per_s']:.0f} accepted/s",
                "delivered/s ≥ send accepted/s",
                rec["delivered_per_s"] >= send["accepted_per_s"],
            )
        for name in ("send", "floor", "send-x509", "receive", "mixed", "large"):
            s = r.get(name)
            if s is not None:
                add(f"{name}: errors", db, str(s["errors"]), "0", s["errors"] == 0)
        large = r.get("large")
        if large is not None:
            big = max(large["packets"], key=lambda p: p["size"], default=None)
            if big is not None:
                add(
                    f"large: {big['label']} accepted and fetched",
                    db,
                    f"send {big['sendEdoc']['seconds']:.1f} s, get {big['getEdoc']['seconds']:.1f} s, "
                    f"{'identical' if big.get('identical') else 'NOT identical'}",
                    "accepted, fetched, same bytes",
                    bool(big["ok"]),
                )
                add(
                    f"large: {big['label']} memory growth",
                    db,
                    f"{big['growth_x_packet']:.1f}× packet ({max(big['sendEdoc']['growth_mb'], big['getEdoc']['growth_mb']):.0f} MB)",
                    f"≤ {LARGE_GROWTH_X:g}× packet",
                    big["growth_x_packet"] <= LARGE_GROWTH_X,
                )
                add(
                    "large: no timeout",
                    db,
                    "none" if not any(p["timeout"] for p in large["packets"]) else "timed out",
                    "none",
                    not any(p["timeout"] for p in large["packets"]),
                )
    for key, name in (("verify", "verify"), ("wss_verify", "wss-verify")):
        verify = results.get(key)
        if verify is None:
            continue
        for label, v in verify["packets"].items():
            add(
                f"{name} {label}: gateway vs bare xmlsec",
                None,
                f"{v['ratio']:.2f}× ({v['us']['gateway']:.0f} µs vs {v['us']['bare']:.0f} µs)",
                f"≤ {VERIFY_RATIO}×",
                v["ratio"] <= VERIFY_RATIO,
            )
    return out


# --- the table ---------------------------------------------------------------------------------------------


def print_report(results: dict[str, Any], console: Console) -> None:
    meta = results["meta"]
    console.print(
        f"\n[bold]lienthong benchmark[/bold] {meta['started']} · {meta['cpus']} CPUs · "
        f"gateway {meta['workers']} workers × {meta['threads']} threads"
        f"{' (pinned, the floor and the raw bound too)' if meta.get('pin_workers') else ''} · "
        f"{meta['clients']} clients · "
        f"{meta['duration']:g} s per scenario · packets {meta['packet_bytes']:.0f} B to 3 recipients · "
        f"load average before {meta['load_before']}"
    )
    for db, r in results.get("databases", {}).items():
        _database_table(db, r, meta, console)
    if "verify" in results:
        _verify_table(results["verify"], console)
    if "wss_verify" in results:
        _verify_table(results["wss_verify"], console, wss=True)
    for prof in results.get("profile", {}).values():
        print_profile(prof, console)
    _targets_table(results.get("targets", []), console)


def _database_table(db: str, r: dict[str, Any], meta: dict[str, Any], console: Console) -> None:
    label = f"{DB_LABEL.get(db, db)} ({r.get('version', '')})"
    if "skipped" in r:
        console.print(f"\n[bold]{label}[/bold]: skipped — {r['skipped']}")
        return
    t = Table(title=f"{label} — throughput, latency, memory, CPU", title_justify="left")
    for col, just in (
        ("scenario", "left"),
        ("accepted/s", "right"),
        ("delivered/s", "right"),
        ("requests/s", "right"),
        ("p50 ms", "right"),
        ("p95 ms", "right"),
        ("p99 ms", "right"),
        ("errors", "right"),
        ("peak RSS MB", "right"),
        ("CPU ms/packet", "right"),
    ):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    bounds = [
        (text, r[key])
        for key, text in (
            ("raw_bound", "raw bound"),
            ("raw_bound_x509", "raw bound + request verify"),
        )
        if r.get(key) is not None
    ]
    for text, bound in bounds:
        t.add_row(f"{text} ({bound['processes']} processes)", _fmt(bound["packets_per_s"]), *[""] * 8)
    for name in ("send", "floor", "send-x509", "receive", "mixed"):
        s = r.get(name)
        if s is None:
            continue
        lat = s["latency"]["sendEdoc"] if name in ("send", "floor", "send-x509") else s["latency"]["all"]
        who = (
            f"{s['senders']}s+{s['receivers']}r" if name == "mixed" else f"{s['senders'] or s['receivers']}c"
        )
        t.add_row(
            f"{name} ({who})",
            _fmt(s["accepted_per_s"]) if s["accepted"] else "",
            _fmt(s["delivered_per_s"]) if s["delivered"] else "",
            _fmt(s["requests_per_s"]),
            _fmt(lat.get("p50_ms")),
            _fmt(lat.get("p95_ms")),
            _fmt(lat.get("p99_ms")),
            str(s["errors"]),
            _fmt(s["peak_rss_mb"], 0),
            _fmt(s["cpu_ms_per_packet"], 2),
            style="red" if s["errors"] else None,
        )
    for name, key, text in (
        ("send", "raw_bound", "raw bound"),
        ("send-x509", "raw_bound_x509", "raw bound + request verify"),
    ):
        bound = r.get(key)
        if bound is not None and r.get(name):
            ratio = (
                r[name]["accepted_per_s"] / bound["packets_per_s"] if bound["packets_per_s"] else float("nan")
            )
            t.add_row(f"[bold]{name} / {text} = {ratio:.2f}[/bold] (target ≥ {SEND_BOUND_RATIO})", *[""] * 9)
    floor, bound = r.get("floor"), r.get("raw_bound")
    if floor is not None and bound is not None and bound["packets_per_s"] and floor["accepted_per_s"]:
        t.add_row(
            f"[bold]floor / raw bound = {floor['accepted_per_s'] / bound['packets_per_s']:.2f}[/bold] "
            "(HTTP + server)",
            *[""] * 9,
        )
        if r.get("send"):
            t.add_row(
                f"[bold]send / floor = {r['send']['accepted_per_s'] / floor['accepted_per_s']:.2f}[/bold] "
                "(the gateway's work)",
                *[""] * 9,
            )
    x509 = r.get("send-x509")
    if x509 is not None and x509.get("vs_send") is not None:
        t.add_row(f"[bold]send-x509 / send = {x509['vs_send']:.2f}[/bold] (X.509 ÷ UsernameToken)", *[""] * 9)
    console.print()
    console.print(t)
    for text, bound in bounds:
        steps = ", ".join(f"{k} {v:.0f}" for k, v in bound["us_per_packet"].items())
        console.print(f"  {text}, wall µs per packet in each step (per process): {steps}")
    _latency_table(db, r, console)
    large = r.get("large")
    if large is not None:
        _large_table(db, large, console)
    if x509 is not None and x509.get("signing"):
        sg = x509["signing"]
        console.print(
            f"  send-x509: requests of system {sg['system']} ({x509.get('request_bytes', 0):.0f} bytes each, "
            f"UsernameToken ones {(r.get('send') or {}).get('request_bytes', 0):.0f}), signed with a "
            f"{sg['lifetime_s'] / 60:g}-minute lifetime before the scenario ({sg['requests']} prepared)"
        )
    notes = [
        f"{name}: {n}"
        for name in ("send", "floor", "send-x509", "receive", "mixed", "large")
        for n in (r.get(name) or {}).get("notes", [])
    ]
    for name in ("send", "floor", "send-x509", "receive", "mixed", "large"):
        for sample in (r.get(name) or {}).get("error_samples", []):
            notes.append(f"[red]{name} error: {sample}[/red]")
        for entry in (r.get(name) or {}).get("packets", []):
            for op in ("sendEdoc", "getEdoc"):
                if entry[op]["fault"]:
                    notes.append(f"[red]large {entry['label']} {op}: {entry[op]['fault']}[/red]")
    for n in notes:
        console.print(f"  note — {n}")


def _latency_table(db: str, r: dict[str, Any], console: Console) -> None:
    t = Table(title=f"{DB_LABEL.get(db, db)} — latency per operation (ms)", title_justify="left")
    for col in ("scenario", "operation", "count", "p50", "p95", "p99", "max"):
        t.add_column(col, justify="left" if col in ("scenario", "operation") else "right")
    for name in ("send", "floor", "send-x509", "receive", "mixed"):
        s = r.get(name)
        if s is None:
            continue
        for op, lat in s["latency"].items():
            if op == "all" or not lat.get("count"):
                continue
            t.add_row(
                name,
                op,
                _fmt(lat["count"]),
                _fmt(lat["p50_ms"]),
                _fmt(lat["p95_ms"]),
                _fmt(lat["p99_ms"]),
                _fmt(lat["max_ms"]),
            )
    console.print(t)


def _large_table(db: str, large: dict[str, Any], console: Console) -> None:
    t = Table(
        title=f"{DB_LABEL.get(db, db)} — large packets (baseline RSS {large['baseline_rss_mb']:.0f} MB)",
        title_justify="left",
    )
    for col in (
        "packet",
        "bytes",
        "sendEdoc s",
        "getEdoc s",
        "growth in send MB",
        "growth in get MB",
        "peak growth × packet",
        "same bytes back",
        "timeout",
    ):
        t.add_column(col, justify="left" if col == "packet" else "right")
    for p in large["packets"]:
        t.add_row(
            p["label"],
            _fmt(p["size"]),
            _fmt(p["sendEdoc"]["seconds"], 2),
            _fmt(p["getEdoc"]["seconds"], 2),
            _fmt(p["sendEdoc"]["growth_mb"], 0),
            _fmt(p["getEdoc"]["growth_mb"], 0),
            _fmt(p["growth_x_packet"], 2),
            "yes" if p.get("identical") else "[red]no[/red]",
            "[red]yes[/red]" if p["timeout"] else "no",
        )
    console.print(t)


def _verify_table(verify: dict[str, Any], console: Console, *, wss: bool = False) -> None:
    what = "WS-Security verification per signed request" if wss else "Seal verification per packet"
    t = Table(
        title=f"{what}, in-process (median of {verify['rounds']} rounds, µs)",
        title_justify="left",
    )
    for col in (
        "request" if wss else "packet",
        "bytes",
        "gateway (parse_xml + verify_envelope)" if wss else "gateway (parse_xml + verify_seal)",
        "bare xmlsec",
        "gateway / bare",
        "bare, key cached",
        "gateway / bare key cached",
    ):
        t.add_column(col, justify="left" if col in ("packet", "request") else "right")
    for label, v in verify["packets"].items():
        t.add_row(
            label,
            _fmt(v["size"]),
            _fmt(v["us"]["gateway"], 0),
            _fmt(v["us"]["bare"], 0),
            f"{v['ratio']:.2f}× ({'met' if v['ratio'] <= VERIFY_RATIO else 'NOT met'} ≤ {VERIFY_RATIO})",
            _fmt(v["us"]["bare_key_cached"], 0),
            f"{v['ratio_key_cached']:.2f}×",
        )
    console.print()
    console.print(t)


def print_profile(prof: dict[str, Any], console: Console) -> None:
    t = Table(
        title=(
            f"Profile: sendEdoc ({prof.get('auth', 'username-token')}) in-process on "
            f"{DB_LABEL.get(prof['database'], prof['database'])}, "
            f"{prof['packets']} packets, one thread — {prof['wall_us_per_packet']:.0f} µs per packet "
            f"({1e6 / prof['wall_us_per_packet']:.0f} packets/s in one process)"
        ),
        title_justify="left",
    )
    t.add_column("where the time goes", justify="left")
    t.add_column("µs / packet", justify="right")
    t.add_column("share", justify="right")
    for row in prof["breakdown"]:
        t.add_row(row["category"], f"{row['us_per_packet']:.0f}", f"{row['share'] * 100:.1f} %")
    console.print()
    console.print(t)
    top = Table(
        title="cProfile: top functions by own time (µs per packet, cProfile overhead included)",
        title_justify="left",
    )
    for col in ("function", "where", "calls/packet", "own µs", "cum µs"):
        top.add_column(col, justify="left" if col in ("function", "where") else "right")
    for row in prof["top_functions"][:15]:
        top.add_row(
            row["function"][:48],
            row["where"][-60:],
            f"{row['calls_per_packet']:.1f}",
            f"{row['tottime_us_per_packet']:.0f}",
            f"{row['cumtime_us_per_packet']:.0f}",
        )
    console.print(top)
    if prof.get("cache"):
        c = Table(
            title=(
                "Warm and cold caches: CPU per sendEdoc in process, counting only the request's own time — back "
                "to back, and with what a server's CPU does between two requests over HTTP put between them"
            ),
            title_justify="left",
        )
        c.add_column("between two requests", justify="left")
        c.add_column("requests", justify="right")
        c.add_column("CPU µs / request", justify="right")
        c.add_column("× back to back", justify="right")
        for row in prof["cache"]:
            c.add_row(
                row["mode"],
                str(row["requests"]),
                f"{row['cpu_us_per_request']:.0f}",
                f"{row['vs_back_to_back']:.2f}",
            )
        console.print(c)
    memory = prof.get("memory")
    if memory:
        m = Table(
            title=(
                f"Memory: one {memory['size'] / 1e6:.0f} MB packet, sendEdoc then getEdoc in-process — peak RSS "
                f"growth over the baseline ({memory['baseline_rss_mb']:.0f} MB) while each step ran, sampled "
                f"every 5 ms from another process"
            ),
            title_justify="left",
        )
        m.add_column("operation", justify="left")
        m.add_column("step running at the peak", justify="left")
        m.add_column("peak growth MB", justify="right")
        m.add_column("× packet", justify="right")
        for row in memory["steps"]:
            m.add_row(
                row.get("operation", ""),
                row["step"],
                f"{row['peak_growth_mb']:.0f}",
                f"{row['peak_growth_x_packet']:.2f}",
            )
        console.print(m)


def _targets_table(rows: list[dict[str, Any]], console: Console) -> None:
    if not rows:
        return
    t = Table(title="Targets", title_justify="left")
    for col in ("target", "database", "measured", "required", ""):
        t.add_column(col, justify="left")
    for row in rows:
        t.add_row(
            row["target"],
            DB_LABEL.get(row["database"], row["database"] or "–"),
            row["figure"],
            row["required"],
            _mark(row["met"]),
        )
    console.print()
    console.print(t)


# --- JSON --------------------------------------------------------------------------------------------------


def write_json(results: dict[str, Any], out_dir: Path, stamp: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, ensure_ascii=False, default=str)
    path = out_dir / f"bench-{stamp}.json"
    path.write_text(text, encoding="utf-8")
    latest = out_dir / "latest.json"
    latest.write_text(text, encoding="utf-8")
    return path, latest


# --- the chart ---------------------------------------------------------------------------------------------


def write_chart(results: dict[str, Any], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    dbs = [db for db, r in results.get("databases", {}).items() if "skipped" not in r]
    if not dbs and "verify" not in results and "wss_verify" not in results:
        return None
    colors = {"sqlite": "#4C72B0", "postgres": "#DD8452"}
    fig, axes = plt.subplots(2, 2, figsize=(15, 10.5))
    meta = results["meta"]
    fig.suptitle(
        f"lienthong benchmark — {meta['started']} — {meta['workers']} workers × {meta['threads']} threads"
        f"{' (pinned)' if meta.get('pin_workers') else ''}, "
        f"{meta['clients']} clients, {meta['duration']:g} s per scenario, {meta['cpus']} CPUs",
        fontsize=13,
    )

    # (1) throughput beside the raw bound
    ax = axes[0][0]
    bars = [
        ("raw bound", lambda r: (r.get("raw_bound") or {}).get("packets_per_s")),
        ("send\naccepted", lambda r: (r.get("send") or {}).get("accepted_per_s")),
        ("HTTP floor\n(bound's work\nover HTTP)", lambda r: (r.get("floor") or {}).get("accepted_per_s")),
        ("raw bound\n+ request\nverify", lambda r: (r.get("raw_bound_x509") or {}).get("packets_per_s")),
        ("send-x509\naccepted", lambda r: (r.get("send-x509") or {}).get("accepted_per_s")),
        ("receive\ndelivered", lambda r: (r.get("receive") or {}).get("delivered_per_s")),
        ("mixed\naccepted", lambda r: (r.get("mixed") or {}).get("accepted_per_s")),
        ("mixed\ndelivered", lambda r: (r.get("mixed") or {}).get("delivered_per_s")),
    ]
    width = 0.8 / max(1, len(dbs))
    for j, db in enumerate(dbs):
        r = results["databases"][db]
        xs, ys = [], []
        for i, (_name, get) in enumerate(bars):
            v = get(r)
            if v is not None:
                xs.append(i + (j - (len(dbs) - 1) / 2) * width)
                ys.append(v)
        rects = ax.bar(xs, ys, width, label=DB_LABEL.get(db, db), color=colors.get(db))
        ax.bar_label(rects, fmt="%.0f", fontsize=9)
        for key, style, what in (("raw_bound", "--", "send"), ("raw_bound_x509", ":", "send-x509")):
            bound = (r.get(key) or {}).get("packets_per_s")
            if bound:
                ax.axhline(
                    bound * SEND_BOUND_RATIO, color=colors.get(db), linestyle=style, linewidth=1,
                    label=f"{DB_LABEL.get(db, db)}: target for {what} ({SEND_BOUND_RATIO}× its raw bound)",
                )  # fmt: skip
        x509 = r.get("send-x509") or {}
        if x509.get("vs_send") is not None:
            ax.annotate(
                f"send-x509 ÷ send\n= {x509['vs_send']:.2f}×",
                (4 + (j - (len(dbs) - 1) / 2) * width, x509["accepted_per_s"]),
                xytext=(0, 26), textcoords="offset points", ha="center", fontsize=8, color=colors.get(db),
                bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
                zorder=5,
            )  # fmt: skip
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
    ax.set_ylabel("packets per second")
    ax.set_title("Throughput per scenario beside its raw bound")
    if dbs:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)

    # (2) latency percentiles per scenario
    ax = axes[0][1]
    groups: list[tuple[str, str, dict[str, Any]]] = []
    for db in dbs:
        r = results["databases"][db]
        for name, op in (
            ("send", "sendEdoc"),
            ("floor", "sendEdoc"),
            ("send-x509", "sendEdoc"),
            ("receive", "getReceivedEdocList"),
            ("receive", "getEdoc"),
            ("receive", "updateStatus"),
            ("mixed", "sendEdoc"),
            ("mixed", "getEdoc"),
        ):
            lat = ((r.get(name) or {}).get("latency") or {}).get(op)
            if lat and lat.get("count"):
                short = {
                    "getReceivedEdocList": "list",
                    "updateStatus": "done",
                    "sendEdoc": "send",
                    "getEdoc": "get",
                }[op]
                groups.append((db, f"{name}\n{short}", lat))
    if groups:
        labels = [f"{g[1]}\n{ {'sqlite': 'SQLite', 'postgres': 'PG'}.get(g[0], g[0]) }" for g in groups]
        for k, (q, shade) in enumerate((("p50_ms", 0.45), ("p95_ms", 0.7), ("p99_ms", 1.0))):
            xs = [i + (k - 1) * 0.27 for i in range(len(groups))]
            ys = [max(g[2][q], 0.1) for g in groups]
            ax.bar(
                xs,
                ys,
                0.27,
                label=q.split("_")[0],
                color=[colors.get(g[0], "grey") for g in groups],
                alpha=shade,
            )
        ax.set_xticks(range(len(groups)), labels, fontsize=8)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: f"{v:g}"))
        ax.yaxis.set_major_locator(
            matplotlib.ticker.FixedLocator([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000])
        )
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_ylim(top=max(g[2]["p99_ms"] for g in groups) * 4)
        ax.axhline(
            SEND_P99_MS,
            color="red",
            linestyle=":",
            linewidth=1.2,
            label=f"send p99 target {SEND_P99_MS:g} ms",
        )
        ax.legend(title="bars: p50 / p95 / p99 (light → dark)", fontsize=9, ncol=2, loc="upper left")
    ax.set_ylabel("milliseconds (log scale)")
    ax.set_title("Latency percentiles per scenario and operation")
    ax.grid(axis="y", alpha=0.3, which="both")

    # (3) verification (seal; WS-Security of a signed request): gateway vs bare, as a ratio to the bare
    # verify (the target's terms)
    ax = axes[1][0]
    groups3 = [
        (f"seal: {lbl} packet\n({v['size']:,} B)", v)
        for lbl, v in (results.get("verify") or {}).get("packets", {}).items()
    ] + [
        (f"WS-Security: {lbl}\nrequest ({v['size']:,} B)", v)
        for lbl, v in (results.get("wss_verify") or {}).get("packets", {}).items()
    ]
    if groups3:
        for k, (name, color, text) in enumerate(
            (
                ("gateway", "#55A868", "gateway: parse_xml + verify_seal / verify_envelope"),
                ("bare", "#8172B3", "bare xmlsec (key read from the certificate)"),
                ("bare_key_cached", "#CCB974", "bare xmlsec, key cached"),
            )
        ):
            xs = [i + (k - 1) * 0.27 for i in range(len(groups3))]
            ys = [v["us"][name] / v["us"]["bare"] for _lbl, v in groups3]
            rects = ax.bar(xs, ys, 0.27, label=text, color=color)
            ax.bar_label(
                rects,
                labels=[
                    f"{y:.2f}×\n{v['us'][name]:.0f} µs" for y, (_lbl, v) in zip(ys, groups3, strict=True)
                ],
                fontsize=8,
            )
        ax.axhline(
            VERIFY_RATIO,
            color="red",
            linestyle=":",
            linewidth=1.2,
            label=f"target: gateway ≤ {VERIFY_RATIO}× bare",
        )
        ax.set_xticks(range(len(groups3)), [lbl for lbl, _v in groups3], fontsize=8)
        top = max(VERIFY_RATIO, *(v["ratio"] for _lbl, v in groups3))
        ax.set_ylim(0, top * 1.45)
        ax.legend(fontsize=8, loc="upper left")
    ax.set_ylabel("time per packet or request ÷ bare xmlsec verify")
    ax.set_title(
        f"Seal and WS-Security verification, in-process (median of rounds; target ≤ {VERIFY_RATIO}× bare)"
    )
    ax.grid(axis="y", alpha=0.3)

    # (4) large packets: memory growth as a multiple of the packet
    ax = axes[1][1]
    entries = []
    for db in dbs:
        for p in (results["databases"][db].get("large") or {}).get("packets", []):
            entries.append((db, p))
    if entries:
        xs = range(len(entries))
        rects = ax.bar(
            xs,
            [p["growth_x_packet"] for _db, p in entries],
            0.6,
            color=[colors.get(db) for db, _p in entries],
        )
        ax.bar_label(
            rects,
            labels=[
                f"{p['growth_x_packet']:.1f}×\nsend {p['sendEdoc']['seconds']:.1f} s\nget {p['getEdoc']['seconds']:.1f} s"
                for _db, p in entries
            ],
            fontsize=8,
        )
        ax.axhline(
            LARGE_GROWTH_X,
            color="red",
            linestyle=":",
            linewidth=1.2,
            label=f"target ≤ {LARGE_GROWTH_X:g}× packet",
        )
        ax.set_xticks(list(xs), [f"{p['label']}\n{DB_LABEL.get(db, db)}" for db, p in entries])
        ax.set_ylim(0, max([LARGE_GROWTH_X * 1.3] + [p["growth_x_packet"] * 1.35 for _db, p in entries]))
        ax.legend(fontsize=9)
    ax.set_ylabel("peak RSS growth of the gateway ÷ packet size")
    ax.set_title("Large packets: gateway memory growth (sendEdoc + getEdoc)")
    ax.grid(axis="y", alpha=0.3)

    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
