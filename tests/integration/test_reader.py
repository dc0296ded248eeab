"""The reads a request makes before its transaction (credentials, seal policies) run on a pooled connection
without the ORM, in autocommit (``Database.reader``). The same connection then serves the pool's next
unit of work, which must still be one transaction that keeps nothing unless committed."""

from __future__ import annotations

import pytest
from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc

from gateway import errors
from gateway.store.db import Database
from gateway.store.migrate import upgrade
from gateway.store.raw import Raw
from tests.conftest import database_url

WRITE = "INSERT INTO replay_records (signature_digest, fingerprint, expires_at) VALUES ('%s', 'f', CURRENT_TIMESTAMP)"


@pytest.fixture()
def db(backend, tmp_path, request):
    database = Database(database_url(backend, tmp_path, request), pool_size=1)
    upgrade(database)
    yield database
    database.dispose()


def _records(db: Database) -> int:
    with db.unit_of_work() as session:
        return session.execute(text("SELECT count(*) FROM replay_records")).scalar_one()


def test_a_unit_of_work_after_a_reader_is_still_one_transaction(db):
    for _ in range(3):
        with db.reader() as reader:
            assert Raw.of(reader).one("SELECT count(*) FROM systems") == (0,)
        # the pool has one connection (plus overflow): the reader's is the one the unit of work gets
        with pytest.raises(RuntimeError):
            with db.unit_of_work(write=True) as session:
                session.execute(text(WRITE % "X.1"))
                raise RuntimeError("refused after writing")
        assert _records(db) == 0
    with db.unit_of_work(write=True) as session:
        session.execute(text(WRITE % "X.1"))
        session.commit()
    assert _records(db) == 1


def _connects(db: Database) -> list[int]:
    made: list[int] = []
    event.listen(db.engine, "connect", lambda *_: made.append(1))
    with db.reader() as reader:  # one pooled connection from here on
        Raw.of(reader).one("SELECT 1")
    return made


def test_a_failed_read_is_mapped_and_the_connection_not_pooled_again(db):
    made = _connects(db)
    opened = len(made)
    with db.reader() as reader:
        Raw.of(reader).one("SELECT count(*) FROM systems")
    assert len(made) == opened  # a good read leaves its connection pooled
    with pytest.raises((sa_exc.DBAPIError, errors.DatabaseUnavailable)):
        with db.reader() as reader:
            Raw.of(reader).one("SELECT no_such_column FROM systems")
    with db.reader() as reader:  # a fresh connection serves the next request
        assert Raw.of(reader).one("SELECT count(*) FROM systems") == (0,)
    assert len(made) == opened + 1


def test_a_refusal_inside_the_reader_keeps_the_connection(db):
    made = _connects(db)
    opened = len(made)
    with pytest.raises(errors.InvalidCredentials):
        with db.reader() as reader:
            Raw.of(reader).one("SELECT count(*) FROM systems")
            raise errors.InvalidCredentials("wrong secret")
    with pytest.raises(RuntimeError):
        with db.unit_of_work(write=True) as session:
            session.execute(text(WRITE % "X.2"))
            raise RuntimeError("refused after writing")
    assert _records(db) == 0
    assert len(made) == opened  # the refusal was no reason to close the connection


@pytest.mark.parametrize("count", [1, 3, 100, 101, 250])
def test_many_writes_every_row_as_one_statement_or_in_a_batch(db, count):
    """``Raw.many`` writes up to MULTI_ROWS rows as one multi-row INSERT on PostgreSQL, more (and on
    SQLite) with executemany: the rows and a refusal are the same either way."""
    rows = [(f"sig-{i:04d}", f"fp-{i}") for i in range(count)]
    sql = "INSERT INTO replay_records (signature_digest, fingerprint, expires_at) VALUES (?, ?, CURRENT_TIMESTAMP)"
    with db.unit_of_work(write=True) as session:
        Raw.of(session).many(sql, rows)
        session.commit()
    with db.unit_of_work() as session:
        stored = Raw.of(session).all(
            "SELECT signature_digest, fingerprint FROM replay_records ORDER BY signature_digest"
        )
    assert [tuple(r) for r in stored] == rows
    # one row already there: the whole write is refused and nothing of it kept
    with pytest.raises(sa_exc.IntegrityError), db.unit_of_work(write=True) as session:
        Raw.of(session).many(sql, [("sig-new", "x"), rows[-1]])
    assert _records(db) == count


def test_multi_values_refuses_what_it_cannot_repeat():
    from gateway.store.raw import multi_values

    assert (
        multi_values("INSERT INTO t (a, b) VALUES (?, 'x')", 2)
        == "INSERT INTO t (a, b) VALUES (?, 'x'), (?, 'x')"
    )
    for sql in (
        "UPDATE t SET a = ?",
        "INSERT INTO t (a) VALUES (?) RETURNING id",
        "INSERT INTO t (a) VALUES (f(?))",
    ):
        with pytest.raises(ValueError):
            multi_values(sql, 2)


