"""``lienthong serve --pin-workers``: each worker on a CPU of its own, a replacement worker on the CPU the
dead one held; without the option the workers may run anywhere."""

from __future__ import annotations

import os
import signal
import time
import urllib.request

import pytest

from gateway.launcher import GatewayProcess

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux CPU affinity and at least 2 CPUs",
)


def _workers(master: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == master:
                found.add(int(entry))
    return found


def _wait_workers(master: int, count: int, without: set[int] = frozenset()) -> set[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = _workers(master) - set(without)
        if len(pids) >= count:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"gunicorn did not have {count} new workers within 30 s")


def _cpus(pid: int) -> frozenset[int]:
    return frozenset(os.sched_getaffinity(pid))


def _answers(gw: GatewayProcess) -> bool:
    with urllib.request.urlopen(gw.url + "?wsdl", timeout=10) as resp:
        return resp.status == 200


def test_pinned_workers_run_on_a_cpu_each_and_a_replacement_takes_the_dead_ones(tmp_path):
    with GatewayProcess(tmp_path, workers=2, pin_workers=True) as gw:
        master = gw.proc.pid
        first, second = sorted(_wait_workers(master, 2))
        time.sleep(0.5)  # each worker sets its affinity right after the fork
        assert len(_cpus(first)) == 1 and len(_cpus(second)) == 1
        assert _cpus(first) != _cpus(second)
        freed = _cpus(first)
        os.kill(first, signal.SIGKILL)
        (replacement,) = _wait_workers(master, 1, without={first, second})
        time.sleep(0.5)
        assert _cpus(replacement) == freed
        assert _cpus(second) != freed
        assert _answers(gw)


def test_without_the_option_the_workers_may_run_on_every_cpu(tmp_path):
    allowed = frozenset(os.sched_getaffinity(0))
    with GatewayProcess(tmp_path, workers=2) as gw:
        workers = _wait_workers(gw.proc.pid, 2)
        assert all(_cpus(pid) == allowed for pid in workers)
        assert _answers(gw)
