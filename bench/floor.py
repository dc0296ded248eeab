"""The HTTP floor: the raw bound's work served over HTTP, to show what HTTP and a Python server cost.

The raw bound (:mod:`bench.rawbound`) has no HTTP at all; the gateway has all of it. Between the two, this
is the least a SOAP server in Python can do per ``sendEdoc`` on this machine: the same gunicorn (the
settings of ``lienthong serve``: gthread workers, the same workers and threads, keep-alive), the same load
generator posting the same UsernameToken requests, and a WSGI app that does only

1. read the body and parse the envelope (the gateway's hardened parser), take the packet out of the Body
   (base64);
2. the bound's steps for that packet (:class:`bench.rawbound.PacketWork`: parse, schema, seal verify, one
   durable commit of the packet and its deliveries);
3. answer a fixed ``sendEdocResponse`` with the new docId (no signature).

No authentication, no routing rules, no receipts, audit chain or events, no answer signature, and no cap on
how many of a worker's threads compute at once. The report gives the floor as a ratio of the raw bound
(what HTTP and the server take away) and the gateway's ``send`` as a ratio of the floor (what the
gateway's own work takes away). It is measured, not a target.

Run by the benchmark (scenario ``floor``) as ``python -m bench.floor --fd N …`` on a socket it bound.
"""

from __future__ import annotations

import argparse
import base64
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lxml import etree

from bench.rawbound import SOAP, TNS, PacketWork
from gateway.core.xmlparse import make_small_parser
from gateway.launcher import GatewayProcess
from gateway.server import EmbeddedServer, fix_mmap_threshold, gunicorn_options, pin_options

ROOT = Path(__file__).resolve().parent.parent
_PACKET = f"{{{SOAP}}}Body/{{{TNS}}}sendEdoc/{{{TNS}}}packet"


class FloorApp:
    """The WSGI app (one per worker process). Each thread has its own :class:`PacketWork` (its own database
    connection and parser), made on its first request, from that request's packet."""

    def __init__(self, kind: str, direct: str) -> None:
        self.kind = kind
        self.direct = direct
        self._local = threading.local()

    def _work(self, first_packet: bytes) -> PacketWork:
        work = getattr(self._local, "work", None)
        if work is None:
            work = self._local.work = PacketWork(self.kind, self.direct, first_packet)
        return work

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return self._answer(start_response, "200 OK", b"the benchmark's HTTP floor\n", "text/plain")
        try:
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            parser = getattr(self._local, "parser", None)
            if parser is None:
                parser = self._local.parser = make_small_parser()
            envelope = etree.fromstring(body, parser)
            data = base64.b64decode(envelope.findtext(_PACKET) or "")
            *_steps, doc_id = self._work(data)(data)
        except Exception as exc:  # noqa: BLE001 - the client counts it as an error, with this text
            return self._answer(
                start_response,
                "500 Internal Server Error",
                f"{type(exc).__name__}: {exc}".encode(),
                "text/plain",
            )
        answer = (
            f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{SOAP}"><soapenv:Body>'
            f'<tns:sendEdocResponse xmlns:tns="{TNS}"><tns:docId>{doc_id}</tns:docId>'
            "<tns:duplicate>false</tns:duplicate></tns:sendEdocResponse></soapenv:Body></soapenv:Envelope>"
        ).encode()
        return self._answer(start_response, "200 OK", answer, "text/xml; charset=utf-8")

    @staticmethod
    def _answer(start_response: Callable[..., Any], status: str, body: bytes, ctype: str) -> list[bytes]:
        start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]


class FloorServer(EmbeddedServer):
    """gunicorn with ``lienthong serve``'s settings, serving :class:`FloorApp`."""

    def __init__(self, app: FloorApp, options: dict[str, Any]) -> None:
        self.floor_app = app
        super().__init__(options)

    def load(self) -> FloorApp:
        return self.floor_app


class FloorProcess(GatewayProcess):
    """The floor's server in a child process on a free local port (started and stopped as a gateway is)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        kind: str,
        direct: str,
        workers: int,
        threads: int,
        log_path: Path,
        pin_workers: bool = False,
    ) -> None:
        super().__init__(
            data_dir,
            workers=workers,
            threads=threads,
            env={"PYTHONPATH": str(ROOT)},
            log_path=log_path,
            pin_workers=pin_workers,
        )
        self.kind = kind
        self.direct = direct

    def command(self, fd: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bench.floor",
            "--fd",
            str(fd),
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--kind",
            self.kind,
            "--direct",
            self.direct,
            *(["--pin-workers"] if self.pin_workers else []),
        ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="the benchmark's HTTP floor (started by python -m bench)")
    ap.add_argument("--fd", type=int, required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--kind", choices=("sqlite", "postgres"), required=True)
    ap.add_argument("--direct", required=True, help="the SQLite file or the PostgreSQL conninfo")
    ap.add_argument(
        "--pin-workers", action="store_true", help="each worker on a CPU of its own, as the gateway's"
    )
    args = ap.parse_args(argv)
    options = gunicorn_options(log_level="WARNING", fd=args.fd, workers=args.workers, threads=args.threads)
    if args.pin_workers:
        options.update(pin_options())
    options["proc_name"] = "lienthong-bench-floor"
    fix_mmap_threshold()  # as lienthong serve does
    FloorServer(FloorApp(args.kind, args.direct), options).run()


if __name__ == "__main__":
    main()
