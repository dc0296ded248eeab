"""Serving the gateway with gunicorn (the production WSGI server), embedded so ``lienthong serve`` needs
no separate configuration file.

Each worker process builds its own app (its own database pool) after the fork. ``fd`` lets a parent that
already bound the listening socket (``lienthong demo``, the tests, the benchmark) hand it over, so there
is no race for a free port.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import ssl
from typing import Any

from gunicorn.app.base import BaseApplication

from gateway.config import Config

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"

#: glibc's ``mallopt`` parameter number for the mmap threshold (malloc.h)
_M_MMAP_THRESHOLD = -3
#: blocks of this size or more get pages of their own, returned to the system when freed
MMAP_THRESHOLD = 1024 * 1024


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Give every allocation of ``threshold`` bytes or more its own pages (glibc), for good.

    glibc starts at 128 KiB and raises the threshold to the size of each mapped block freed, up to 32 MiB:
    after one large packet, blocks of up to 32 MiB (a packet's text, its base64, the copies lxml and xmlsec
    make) come from the heap, which keeps them after they are freed, and a worker's memory during the next
    large packet depends on what the previous one left behind. A fixed threshold (``mallopt`` also turns
    the raising off) hands such blocks back on ``free``. Called in the server before the workers fork, so
    they inherit it. False where there is no glibc (another libc, another system): nothing changes."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, threshold) == 1


def configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level, logging.INFO), format=LOG_FORMAT)
    # spyne logs every fault again at ERROR; ours are logged once, with their correlation id.
    logging.getLogger("spyne").setLevel(logging.WARNING)
    logging.getLogger("spyne.application.client").setLevel(logging.CRITICAL)
    logging.getLogger("spyne.application.server").setLevel(logging.CRITICAL)


class EmbeddedServer(BaseApplication):
    """gunicorn with its settings given as a dict (:func:`gunicorn_options`), no configuration file; a
    subclass's ``load`` makes the WSGI app (in each worker, after the fork)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)


class GatewayServer(EmbeddedServer):
    def __init__(self, config: Config, options: dict[str, Any]) -> None:
        self.gateway_config = config
        super().__init__(options)

    def load(self) -> Any:
        from gateway.soap.app import create_app

        configure_logging(self.gateway_config.log_level)
        return create_app(self.gateway_config)


def serve(
    config: Config,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 2,
    threads: int = 4,
    fd: int | None = None,
    timeout: int = 300,
    access_log: bool = False,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    client_ca: str | None = None,
    pin_workers: bool = False,
) -> None:
    """Run the gateway until SIGTERM/SIGINT (blocks).

    With ``tls_cert``/``tls_key`` it serves HTTPS; with ``client_ca`` too, every client must present a
    certificate issued by that CA (mutual TLS), which the gateway maps to a connected system. With
    ``pin_workers`` each worker runs on a CPU of its own (:func:`pin_options`)."""
    options = gunicorn_options(
        log_level=config.log_level,
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        fd=fd,
        timeout=timeout,
        access_log=access_log,
    )
    if pin_workers:
        if not hasattr(os, "sched_setaffinity"):
            raise ValueError("--pin-workers needs CPU affinity (Linux)")
        options.update(pin_options())
    if tls_cert or tls_key:
        if not (tls_cert and tls_key):
            raise ValueError("--tls-cert and --tls-key go together")
        options.update({"certfile": tls_cert, "keyfile": tls_key})
        if client_ca:
            options.update({"ca_certs": client_ca, "cert_reqs": ssl.CERT_REQUIRED})
    elif client_ca:
        raise ValueError("--client-ca needs --tls-cert and --tls-key")
    fix_mmap_threshold()  # no-op without glibc
    GatewayServer(config, options).run()


#: a gunicorn worker object's attribute (set in the arbiter, before the fork): the CPU it is pinned to
_CPU = "lienthong_cpu"


def pin_options() -> dict[str, Any]:
    """gunicorn hooks that keep each worker on one CPU of those the server may use, round robin, a worker
    that replaces another taking a CPU no live worker holds (with more workers than CPUs, the least used).

    A worker that moves between CPUs finds its caches cold each time (~13 moves per request were counted
    under load). On the 2-CPU benchmark machine with SQLite, `send` A/B: 505 against 414 accepted/s (median
    of 4 rounds, ahead in each; a first scratch A/B 522 against 409), CPU 3.11 against 3.40 ms per packet.
    With PostgreSQL on the same 2 CPUs it is worse: 258 against 296 accepted/s, p99 47 against 33 ms (behind
    in each of 3 rounds) — a pinned worker cannot move away from a busy database process. Hence off by
    default: for a gateway on SQLite, or with its database on another machine."""

    def pre_fork(server: Any, worker: Any) -> None:  # in the arbiter: choose
        cpus = sorted(os.sched_getaffinity(0))
        held = [getattr(w, _CPU, None) for w in server.WORKERS.values()]
        setattr(worker, _CPU, min(cpus, key=lambda c: (held.count(c), c)))

    def post_fork(_server: Any, worker: Any) -> None:  # in the worker: apply
        os.sched_setaffinity(0, {getattr(worker, _CPU)})

    return {"pre_fork": pre_fork, "post_fork": post_fork}


def gunicorn_options(
    *,
    log_level: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 2,
    threads: int = 4,
    fd: int | None = None,
    timeout: int = 300,
    access_log: bool = False,
) -> dict[str, Any]:
    """The gunicorn settings ``lienthong serve`` runs with (the benchmark's HTTP floor runs with the same)."""
    return {
        "bind": [f"fd://{fd}"] if fd is not None else [f"{host}:{port}"],
        "workers": workers,
        # Threads per worker: a slow client holds one thread, not a whole process. On a network where
        # clients are not trusted, put a buffering reverse proxy (nginx) with body timeouts in front.
        "worker_class": "gthread",
        "threads": threads,
        # Large packets (tens of MB) take time to upload on slow links; an idle connection is still cut.
        "timeout": timeout,
        "graceful_timeout": 30,
        "keepalive": 5,
        "limit_request_line": 8190,
        "limit_request_fields": 100,
        "loglevel": log_level.lower(),
        "accesslog": "-" if access_log else None,
        "errorlog": "-",
        "proc_name": "lienthong",
    }