# --- write transactions without the ORM (Database.transaction, Database.run(..., orm=False)) -------------


def test_a_transaction_without_the_orm_keeps_only_what_it_commits(db):
    made = _connects(db)
    opened = len(made)
    with pytest.raises(errors.NotAddressee):
        with db.transaction() as tx:
            Raw.of(tx).execute(WRITE % "T.1")
            raise errors.NotAddressee("refused after writing")
    with db.transaction() as tx:
        Raw.of(tx).execute(WRITE % "T.2")  # never committed
    assert _records(db) == 0
    with db.transaction() as tx:
        Raw.of(tx).execute(WRITE % "T.3")
        tx.commit()
    assert _records(db) == 1
    assert len(made) == opened  # a refusal is no reason to close the connection


def test_an_orm_statement_in_a_transaction_without_the_orm_fails_and_keeps_nothing(db):
    with pytest.raises(AttributeError), db.transaction() as tx:
        Raw.of(tx).execute(WRITE % "T.4")
        tx.execute(text(WRITE % "T.5"))  # type: ignore[attr-defined]
    assert _records(db) == 0


def test_a_race_lost_in_a_transaction_without_the_orm_runs_the_operation_again(db):
    with db.transaction() as tx:
        Raw.of(tx).execute(WRITE % "R.1")
        tx.commit()
    attempts: list[int] = []

    def operation(tx) -> int:  # the first attempt trips the unique index, as a concurrent send would
        attempts.append(1)
        Raw.of(tx).execute(WRITE % f"R.{len(attempts) + 1}")
        Raw.of(tx).execute(WRITE % "R.1" if len(attempts) == 1 else WRITE % "R.9")
        tx.commit()
        return len(attempts)

    assert db.run(operation, orm=False) == 2
    with db.reader() as reader:
        kept = Raw.of(reader).scalars("SELECT signature_digest FROM replay_records ORDER BY signature_digest")
    assert kept == ["R.1", "R.3", "R.9"]  # the first attempt's R.2 was rolled back with it


def test_a_connection_lost_in_a_transaction_without_the_orm_is_mapped_and_replaced(db, backend):
    if backend != "postgres":
        pytest.skip("a SQLite file cannot be taken away from under its connection")
    with pytest.raises(errors.DatabaseUnavailable), db.transaction() as tx:
        raw = Raw.of(tx)
        raw.execute(WRITE % "L.1")
        (pid,) = raw.one("SELECT pg_backend_pid()")
        with db.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            other.commit()
        raw.execute(WRITE % "L.2")
    with db.transaction() as tx:  # a fresh connection serves the next request
        Raw.of(tx).execute(WRITE % "L.3")
        tx.commit()
    assert _records(db) == 1


def _agency(db: Database, code: str, name: str) -> None:
    import datetime as dt

    from gateway.store.models import Agency

    now = dt.datetime.now(dt.timezone.utc)
    with db.unit_of_work(write=True) as session:
        session.add(Agency(code=code, name=name, created_at=now, updated_at=now))
        session.commit()


def test_prefetched_reads_are_taken_once_with_their_values_bound_safely(db, backend):
    hostile = "Nghệ\\'); DROP TABLE agencies; --"
    _agency(db, "000.00.00.H41", "UBND tỉnh Nghệ An")
    by_code = "SELECT code, name FROM agencies WHERE code = ?"
    by_name = "SELECT count(*) FROM agencies WHERE name = ?"
    with db.reader() as reader:
        raw = Raw.of(reader)
        raw.prefetch([(by_code, ("000.00.00.H41",)), (by_name, (hostile,)), (by_code, ("000.00.00.H49",))])
        statements = []
        if backend == "postgres":  # what is taken from the prefetch runs no statement of its own
            from psycopg import Cursor

            real = Cursor.execute

            def counted(self, *args, **kw):  # type: ignore[no-untyped-def]
                statements.append(args[0])
                return real(self, *args, **kw)

            Cursor.execute = counted  # type: ignore[method-assign]
        try:
            assert raw.one(by_code, ("000.00.00.H41",)) == ("000.00.00.H41", "UBND tỉnh Nghệ An")
            assert raw.scalars(by_name, (hostile,)) == [0]
            assert raw.all(by_code, ("000.00.00.H49",)) == []
            taken = len(statements)
            # each prefetched result is taken once: the same read again goes to the database
            assert raw.one(by_code, ("000.00.00.H41",)) == ("000.00.00.H41", "UBND tỉnh Nghệ An")
        finally:
            if backend == "postgres":
                Cursor.execute = real  # type: ignore[method-assign]
        if backend == "postgres":
            assert taken == 0 and len(statements) == 1
    with db.reader() as reader:  # the hostile value was a value: the table is there
        assert Raw.of(reader).one("SELECT count(*) FROM agencies") == (1,)
