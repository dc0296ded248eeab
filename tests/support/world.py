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
from gateway.core.credentials import generate_secret, hash_secret
from gateway.launcher import GatewayProcess
from gateway.store import repo
from gateway.store.db import Database
from gateway.store.migrate import upgrade
from gateway.store.models import Base, System

G22, H41, H49, G01, K41 = (
    "000.00.00.G22",
    "000.00.00.H41",
    "000.00.00.H49",
    "000.00.00.G01",
    "000.00.00.K41",
)

#: agency code → name, active
AGENCIES = {
    G22: ("Văn phòng Chính phủ", True),
    H41: ("UBND tỉnh Nghệ An", True),
    H49: ("UBND tỉnh Quảng Ninh", True),
    G01: ("Bộ Quốc phòng", True),
    K41: ("HĐND tỉnh Nghệ An (đã giải thể)", False),
}

#: system id → agencies, admin
SYSTEMS = {
    "vpcp": ([G22], False),
    "nghean": ([H41], False),
    "quangninh": ([H49], False),
    "platform": ([G01, H49], False),  # an integration platform acting for two agencies
    "admin": ([G22], True),
}


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
        self.gateway = GatewayProcess(
            self.data_dir, database_url=database_url, workers=workers, env=env or {}
        )
        self._clients: dict[str, object] = {}

    def setup(self) -> World:
        upgrade(self.db)
        now = dt.datetime.now(dt.timezone.utc)
        with self.db.unit_of_work(write=True) as session:
            for code, (name, active) in AGENCIES.items():
                upsert_agency(session, AgencyInfo(code, name, None, None, None, active), now)
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
                        secret_hash=hash_secret(secret),
                        is_admin=admin,
                        active=True,
                        created_at=now,
                    ),
                    agencies,
                )
            session.commit()
        return self

    def start(self) -> World:
        self.gateway.start()
        return self

    @property
    def url(self) -> str:
        return self.gateway.url

    def client(self, system_id: str, secret: str | None = None):  # type: ignore[no-untyped-def]
        from lienthong_client import LienthongClient

        key = f"{system_id}:{secret}"
        if key not in self._clients:
            self._clients[key] = LienthongClient(
                self.url, system_id, secret if secret is not None else self.secrets[system_id], timeout=30
            )
        return self._clients[key]

    def snapshot(self) -> str:
        """A digest of every row of every table: equal digests mean the database did not change."""
        h = hashlib.sha256()
        with self.db.unit_of_work() as session:
            for table in Base.metadata.sorted_tables:
                h.update(table.name.encode())
                pk = list(table.primary_key.columns)
                for row in session.execute(select(table).order_by(*pk)):
                    h.update(repr(tuple(row)).encode())
        return h.hexdigest()

    def count(self, table: str) -> int:
        from sqlalchemy import func

        t = Base.metadata.tables[table]
        with self.db.unit_of_work() as session:
            return session.execute(select(func.count()).select_from(t)).scalar_one()

    def stop(self) -> None:
        self.gateway.stop()
        self.db.dispose()
