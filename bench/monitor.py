"""Memory and CPU of the gateway's processes (the gunicorn master and its workers), with psutil.

A thread samples the summed RSS of the process tree every 50 ms and keeps the peak since the last
:meth:`ProcessTreeMonitor.mark`; CPU time (user + system) is read on demand, so a scenario takes the
difference over its timed phase.
"""

from __future__ import annotations

import threading
import time

import psutil


class ProcessTreeMonitor:
    def __init__(self, root_pid: int, interval: float = 0.05) -> None:
        self.root = psutil.Process(root_pid)
        self.interval = interval
        self._known: dict[int, psutil.Process] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._peak = 0
        self._samples = 0
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def processes(self) -> list[psutil.Process]:
        try:
            found = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        current = {}
        for proc in found:
            current[proc.pid] = self._known.get(proc.pid, proc)
        self._known = current
        return list(current.values())

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.processes() if p.pid != self.root.pid]

    def rss(self) -> int:
        total = 0
        for proc in self.processes():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.processes():
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def threads_per_worker(self) -> list[int]:
        out = []
        for proc in self.processes():
            if proc.pid == self.root.pid:
                continue
            try:
                out.append(proc.num_threads())
            except psutil.Error:
                pass
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self.rss()
            with self._lock:
                self._samples += 1
                if value > self._peak:
                    self._peak = value
            self._stop.wait(self.interval)

    def start(self) -> ProcessTreeMonitor:
        self._peak = self.rss()
        self._thread.start()
        return self

    def mark(self) -> int:
        """Reset the peak to the current RSS; returns it (the baseline of what follows)."""
        value = self.rss()
        with self._lock:
            self._peak = value
        return value

    @property
    def peak(self) -> int:
        with self._lock:
            return max(self._peak, 0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def __enter__(self) -> ProcessTreeMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_quiet(monitor: ProcessTreeMonitor, *, limit: float = 3.0) -> None:
    """Give the gateway a moment to settle (no CPU use) before a baseline is taken; bounded."""
    deadline = time.monotonic() + limit
    last = monitor.cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = monitor.cpu_seconds()
        if now - last < 0.01:
            return
        last = now
