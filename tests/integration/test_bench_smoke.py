"""The benchmark still runs end to end (a short smoke run: its figures are not judged here, only that it
measures, writes its JSON and chart, and sees no errors), the HTTP floor included."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def _bench(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m bench ARGS --out TMP_PATH`` from the repository root; it must exit 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_bench_quick_smoke_run(tmp_path):
    scenarios = ("send", "floor", "verify", "wss-verify")
    proc = _bench(
        tmp_path, "--quick", "--database", "sqlite", *(a for s in scenarios for a in ("--scenario", s))
    )
    report = json.loads((tmp_path / "latest.json").read_text())
    send = report["databases"]["sqlite"]["send"]
    assert send["accepted"] > 0 and send["errors"] == 0
    assert report["databases"]["sqlite"]["raw_bound"]["packets_per_s"] > 0
    # the HTTP floor: the bound's work served by the same gunicorn, each answer a stored packet
    floor = report["databases"]["sqlite"]["floor"]
    assert floor["accepted"] > 0 and floor["errors"] == 0
    informational = {t["target"] for t in report["targets"] if t["met"] is None}
    assert "send vs HTTP floor (for information)" in informational
    assert "HTTP floor" in proc.stdout
    assert (tmp_path / "latest.png").stat().st_size > 10_000
    assert "raw bound" in proc.stdout


def test_bench_profile_quick_run(tmp_path):
    """``--profile``: the in-process breakdown, the cProfile table and the warm/cold cache pass, each
    request counted once (every profiled packet is accepted: a refused one fails the run)."""
    proc = _bench(tmp_path, "--profile", "--quick", "--database", "sqlite")
    prof = json.loads((tmp_path / "profile-latest.json").read_text())["profile"]["sqlite"]
    assert prof["packets"] == 100 and prof["wall_us_per_packet"] > 0
    assert abs(sum(row["share"] for row in prof["breakdown"]) - 1.0) < 1e-6
    assert (tmp_path / "profile-sqlite.pstats").stat().st_size > 0
    modes = [row["mode"] for row in prof["cache"]]
    assert len(modes) == 3 and modes[0].startswith("back to back")
    assert all(row["requests"] == 100 and row["cpu_us_per_request"] > 0 for row in prof["cache"])
    assert prof["cache"][0]["vs_back_to_back"] == 1.0
    assert "Warm and cold caches" in proc.stdout
    assert prof["memory"]["steps"]


def test_bench_pinned_floor_quick_run(tmp_path):
    """``--pin-workers``: the raw bound's processes and the floor's workers run pinned, as the gateway's."""
    proc = _bench(tmp_path, "--quick", "--database", "sqlite", "--scenario", "floor", "--pin-workers")
    report = json.loads((tmp_path / "latest.json").read_text())
    assert report["meta"]["pin_workers"] is True
    sqlite = report["databases"]["sqlite"]
    assert sqlite["raw_bound"]["pinned"] is True and sqlite["raw_bound"]["packets_per_s"] > 0
    assert sqlite["floor"]["accepted"] > 0 and sqlite["floor"]["errors"] == 0
    assert "(pinned, the floor and the raw bound too)" in proc.stdout
