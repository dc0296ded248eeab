"""What a benchmark run stands on: test seals, a fresh database per scenario, the directory, and the
production server (``lienthong serve``: gunicorn, N workers) in a child process.

Copied from ``tests/support/world.py`` rather than imported: the benchmark does not depend on test
fixtures (only on :mod:`tests.support.pgserver`, a throwaway PostgreSQL server).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway import pki
from gateway.axis import AgencyInfo, upsert_agency
from gateway.launcher import GatewayProcess
from gateway.store import repo
from gateway.store.db import Database
from gateway.store.migrate import upgrade
from gateway.store.models import AgencyCertificate, System, SystemCertificate
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
#: the system that signs its requests (WS-Security X.509, ``auth_method="x509"``, no secret): it acts for
#: the same agency as ``SENDER_SYSTEM``, so ``send-x509`` posts the same packets as ``send``
SIGNING_SYSTEM = "vpcp-signed"
SIGNING_SYSTEMS = {SIGNING_SYSTEM: G22}


@dataclasses.dataclass(frozen=True)
class Credentials:
    """A TEST CA, one seal per agency, one secret per system and one request-signing certificate per
    signing system (a key apart from any agency seal, issued as the tests issue theirs), made once per run."""

    ca: pki.Issued
    seals: dict[str, pki.Issued]
    secrets: dict[str, str]
    #: signing system id → the certificate (and key) it signs its requests with
    systems: dict[str, pki.Issued] = dataclasses.field(default_factory=dict)

    @classmethod
    def make(cls) -> Credentials:
        ca = pki.make_ca()
        seals = {code: pki.issue_agency_cert(ca, code, name) for code, name in AGENCIES.items()}
        systems = {sid: pki.issue_agency_cert(ca, sid, f"system {sid}") for sid in SIGNING_SYSTEMS}
        return cls(
            ca=ca,
            seals=seals,
            secrets={system: generate_secret() for system in SYSTEMS},
            systems=systems,
        )

    @property
    def signing(self) -> pki.Issued:
        """The request-signing certificate and key of ``SIGNING_SYSTEM``."""
        return self.systems[SIGNING_SYSTEM]

    @property
    def sender_key_pem(self) -> bytes:
        return self.seals[SENDER].key_pem

    @property
    def sender_cert_pem(self) -> bytes:
        return self.seals[SENDER].cert_pem


def make_gateway_key(home: Path, database_url: str) -> bool:
    """The gateway's own TEST key, as ``lienthong init`` makes it (the gateway signs its responses with it).
    False where this gateway has no such key."""
    try:
        from gateway.config import Config
        from gateway.keystore import make_test_key
    except ImportError:
        return False
    make_test_key(Config.from_sources({}, data_dir=home, database_url=database_url))
    return True


def register(database_url: str, creds: Credentials) -> None:
    """The schema (the gateway's own migrations), the agencies with their seal certificates, the systems
    with a secret (UsernameToken) and the signing systems with their registered certificate (X.509)."""
    db = Database(database_url)
    try:
        upgrade(db)
        now = dt.datetime.now(dt.timezone.utc)
        with db.unit_of_work(write=True) as session:
            for code, name in AGENCIES.items():
                agency = upsert_agency(session, AgencyInfo(code, name, None, None, None, True), now)
                agency.require_signature = True
                session.add(AgencyCertificate.of(code, creds.seals[code].cert, now))
            for system_id, agency in SYSTEMS.items():
                system = System(
                    id=system_id,
                    secret_hash=store_secret(creds.secrets[system_id]),
                    # these systems' requests carry a UsernameToken (an operator choice per system since
                    # X.509-signed requests became the default)
                    auth_method="username-token",
                    is_admin=False,
                    active=True,
                    created_at=now,
                )
                repo.add_system(session, system, [agency])
            for system_id, agency in SIGNING_SYSTEMS.items():
                # as tests/support/world.py registers its SIGNING_SYSTEMS: auth_method "x509", no secret,
                # and the certificate it signs with (what ``lienthong system add … --cert`` records)
                issued = creds.systems[system_id]
                system = System(
                    id=system_id,
                    secret_hash="",
                    auth_method="x509",
                    is_admin=False,
                    active=True,
                    created_at=now,
                )
                repo.add_system(session, system, [agency])
                system.certificates.append(SystemCertificate.of(system_id, issued.cert, now))
            session.commit()
    finally:
        db.dispose()


@dataclasses.dataclass
class Target:
    """One database for one scenario and the gateway serving it."""

    kind: str
    url: str
    data_dir: Path
    gateway: GatewayProcess
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
        #: SQLAlchemy URL → name of the PostgreSQL databases made and not yet dropped
        self._names: dict[str, str] = {}
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
        self._names[url] = dbname
        return url, data_dir, self.server.dsn(dbname)

    def retire(self, url: str) -> None:
        """A scenario is over: on PostgreSQL its database is dropped, so that autovacuum does not work through
        its tables (tens of thousands of packets after a bound or a send) during a later timed phase."""
        dbname = self._names.pop(url, None)
        if self.server is None or dbname is None:
            return
        import psycopg

        with psycopg.connect(self.server.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')

    def settle(self, vacuum: str | None = None) -> None:
        """Before a timed phase: on PostgreSQL, write out what earlier scenarios and set-up left in the
        server's buffers (``CHECKPOINT``), so that a checkpoint they made due does not land in this phase.
        ``vacuum`` (a SQLAlchemy URL made by :meth:`new`): first ``VACUUM (ANALYZE)`` that database, as pgbench
        does before its runs — after a bulk pre-load, autovacuum would otherwise start on its fresh tables
        (PostgreSQL vacuums after many inserts, too) while the phase is timed. SQLite needs nothing: each
        scenario has a file of its own."""
        if self.server is None:
            return
        import psycopg

        dbname = self._names.get(vacuum) if vacuum else None
        if dbname is not None:
            with psycopg.connect(self.server.dsn(dbname), autocommit=True) as conn:
                conn.execute("VACUUM (ANALYZE)")
        with psycopg.connect(self.server.dsn(), autocommit=True) as conn:
            conn.execute("CHECKPOINT")

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
    env: dict[str, str] | None = None,
    pin_workers: bool = False,
) -> Iterator[Target]:
    """A fresh database with the directory registered and, if ``start``, a gateway serving it."""
    url, data_dir, direct = databases.new(name)
    trust = data_dir / "trust-anchors.pem"
    trust.write_bytes(creds.ca.cert_pem)
    register(url, creds)
    make_gateway_key(data_dir / "home", url)
    gateway = GatewayProcess(
        data_dir / "home",
        database_url=url,
        workers=workers,
        threads=threads,
        env={"LIENTHONG_TRUST_ANCHORS": str(trust), "LIENTHONG_LOG_LEVEL": "INFO", **(env or {})},
        log_path=data_dir / "gateway.log",
        pin_workers=pin_workers,
    )
    try:
        databases.settle()
        if start:
            gateway.start()
        yield Target(databases.kind, url, data_dir, gateway, direct)
    finally:
        gateway.stop()
        databases.retire(url)
