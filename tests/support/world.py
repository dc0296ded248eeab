"""A real gateway for tests: a database (SQLite file or a database on a real PostgreSQL server), the
directory and systems an operator would register, and ``lienthong serve`` (gunicorn) in a child process.

Nothing is mocked: requests go over HTTP on 127.0.0.1, packets are stored in the real database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from sqlalchemy import select

from gateway.axis import AgencyInfo, upsert_agency
from gateway.launcher import GatewayProcess
from gateway.store import repo
from gateway.store.db import Database
from gateway.store.migrate import upgrade
from gateway.store.models import AgencyCertificate, Base, System, SystemCertificate
from gateway.systems import generate_secret, store_secret

G22, H41, H49, G01, K41, G09 = (
    "000.00.00.G22",
    "000.00.00.H41",
    "000.00.00.H49",
    "000.00.00.G01",
    "000.00.00.K41",
    "000.00.00.G09",
)

#: agency code → name, active, require_signature
AGENCIES = {
    G22: ("Văn phòng Chính phủ", True, True),
    H41: ("UBND tỉnh Nghệ An", True, True),
    H49: ("UBND tỉnh Quảng Ninh", True, True),
    G01: ("Bộ Quốc phòng", True, True),
    K41: ("HĐND tỉnh Nghệ An (đã giải thể)", False, True),
    G09: ("Bộ Y tế (chưa ký số)", True, False),  # the operator let it send unsigned packets for now
}

#: system id → agencies, admin
SYSTEMS = {
    "vpcp": ([G22], False),
    "nghean": ([H41], False),
    "quangninh": ([H49], False),
    "platform": ([G01, H49], False),  # an integration platform acting for two agencies
    "admin": ([G22], True),
    "yte": ([G09], False),
}

#: systems that sign their requests (WS-Security X.509) and have no secret at all
SIGNING_SYSTEMS = {
    "vpcp-signed": ([G22], False),
    "nghean-signed": ([H41], False),
}


class TestPki:
    """A test CA and one seal per agency, made once per test session (keys take time to generate)."""

    _instance: TestPki | None = None

    def __init__(self) -> None:
        from gateway import pki

        self.ca = pki.make_ca()
        self.seals = {
            code: pki.issue_agency_cert(self.ca, code, name) for code, (name, *_rest) in AGENCIES.items()
        }
        #: the certificates systems sign requests with (a key apart from any agency seal)
        self.systems = {sid: pki.issue_agency_cert(self.ca, sid, f"system {sid}") for sid in SIGNING_SYSTEMS}

    @classmethod
    def get(cls) -> TestPki:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def signer(self, agency: str):  # type: ignore[no-untyped-def]
        from lienthong_client.seals import Signer

        seal = self.seals[agency]
        return Signer(key_pem=seal.key_pem, cert_pem=seal.cert_pem)

    def checker(self):  # type: ignore[no-untyped-def]
        from gateway.core.trust import TrustStore
        from lienthong_client.seals import SealChecker

        return SealChecker(TrustStore.from_pem(self.ca.cert_pem))


#: tables a refused request writes to on purpose: the replay record (every signed request seen, accepted
#: or refused, so that no signature is used twice) and the audit chain (every refusal is an event); they are
#: not data a refusal may change. :func:`last_audit_entry` shows what the refusal added.
BOOKKEEPING = frozenset({"replay_records", "audit_log", "audit_checkpoints"})


class World:
    def __init__(
        self, base: Path, database_url: str, *, workers: int = 2, env: dict[str, str] | None = None
    ) -> None:
        self.base = base
        self.data_dir = base / "gateway"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url
        self.db = Database(database_url)
        self.secrets: dict[str, str] = {}
        self.secret_files: dict[str, Path] = {}
        self.pki = TestPki.get()
        self.trust_file = base / "trust-anchors.pem"
        self.trust_file.write_bytes(self.pki.ca.cert_pem)
        self.gateway = GatewayProcess(
            self.data_dir,
            database_url=database_url,
            workers=workers,
            env={"LIENTHONG_TRUST_ANCHORS": str(self.trust_file), **(env or {})},
        )
        self._clients: dict[str, object] = {}

    def setup(self) -> World:
        from gateway.config import Config
        from gateway.keystore import make_test_key

        upgrade(self.db)
        # the gateway's own (test) key: it signs every answer, and every client here pins its certificate
        make_test_key(Config.from_sources({}, data_dir=self.data_dir, database_url=self.database_url))
        self.gateway_cert = (self.data_dir / "gateway-cert.pem").read_bytes()
        now = dt.datetime.now(dt.timezone.utc)
        with self.db.unit_of_work(write=True) as session:
            for code, (name, active, require_signature) in AGENCIES.items():
                agency = upsert_agency(session, AgencyInfo(code, name, None, None, None, active), now)
                agency.require_signature = require_signature
                cert = self.pki.seals[code].cert
                session.add(AgencyCertificate.of(code, cert, now))
            for system_id, (agencies, admin) in SYSTEMS.items():
                secret = generate_secret()
                self.secrets[system_id] = secret
                path = self.base / f"{system_id}.secret"
                path.write_text(secret)
                self.secret_files[system_id] = path
                repo.add_system(
                    session,
                    System(
                        id=system_id,
                        secret_hash=store_secret(secret),
                        # UsernameToken for these suites; the X.509 tests register signing systems
                        auth_method="username-token",
                        is_admin=admin,
                        active=True,
                        created_at=now,
                    ),
                    agencies,
                )
            for system_id, (agencies, admin) in SIGNING_SYSTEMS.items():
                issued = self.pki.systems[system_id]
                system = System(
                    id=system_id,
                    secret_hash="",
                    auth_method="x509",
                    is_admin=admin,
                    active=True,
                    created_at=now,
                )
                repo.add_system(session, system, agencies)
                system.certificates.append(SystemCertificate.of(system_id, issued.cert, now))
            session.commit()
        return self

    def app(self, **env: str):  # type: ignore[no-untyped-def]
        """The production WSGI application (``create_app``) on this world's database, in this process, with
        the gateway's settings plus ``env`` (``LIENTHONG_*`` values). Dispose of ``app.axis.db`` after."""
        from gateway.config import Config
        from gateway.soap.app import create_app

        config = Config.from_sources(
            {"LIENTHONG_TRUST_ANCHORS": str(self.trust_file), **env},
            data_dir=self.data_dir,
            database_url=self.database_url,
        )
        return create_app(config)

    def start(self) -> World:
        self.gateway.start()
        return self

    @property
    def url(self) -> str:
        return self.gateway.url

    def client(self, system_id: str, secret: str | None = None, *, agency: str | None = None):  # type: ignore[no-untyped-def]
        """The reference client of a system, sealing with its (first, or the named) agency's key."""
        from lienthong_client import LienthongClient

        key = f"{system_id}:{secret}:{agency}"
        if key not in self._clients and system_id in SIGNING_SYSTEMS:
            issued = self.pki.systems[system_id]
            agency = agency or SIGNING_SYSTEMS[system_id][0][0]
            self._clients[key] = LienthongClient(
                self.url,
                system_id,
                None,
                timeout=30,
                signer=self.pki.signer(agency),
                checker=self.pki.checker(),
                request_key=(issued.key_pem, issued.cert_pem),
                gateway_cert=self.gateway_cert,
            )
        if key not in self._clients:
            agency = agency or SYSTEMS[system_id][0][0] if system_id in SYSTEMS else agency
            self._clients[key] = LienthongClient(
                self.url,
                system_id,
                secret if secret is not None else self.secrets[system_id],
                timeout=30,
                signer=self.pki.signer(agency) if agency and AGENCIES[agency][2] else None,
                checker=self.pki.checker(),
                gateway_cert=self.gateway_cert,
            )
        return self._clients[key]

    def seal(self, packet: bytes, agency: str) -> bytes:
        """The packet sealed by ``agency`` (the bytes a test can then compare with what is fetched)."""
        return self.pki.signer(agency).sign(packet)

    def snapshot(self) -> str:
        """A digest of every row of every table: equal digests mean the database did not change."""
        h = hashlib.sha256()
        with self.db.unit_of_work() as session:
            for table in Base.metadata.sorted_tables:
                if table.name in BOOKKEEPING:
                    continue
                h.update(table.name.encode())
                pk = list(table.primary_key.columns)
                for row in session.execute(select(table).order_by(*pk)):
                    h.update(repr(tuple(row)).encode())
        return h.hexdigest()

    def audit_entries(self, after: int = 0) -> list[dict]:
        """The audit chain's entries after ``after``, as their content."""
        import json

        from gateway.store.models import AuditEntry

        with self.db.unit_of_work() as session:
            rows = session.scalars(select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq))
            return [json.loads(r.content) for r in rows]

    def audit_head(self) -> int:
        from sqlalchemy import func

        from gateway.store.models import AuditEntry

        with self.db.unit_of_work() as session:
            return session.scalar(select(func.max(AuditEntry.seq))) or 0

    def count(self, table: str) -> int:
        from sqlalchemy import func

        t = Base.metadata.tables[table]
        with self.db.unit_of_work() as session:
            return session.execute(select(func.count()).select_from(t)).scalar_one()

    def stop(self) -> None:
        self.gateway.stop()
        self.db.dispose()
