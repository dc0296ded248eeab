"""Hand-written statements for the per-request hot path, run on the session's own DBAPI connection.

Every ``sendEdoc``, ``getEdoc`` and ``updateStatus`` runs a dozen small statements. Through SQLAlchemy
each costs 35-70 µs of Python before the driver sees it (statement cache key, compiled-parameter
processing, ORM execution context, result wrapping); the driver itself takes ~5 µs. These few statements
therefore skip SQLAlchemy's execution layer and go to the DBAPI cursor of the connection the session
already holds: the same transaction, the same ``BEGIN IMMEDIATE`` / advisory locks, the same commit.

What SQLAlchemy would otherwise do for them is done here, in one place:

- placeholders: the SQL is written with ``?`` (sqlite3's qmark style) and rewritten once to ``%s`` for
  psycopg;
- values: timezone-aware datetimes are stored as SQLAlchemy stores them (:func:`bind_time`: naive UTC text
  ``YYYY-MM-DD HH:MM:SS.ffffff`` on SQLite, ``timestamptz`` on PostgreSQL) and read back aware
  (:func:`read_time`), so rows written here and rows written through the ORM are indistinguishable;
- errors: driver exceptions become SQLAlchemy's (``IntegrityError``, ``OperationalError``…), so
  :meth:`gateway.store.db.Database.run` retries races and maps outages exactly as for ORM statements.

Everything else (the directory, lists, reports, the operator's commands) stays on SQLAlchemy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session

from gateway.store.db import DISCARD_AFTER_USE

_UTC = dt.timezone.utc
_PG: dict[str, str] = {}


def placeholders(n: int) -> str:
    """``?, ?, ?`` for an ``IN (…)`` of ``n`` values (n ≥ 1)."""
    return ", ".join("?" * n)


_CACHED = "lienthong_raw"
#: the most rows :meth:`Raw.many` writes as one statement
MULTI_ROWS = 100
_MULTI: dict[tuple[str, int], str] = {}


def multi_values(sql: str, n: int) -> str:
    """``INSERT INTO t (a, b) VALUES (?, 'x')`` for ``n`` rows: ``… VALUES (?, 'x'), (?, 'x'), …``."""
    key = (sql, n)
    multi = _MULTI.get(key)
    if multi is None:
        head, found, values = sql.rpartition(" VALUES ")
        values = values.strip()
        if not found or not (values.startswith("(") and values.endswith(")")) or ")" in values[:-1]:
            raise ValueError(f"not an INSERT ending with one VALUES list: {sql!r}")
        multi = _MULTI[key] = f"{head} VALUES {', '.join([values] * n)}"
    return multi


@event.listens_for(Session, "after_transaction_end")
def _forget_raw(session: Session, _transaction: Any) -> None:
    # the next transaction may run on another pooled connection
    session.info.pop(_CACHED, None)


class Raw:
    """The DBAPI cursor of ``session``'s connection (starting its transaction if it has none yet).

    Use :meth:`of`: it keeps one per session and transaction, so the dozen statements of a request look up
    the session's connection once (``Session.connection()`` costs ~15 µs of SQLAlchemy state machinery)."""

    __slots__ = ("_cursor", "_error", "_pooled", "_prefetched", "pg")

    @classmethod
    def begin(cls, session: Session, connection: Connection) -> Raw:
        """Keep the Raw of ``connection``, the connection ``session`` just began its transaction on."""
        raw = session.info[_CACHED] = cls(session, connection)
        return raw

    @classmethod
    def of(cls, session: Session | Reader) -> Raw:
        raw = session.info.get(_CACHED)
        if raw is None:
            raw = session.info[_CACHED] = cls(session)
        return raw

    def __init__(self, session: Session, connection: Connection | None = None) -> None:
        if connection is None:
            connection = session.connection()
        self._setup(connection.connection, connection.dialect)

    @classmethod
    def over(cls, pooled: Any, dialect: Dialect) -> Raw:
        """The Raw of a pooled DBAPI connection checked out without a session (:class:`Reader`)."""
        raw = cls.__new__(cls)
        raw._setup(pooled, dialect)
        return raw

    def _setup(self, pooled: Any, dialect: Dialect) -> None:
        self.pg = dialect.name == "postgresql"
        self._error = dialect.loaded_dbapi.Error
        self._pooled = pooled
        self._cursor = pooled.dbapi_connection.cursor()
        self._prefetched: dict[tuple[str, tuple], list[tuple]] | None = None

    def _sql(self, sql: str) -> str:
        if not self.pg:
            return sql
        converted = _PG.get(sql)
        if converted is None:
            converted = _PG[sql] = sql.replace("%", "%%").replace("?", "%s")
        return converted

    def _run(
        self,
        sql: str,
        params: Sequence[Any] | Iterable[Sequence[Any]],
        *,
        many: bool = False,
        binary: bool = False,
    ) -> Any:
        statement = self._sql(sql)
        try:
            if many:
                self._cursor.executemany(statement, params)
            elif binary and self.pg:
                self._cursor.execute(statement, params, binary=True)
            else:
                self._cursor.execute(statement, params)
        except self._error as exc:
            raise sa_exc.DBAPIError.instance(
                statement, params, exc, self._error, hide_parameters=True, ismulti=many
            ) from exc
        return self._cursor

    def prefetch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """PostgreSQL: run these reads now, in one round trip, each result kept for the first :meth:`one`,
        :meth:`all` or :meth:`scalars` of the same SQL and parameters on this Raw (the code that reads stays
        as it is; a read nobody takes is dropped with the Raw). A round trip costs the gateway ~50–70 µs of
        CPU beyond its statement. The statements go as one simple query with the values bound by psycopg on
        the client (quoted by its adapters, as psycopg2 always did): for small values only, never a packet.
        SQLite (no round trips): nothing is done."""
        if not self.pg or len(statements) < 2:
            return
        from psycopg import ClientCursor

        query = "; ".join(self._sql(sql) for sql, _ in statements)
        values = [value for _, params in statements for value in params]
        cursor = ClientCursor(self._pooled.driver_connection)
        try:
            cursor.execute(query, values)
            results = [cursor.fetchall()]
            while cursor.nextset():
                results.append(cursor.fetchall())
        except self._error as exc:
            raise sa_exc.DBAPIError.instance(query, values, exc, self._error, hide_parameters=True) from exc
        finally:
            cursor.close()
        kept = self._prefetched = self._prefetched or {}
        for (sql, params), rows in zip(statements, results, strict=True):
            kept[(sql, tuple(params))] = rows

    def _taken(self, sql: str, params: Sequence[Any]) -> list[tuple] | None:
        if not self._prefetched:
            return None
        return self._prefetched.pop((sql, tuple(params)), None)

    def one(self, sql: str, params: Sequence[Any] = (), *, binary: bool = False) -> tuple | None:
        """The first row. ``binary``: PostgreSQL sends the row in binary form (a ``bytea`` of 50 MB then
        arrives as 50 MB, not as 100 MB of hex text decoded into a third copy)."""
        rows = None if binary else self._taken(sql, params)
        if rows is not None:
            return rows[0] if rows else None
        return self._run(sql, params, binary=binary).fetchone()

    def last_row(self, sql: str) -> tuple | None:
        """Run several statements without parameters in one round trip (PostgreSQL's simple query
        protocol; SQLite's driver runs one statement at a time and is not given this); the first row of
        the last one's result."""
        if not self.pg:
            raise ValueError("several statements in one call are for PostgreSQL")
        cursor = self._run(sql, ())
        while cursor.nextset():
            pass
        return cursor.fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        rows = self._taken(sql, params)
        return rows if rows is not None else self._run(sql, params).fetchall()

    def scalars(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return [row[0] for row in self.all(sql, params)]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it changed."""
        return self._run(sql, params).rowcount

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run ``INSERT … VALUES (…)`` for each of ``rows``. On PostgreSQL up to :data:`MULTI_ROWS` rows go
        as one statement with that many value lists (psycopg's ``executemany`` costs ~40 µs more CPU per call
        than one ``execute``, for one row as for three), more with ``executemany``; sqlite3's
        ``executemany`` costs no more than ``execute``, and SQLite gets it."""
        if not rows:
            return
        if not self.pg:
            self._run(sql, rows, many=True)
        elif len(rows) == 1:
            self._run(sql, rows[0])
        elif len(rows) <= MULTI_ROWS:
            self._run(multi_values(sql, len(rows)), [value for row in rows for value in row])
        else:
            self._run(sql, rows, many=True)

    def insert_id(self, sql: str, params: Sequence[Any]) -> int:
        """Run an ``INSERT`` and return the new row's ``id`` (``RETURNING id`` on PostgreSQL)."""
        if self.pg:
            return self._run(sql + " RETURNING id", params).fetchone()[0]
        return self._run(sql, params).lastrowid

    def commit(self) -> None:
        """Commit the connection's transaction (what a Session's commit does, at the driver)."""
        try:
            self._pooled.driver_connection.commit()
        except self._error as exc:
            raise sa_exc.DBAPIError.instance("COMMIT", (), exc, self._error) from exc

    def discard_after_use(self) -> None:
        """Close this connection when it goes back to the pool instead of keeping it: SQLite's driver holds
        a statement's last bound values (a whole packet) until that statement runs again, and libpq keeps
        buffers as large as the largest message the connection sent or received."""
        self._pooled.info[DISCARD_AFTER_USE] = True

    def close(self) -> None:
        """Close the cursor (before its connection goes back to the pool)."""
        self._cursor.close()

    def time(self, value: dt.datetime | None) -> Any:
        return bind_time(value, self.pg)


class Reader:
    """Reads without a transaction of the ORM, for what a request checks before its own transaction
    (credentials, seal policies): a pooled DBAPI connection in autocommit, each statement seeing what is
    committed. On PostgreSQL that saves the BEGIN and ROLLBACK round trips, everywhere the Session's
    bookkeeping. ``Raw.of(reader)`` is its Raw; open one with :meth:`gateway.store.db.Database.reader`."""

    __slots__ = ("info",)

    def __init__(self, raw: Raw) -> None:
        self.info = {_CACHED: raw}


class Transaction:
    """A write transaction without the ORM, for the operations every request runs (a plain ``sendEdoc``,
    ``getEdoc``'s first-fetch mark, ``updateStatus``, a signed request's replay record), whose statements all
    go through ``Raw.of``: it has what they use of a Session — ``info`` (where ``Raw.of`` finds its Raw),
    ``commit()``, and ``get_transaction()`` (itself: what :func:`gateway.evidence.lock_chain` keys its lock
    on) — and nothing else, so an ORM statement in such an operation fails at once instead of running
    outside the transaction. Open one with :meth:`gateway.store.db.Database.transaction` (or ``Database.run(…, orm=False)``)."""

    __slots__ = ("committed", "info")

    def __init__(self, raw: Raw) -> None:
        self.info: dict[str, Any] = {_CACHED: raw}
        self.committed = False

    def commit(self) -> None:
        self.info[_CACHED].commit()
        self.committed = True

    def get_transaction(self) -> Transaction:
        return self


def bind_time(value: dt.datetime | None, pg: bool) -> Any:
    """A timezone-aware datetime as :class:`gateway.store.models.UtcDateTime` binds it."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    value = value.astimezone(_UTC)
    if pg:
        return value
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")  # strftime's spelling, 3× faster


def read_time(value: Any) -> dt.datetime | None:
    """A UTC column's value as a timezone-aware datetime (SQLite gives text, psycopg datetimes)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=_UTC)
