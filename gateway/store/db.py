"""Engines and the unit of work: one operation is one transaction that rolls back unless committed.

SQLite (the embedded default) runs in WAL mode with a busy timeout; a writing unit of work starts with
``BEGIN IMMEDIATE`` so two processes never deadlock upgrading a read lock. PostgreSQL is used as it comes
(READ COMMITTED); uniqueness races are settled by constraints, and :meth:`Database.run` retries an
operation once when a concurrent one won the race. A pooled PostgreSQL connection idle for more than
:data:`PING_AFTER_IDLE_S` is pinged before use (and replaced if the server dropped it); a busy one is not.

Database failures the caller cannot fix (server down, file not openable, lock held too long) become
:class:`~gateway.errors.DatabaseUnavailable` here and nowhere else; the original error is logged, not sent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: SQLite's own busy handler only
    fcntl = None  # type: ignore[assignment]

from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from gateway.store.raw import Reader, Transaction

from gateway import errors

log = logging.getLogger("lienthong.store")
T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: a pooled connection's info key: close it when it goes back to the pool (see gateway.store.raw)
DISCARD_AFTER_USE = "lienthong_discard_after_use"
#: a pooled SQLite connection's info key: the ``PRAGMA synchronous`` level it is set to
SYNCHRONOUS = "lienthong_synchronous"
#: a pooled PostgreSQL connection's info key: when it went back to the pool
IDLE_SINCE = "lienthong_idle_since"
#: a PostgreSQL connection idle in the pool longer than this is pinged before use
PING_AFTER_IDLE_S = 1.0


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for ``url``; SQLite files get WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            options = conn.get_execution_options()
            sqlite_begin(
                conn.connection,
                conn.dialect.loaded_dbapi.Error,
                write=bool(options.get("lienthong_write")),
                flush=options.get("lienthong_flush", True),
            )

    else:
        engine = create_engine(url, pool_size=pool_size, max_overflow=5, pool_timeout=10)
        driver_error = engine.dialect.loaded_dbapi.Error

        @event.listens_for(engine, "checkout")
        def _ping_if_idle(dbapi_conn, record, _proxy):  # type: ignore[no-untyped-def]
            # SQLAlchemy's pool_pre_ping costs a round trip per checkout (two per sendEdoc); a connection
            # used less than PING_AFTER_IDLE_S ago is taken as it is, an idle one is checked first
            since = record.info.get(IDLE_SINCE)
            if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
                return
            try:
                cur = dbapi_conn.cursor()
                cur.execute("SELECT 1")
                cur.close()
                dbapi_conn.rollback()
            except driver_error as exc:
                # the pool closes this connection and checks out a fresh one (it tries three times)
                raise sa_exc.DisconnectionError("a pooled connection was lost while idle") from exc

        @event.listens_for(engine, "checkin")
        def _idle_from(_dbapi_conn, record):  # type: ignore[no-untyped-def]
            record.info[IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _discard_checkin(_dbapi_conn, record):  # type: ignore[no-untyped-def]
        # a connection that moved a large packet keeps memory the size of it for as long as it lives:
        # sqlite3 holds a statement's last bound values in its statement cache, libpq its buffers, which
        # grow to the largest message and never shrink (gateway.store.raw.Raw.discard_after_use)
        if record.info.pop(DISCARD_AFTER_USE, False):
            record.invalidate()

    return engine


def sqlite_begin(pooled: Any, driver_error: type[Exception], *, write: bool, flush: bool) -> None:
    """Begin a transaction on a pooled SQLite connection: ``BEGIN IMMEDIATE`` for a writer, after setting
    the flush of its commit (``PRAGMA synchronous``: FULL for every transaction but those that asked; SQLite
    refuses the change inside a transaction, so it is set here, before BEGIN, and only when it changes). On
    the driver's connection: SQLAlchemy's execution path costs ~25 µs more, twice a request."""
    mode = "IMMEDIATE" if write else "DEFERRED"
    level = "FULL" if flush else "NORMAL"
    driver = pooled.driver_connection
    held = pooled.info  # the pooled connection's, kept across checkouts
    try:
        if held.get(SYNCHRONOUS, "FULL") != level:
            driver.execute(f"PRAGMA synchronous={level}")
            held[SYNCHRONOUS] = level
        driver.execute(f"BEGIN {mode}")
    except driver_error as exc:
        raise sa_exc.DBAPIError.instance(f"BEGIN {mode}", (), exc, driver_error) from exc


def is_unavailable(exc: BaseException) -> bool:
    """True for database errors that mean "the database cannot serve now", not "this request is wrong"."""
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated


_RACE_SQLSTATES = {"23505", "40001", "40P01"}  # unique violation, serialization failure, deadlock


def is_race(exc: BaseException) -> bool:
    """A conflict with a concurrent transaction that re-running the operation resolves: a unique
    violation (someone inserted the same row first), a serialization failure or a deadlock."""
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None)
    if state in _RACE_SQLSTATES:
        return True
    return isinstance(exc, sa_exc.IntegrityError) and "UNIQUE constraint failed" in str(orig)


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """Map the database driver's failures to :class:`~gateway.errors.DatabaseUnavailable` (one place)."""
    try:
        yield
    except errors.LienthongError:
        raise
    except sa_exc.SQLAlchemyError as exc:
        if is_race(exc):
            raise  # Database.run decides whether to re-run
        if is_unavailable(exc):
            log.error("database unavailable: %s", exc.__class__.__name__, exc_info=exc)
            raise errors.DatabaseUnavailable(
                "the gateway's database is not available right now; nothing was changed, try again later"
            ) from exc
        raise


