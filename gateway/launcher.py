"""Starting a real gateway (``lienthong serve``, gunicorn) in a child process on a free local port.

Used by ``lienthong demo``, the integration tests and the benchmark: the parent binds the listening
socket itself (port 0, so the kernel picks a free port; no race) and hands it to gunicorn.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path


class GatewayProcess:
    """``with GatewayProcess(data_dir) as gw: gw.url`` — a gateway serving until the block ends."""

    def __init__(
        self,
        data_dir: Path,
        *,
        database_url: str | None = None,
        workers: int = 2,
        threads: int = 4,
        env: Mapping[str, str] | None = None,
        tls: tuple[Path, Path] | None = None,
        client_ca: Path | None = None,
        ca_file: Path | None = None,
        log_path: Path | None = None,
        startup_timeout: float = 30.0,
        pin_workers: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.database_url = database_url
        self.workers = workers
        self.threads = threads
        self.tls = tls
        self.client_ca = client_ca
        #: the CA that signed the TLS certificate (to check it during start-up), and a client
        #: certificate to present when client certificates are required
        self.ca_file = ca_file
        self.client_cert: tuple[Path, Path] | None = None
        self.extra_env = dict(env or {})
        self.log_path = log_path or self.data_dir / "gateway.log"
        self.startup_timeout = startup_timeout
        self.pin_workers = pin_workers
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/"

    def start(self) -> GatewayProcess:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        fd = self.sock.fileno()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
        env.update(self.extra_env)
        env["LIENTHONG_HOME"] = str(self.data_dir)
        if self.database_url:
            env["LIENTHONG_DATABASE_URL"] = self.database_url
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(fd),
            pass_fds=(fd,),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._wait_ready()
        return self

    def command(self, fd: int) -> list[str]:
        """The server's command line, serving on the inherited socket ``fd``."""
        return [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--fd",
            str(fd),
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            *(["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])] if self.tls else []),
            *(["--client-ca", str(self.client_ca)] if self.client_ca else []),
            *(["--pin-workers"] if self.pin_workers else []),
        ]

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited during start-up; log:\n{self.log_tail()}")
            try:
                url = self.url + "?wsdl"  # always http(s)://127.0.0.1
                with urllib.request.urlopen(url, timeout=5, context=self._ssl_context()) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"the gateway did not answer within {self.startup_timeout}s; log:\n{self.log_tail()}"
        )

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.client_cert:
            context.load_cert_chain(str(self.client_cert[0]), str(self.client_cert[1]))
        return context

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
