"""What a benchmark run stands on: test seals, a fresh database per scenario, the directory, and the
production server (``lienthong serve``: gunicorn, N workers) in a child process.

Copied from ``tests/support/world.py`` rather than imported: the benchmark does not depend on test
fixtures (only on :mod:`tests.support.pgserver`, a throwaway PostgreSQL server).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway import pki
from gateway.axis import AgencyInfo, upsert_agency
from gateway.core.trust import fingerprint_sha256, subject_text
from gateway.launcher import GatewayProcess
from gateway.store import repo
from gateway.store.db import Database
from gateway.store.migrate import upgrade
from gateway.store.models import AgencyCertificate, System
from gateway.systems import generate_secret, store_secret

G22, H41, H49, G01 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H49", "000.00.00.G01"
SENDER = G22
RECIPIENTS = (H41, H49, G01)

AGENCIES = {
    G22: "Văn phòng Chính phủ",
    H41: "UBND tỉnh Nghệ An",
    H49: "UBND tỉnh Quảng Ninh",
    G01: "Bộ Quốc phòng",
}
#: system id → the one agency it acts for
SYSTEMS = {"vpcp": G22, "nghean": H41, "quangninh": H49, "bqp": G01}
SENDER_SYSTEM = "vpcp"
RECEIVER_SYSTEMS = ("nghean", "quangninh", "bqp")


@dataclasses.dataclass(frozen=True)
class Credentials:
    """A TEST CA, one seal per agency and one secret per system, made once per run."""

    ca: pki.Issued
    seals: dict[str, pki.Issued]
    secrets: dict[str, str]

    @classmethod
    def make(cls) -> Credentials:
        ca = pki.make_ca()
        seals = {code: pki.issue_agency_cert(ca, code, name) for code, name in AGENCIES.items()}
        return cls(ca=ca, seals=seals, secrets={system: generate_secret() for system in SYSTEMS})

    @property
    def sender_key_pem(self) -> bytes:
        return self.seals[SENDER].key_pem

    @property
    def sender_cert_pem(self) -> bytes:
        return self.seals[SENDER].cert_pem


def register(database_url: str, creds: Credentials) -> None:
    """The schema (the gateway's own migrations), the agencies with their seal certificates, the systems."""
    db = Database(database_url)
    try:
        upgrade(db)
        now = dt.datetime.now(dt.timezone.utc)
        with db.unit_of_work(write=True) as session:
            for code, name in AGENCIES.items():
                agency = upsert_agency(session, AgencyInfo(code, name, None, None, None, True), now)
                agency.require_signature = True
                cert = creds.seals[code].cert
                session.add(
                    AgencyCertificate(
                        fingerprint=fingerprint_sha256(cert),
                        agency_code=code,
                        subject=subject_text(cert),
                        serial=format(cert.serial_number, "x"),
                        not_after=cert.not_valid_after_utc,
                        pem=creds.seals[code].cert_pem.decode(),
                        added_at=now,
                    )
                )
            for system_id, agency in SYSTEMS.items():
                repo.add_system(
                    session,
                    System(
                        id=system_id,
                        secret_hash=store_secret(creds.secrets[system_id]),
                        is_admin=False,
                        active=True,
                        created_at=now,
                    ),
                    [agency],
                )
            session.commit()
    finally:
        db.dispose()


class BenchGateway(GatewayProcess):
    """:class:`GatewayProcess` that also passes ``--threads`` (gunicorn gthread threads per worker).

    The start-up is the launcher's, with one more argument; keep it in step with ``GatewayProcess.start``.
    """

    def __init__(self, *args: object, threads: int = 4, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.threads = threads

    def start(self) -> BenchGateway:
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        fd = self.sock.fileno()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
        env.update(self.extra_env)
        env["LIENTHONG_HOME"] = str(self.data_dir)
        if self.database_url:
            env["LIENTHONG_DATABASE_URL"] = self.database_url
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "gateway.cli", "serve", "--fd", str(fd),
                    "--workers", str(self.workers), "--threads", str(self.threads),
                ],  # fmt: skip
                pass_fds=(fd,),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self


@dataclasses.dataclass
class Target:
    """One database for one scenario and the gateway serving it."""

    kind: str
    url: str
    data_dir: Path
    gateway: BenchGateway
    #: libpq conninfo (PostgreSQL) or the SQLite file, for the raw bound's direct connection
    direct: str


class Databases:
    """Fresh databases on demand: a SQLite file in a new directory, or a new database on one PostgreSQL
    server started for the run (stopped by :meth:`close`)."""

    def __init__(self, kind: str, base: Path) -> None:
        self.kind = kind
        self.base = base
        self.server = None
        self._count = 0
        if kind == "postgres":
            from tests.support.pgserver import PostgresServer

            self.server = PostgresServer()
            self.server.start()

    def new(self, name: str) -> tuple[str, Path, str]:
        """(SQLAlchemy URL, data directory, direct connection string) of a fresh, empty database."""
        self._count += 1
        data_dir = self.base / f"{self.kind}-{self._count:02d}-{name}"
        if data_dir.exists():
            shutil.rmtree(data_dir)
        data_dir.mkdir(parents=True)
        if self.server is None:
            path = data_dir / "lienthong.db"
            return f"sqlite:///{path}", data_dir, str(path)
        dbname = f"bench_{self._count:02d}_{name}"
        url = self.server.create_database(dbname)
        return url, data_dir, self.server.dsn(dbname)

    def version(self) -> str:
        if self.server is None:
            import sqlite3

            return f"SQLite {sqlite3.sqlite_version}"
        out = subprocess.run(
            [str(self.server.bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=False
        )
        return out.stdout.strip() or "PostgreSQL"

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def postgres_skip_reason() -> str | None:
    try:
        from tests.support.pgserver import pg_skip_reason
    except ImportError as exc:  # pragma: no cover - the benchmark runs from the repository root
        return f"tests.support.pgserver cannot be imported ({exc}); run from the repository root"
    return pg_skip_reason()


@contextmanager
def target(
    databases: Databases,
    name: str,
    creds: Credentials,
    *,
    workers: int,
    threads: int,
    start: bool = True,
) -> Iterator[Target]:
    """A fresh database with the directory registered and, if ``start``, a gateway serving it."""
    url, data_dir, direct = databases.new(name)
    trust = data_dir / "trust-anchors.pem"
    trust.write_bytes(creds.ca.cert_pem)
    register(url, creds)
    gateway = BenchGateway(
        data_dir / "home",
        database_url=url,
        workers=workers,
        threads=threads,
        env={"LIENTHONG_TRUST_ANCHORS": str(trust), "LIENTHONG_LOG_LEVEL": "INFO"},
        log_path=data_dir / "gateway.log",
    )
    try:
        if start:
            gateway.start()
        yield Target(databases.kind, url, data_dir, gateway, direct)
    finally:
        gateway.stop()