class WriterLock:
    """One writing transaction at a time on a SQLite file, across the threads and processes of every gateway
    on it. Writers wait in the kernel (``flock``) and are woken when the lock is free, instead of in SQLite's
    busy handler, which polls with sleeps of up to 100 ms and gave sendEdoc a p99 of hundreds of ms under
    load. A process that dies releases it. Reentrant within a thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._thread = threading.RLock()
        self._fd: int | None = None
        self._pid = 0
        self._depth = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._thread:
            if self._depth == 0:
                if self._fd is None or self._pid != os.getpid():  # not a descriptor inherited over fork
                    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                    self._pid = os.getpid()
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)


class Database:
    """The engine and the session factory of one gateway process."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, autoflush=True)
        parsed = make_url(url)
        path = parsed.database if parsed.get_backend_name() == "sqlite" else None
        self._writer = WriterLock(f"{path}.writer-lock") if path and path != ":memory:" and fcntl else None

    @property
    def backend(self) -> str:
        return self.engine.url.get_backend_name()

    @contextlib.contextmanager
    def unit_of_work(self, *, write: bool = False, flush: bool = True) -> Iterator[Session]:
        """A session in one transaction. Nothing is kept unless the block calls ``session.commit()``.

        ``flush=False`` (a write, SQLite): the commit returns without waiting for the disk
        (``PRAGMA synchronous=NORMAL`` for this transaction; every other one is ``FULL``). A crash of the
        machine, not of the gateway, can lose such a transaction, and only among the newest: the database
        stays consistent (the log is written in order), and the next flushed commit makes it durable too.
        Only for what the operator accepts to lose that way (getEdoc's first-fetch mark, with
        ``flush_fetch_marks`` off), never for what the gateway answered with a receipt. PostgreSQL flushes every commit: its concurrent commits share a flush,
        so a flush does not hold up other writers there as SQLite's writer lock does."""
        writer = self._writer.hold() if write and self._writer is not None else contextlib.nullcontext()
        with writer, database_errors(), self._sessions() as session:
            try:
                if write:
                    from gateway.store.raw import Raw  # raw.py imports this module

                    options = {"lienthong_write": True, "lienthong_flush": flush}
                    Raw.begin(session, session.connection(execution_options=options))
                yield session
            finally:
                session.rollback()

    @contextlib.contextmanager
    def reader(self) -> Iterator[Reader]:
        """Reads outside any transaction (see :class:`gateway.store.raw.Reader`); failures are mapped as in
        a unit of work, and a connection that failed is closed rather than pooled."""
        from gateway.store.raw import Raw, Reader  # raw.py imports this module

        driver_error = self.engine.dialect.loaded_dbapi.Error
        with database_errors():
            pooled = self._checkout()
            pg = self.backend == "postgresql"
            broken = False
            raw = None
            try:
                if pg:
                    try:
                        pooled.driver_connection.autocommit = True
                    except driver_error as exc:  # lost right after the pool's ping
                        raise sa_exc.DBAPIError.instance("autocommit", (), exc, driver_error) from exc
                raw = Raw.over(pooled, self.engine.dialect)
                yield Reader(raw)
            except sa_exc.DBAPIError:
                broken = True
                raise
            finally:
                try:
                    if raw is not None:
                        raw.close()
                    if pg and not broken:
                        pooled.driver_connection.autocommit = False  # the pool's next user begins
                except Exception:  # noqa: BLE001 - the connection is unusable: not pooled again
                    broken = True
                if broken:
                    pooled.invalidate()
                pooled.close()

    def _checkout(self) -> Any:
        """A pooled DBAPI connection (the pool's checkout ping included)."""
        driver_error = self.engine.dialect.loaded_dbapi.Error
        try:
            return self.engine.raw_connection()
        except driver_error as exc:  # the pool hands connect failures over unwrapped
            raise sa_exc.DBAPIError.instance("connect", (), exc, driver_error) from exc

    @contextlib.contextmanager
    def transaction(self, *, flush: bool = True) -> Iterator[Transaction]:
        """A write transaction without the ORM (see :class:`gateway.store.raw.Transaction`): the writer lock
        and ``BEGIN IMMEDIATE`` on SQLite, as :meth:`unit_of_work` takes them, on a pooled DBAPI connection
        that no Session wraps (a Session, its connection and their commit cost ~130 µs of CPU per
        transaction). Nothing is kept unless the block calls ``commit()``; failures are mapped as in a unit of
        work, and a connection that failed is closed rather than pooled."""
        from gateway.store.raw import Raw, Transaction  # raw.py imports this module

        writer = self._writer.hold() if self._writer is not None else contextlib.nullcontext()
        with writer, database_errors():
            pooled = self._checkout()
            raw = None
            tx = None
            broken = False
            try:
                raw = Raw.over(pooled, self.engine.dialect)
                if not raw.pg:  # psycopg begins with the first statement
                    sqlite_begin(pooled, self.engine.dialect.loaded_dbapi.Error, write=True, flush=flush)
                tx = Transaction(raw)
                yield tx
            except sa_exc.DBAPIError as exc:
                broken = is_unavailable(exc)
                raise
            finally:
                try:
                    if tx is None or not tx.committed:
                        pooled.driver_connection.rollback()
                    if raw is not None:
                        raw.close()
                except Exception:  # noqa: BLE001 - the connection is unusable: not pooled again
                    broken = True
                if broken:
                    pooled.invalidate()
                pooled.close()

    def run(
        self,
        operation: Callable[[Session], T],
        *,
        write: bool = True,
        retries: int = 1,
        flush: bool = True,
        orm: bool = True,
    ) -> T:
        """Run ``operation(session)`` in one transaction; it calls ``session.commit()`` itself.

        Losing a race to a concurrent transaction (:func:`is_race`: a unique row inserted first, a
        serialization failure, a deadlock) re-runs the whole operation, which then sees the other
        request's work. Any other database error is not retried.

        ``orm=False`` (a write): the operation's statements all go through ``Raw.of(session)``, and it is
        given a :class:`gateway.store.raw.Transaction` (:meth:`transaction`) instead of a Session.
        """
        attempt = 0
        while True:
            try:
                if not orm and write:
                    with self.transaction(flush=flush) as tx:
                        return operation(tx)  # type: ignore[arg-type]
                with self.unit_of_work(write=write, flush=flush) as session:
                    return operation(session)
            except sa_exc.DBAPIError as exc:
                if not is_race(exc):
                    raise
                if attempt >= retries:
                    if isinstance(exc, sa_exc.IntegrityError):
                        raise
                    log.error(
                        "database contention did not clear after %d attempts", attempt + 1, exc_info=exc
                    )
                    raise errors.DatabaseUnavailable(
                        "the gateway's database is too busy right now; nothing was changed, try again"
                    ) from exc
                attempt += 1
                log.info("retrying after losing a race with a concurrent request")

    def dispose(self) -> None:
        self.engine.dispose()
