"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL, and
upgrade an existing database without losing its rows."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gateway.store.db import Database
from gateway.store.migrate import current_revision, head_revision, upgrade
from gateway.store.models import Base
from tests.conftest import database_url


def test_migrations_match_the_models(backend, tmp_path, request):
    db = Database(database_url(backend, tmp_path, request))
    upgrade(db)
    assert current_revision(db) == head_revision()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], diff
    upgrade(db)  # idempotent
    db.dispose()


def test_upgrade_keeps_existing_rows(backend, tmp_path, request):
    from sqlalchemy import text

    db = Database(database_url(backend, tmp_path, request))
    upgrade(db, "0001")
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO agencies (code, name, active, created_at, updated_at) "
                "VALUES ('000.00.00.G22', 'VPCP', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    upgrade(db)
    with db.engine.connect() as conn:
        row = conn.execute(text("SELECT code, require_signature, allow_sha1 FROM agencies")).one()
    assert tuple(row) == ("000.00.00.G22", True, False)  # existing agencies get the safe defaults
    db.dispose()
