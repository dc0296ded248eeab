"""Throwaway PostgreSQL servers for the test suite (real servers, no mocks).

Typical use in a test module or ``conftest.py``::

    import pytest

    from tests.support.pgserver import PostgresServer, pg_skip_reason


    @pytest.fixture(scope="session")
    def pg_server():
        reason = pg_skip_reason()
        if reason is not None:
            pytest.skip(reason)
        with PostgresServer() as server:
            yield server


    def test_something(pg_server):
        url = pg_server.create_database("lienthong_test")
        # url == "postgresql+psycopg://postgres@127.0.0.1:<port>/lienthong_test"
        ...


    def test_database_down(pg_server):
        pg_server.pause()  # server stopped, data directory kept
        try:
            ...  # exercise the "database unavailable" code path
        finally:
            pg_server.resume()  # same port, same data

Each :class:`PostgresServer` gets its own temporary directory holding the data
directory (``data/``), the Unix socket directory (``sock/``) and the server
log (``postgres.log``).  The server listens on ``127.0.0.1`` only, on a free
TCP port, and trusts every local connection as the superuser ``postgres``
(no password).  Several servers can run at the same time.

PostgreSQL refuses to run as root.  When the tests run as root (e.g. in a
container), ``initdb``, ``pg_ctl`` and ``createdb`` are run as the
``postgres`` system user (via ``runuser``, ``setpriv`` or ``su``) and the
temporary directory, created under ``/tmp``, is handed over to that user.

Only the standard library is used; readiness is established by
``pg_ctl -w``.
"""

import contextlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import weakref
from pathlib import Path
from urllib.parse import quote

__all__ = ["PostgresServer", "find_pg_bin", "pg_skip_reason"]

#: Executables that must all live in the directory returned by find_pg_bin().
REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")

#: Name of the superuser created by initdb and of the OS user used as root.
SUPERUSER = "postgres"
HOST = "127.0.0.1"

_INSTALL_HINT = "install postgresql; .ci/run does"
_STARTUP_TIMEOUT = 60  # seconds, passed to pg_ctl -t
_COMMAND_TIMEOUT = 180  # seconds, hard limit for any helper command
_PORT_ATTEMPTS = 5
_LOG_TAIL_LINES = 60
# sun_path is 108 bytes on Linux, 104 on macOS/BSD (including the NUL).
_MAX_SOCKET_PATH = 103
# Environment variables read by libpq/pg_ctl that could redirect our commands.
_PG_ENV_VARS = (
    "PGDATA",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGSSLMODE",
    "PGCONNECT_TIMEOUT",
    "PGTZ",
    "PGCLIENTENCODING",
)


# --------------------------------------------------------------------------
# Locating binaries / deciding whether tests can run
# --------------------------------------------------------------------------


def _has_binaries(directory: Path) -> bool:
    return all(
        (directory / name).is_file() and os.access(directory / name, os.X_OK) for name in REQUIRED_BINARIES
    )


def _version_key(path: Path) -> tuple[int, tuple[int, ...]]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin`` (numeric versions first)."""
    version = path.parent.name
    if re.fullmatch(r"\d+(\.\d+)*", version):
        return (1, tuple(int(part) for part in version.split(".")))
    return (0, ())


def find_pg_bin() -> Path | None:
    """Return the directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    Looked up, in order:

    1. ``$PG_BIN`` (ignored if it does not contain all three executables);
    2. the directory of ``pg_ctl`` found on ``$PATH``, after resolving
       symlinks (so ``/usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin/pg_ctl``
       yields ``/usr/lib/postgresql/15/bin``);
    3. ``/usr/lib/postgresql/*/bin`` (Debian/Ubuntu layout), newest version
       first.

    Returns ``None`` when no such directory exists.
    """
    env_dir = os.environ.get("PG_BIN")
    if env_dir:
        candidate = Path(env_dir).expanduser()
        if _has_binaries(candidate):
            return candidate.resolve()

    on_path = shutil.which("pg_ctl")
    if on_path:
        candidate = Path(on_path).resolve().parent
        if _has_binaries(candidate):
            return candidate

    debian_dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for candidate in debian_dirs:
        if _has_binaries(candidate):
            return candidate
    return None


def _is_root() -> bool:
    geteuid = getattr(os, "geteuid", None)
    return geteuid is not None and geteuid() == 0


def _postgres_account() -> tuple[int, int] | None:
    """(uid, gid) of the ``postgres`` system user, or None if there is none."""
    try:
        import pwd
    except ImportError:  # pragma: no cover - non-POSIX
        return None
    try:
        entry = pwd.getpwnam(SUPERUSER)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def _user_switch_prefix(uid: int, gid: int) -> list[str] | None:
    """Command prefix running a command as the postgres user (None: no tool).

    ``su`` needs the command as a single shell string, so it is signalled by
    the sentinel prefix ``["su"]`` and handled in :func:`_wrap_command`.
    """
    if shutil.which("runuser"):
        return ["runuser", "-u", SUPERUSER, "--"]
    if shutil.which("setpriv"):
        return [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={gid}",
            "--init-groups",
            "--",
        ]
    if shutil.which("su"):
        return ["su"]
    return None


def _wrap_command(prefix: list[str], command: list[str]) -> list[str]:
    if prefix == ["su"]:
        return ["su", "-s", "/bin/sh", "-c", shlex.join(command), SUPERUSER]
    return [*prefix, *command]


def pg_skip_reason() -> str | None:
    """Why PostgreSQL-backed tests cannot run here, or None if they can.

    Meant for ``pytest.skip(reason)`` / ``pytest.mark.skipif``::

        reason = pg_skip_reason()
        if reason:
            pytest.skip(reason)
    """
    if find_pg_bin() is None:
        reason = f"PostgreSQL server binaries not found ({_INSTALL_HINT})"
        env_dir = os.environ.get("PG_BIN")
        if env_dir:
            reason += f"; PG_BIN={env_dir!r} lacks {', '.join(REQUIRED_BINARIES)}"
        return reason
    if _is_root():
        account = _postgres_account()
        if account is None:
            return (
                "running as root, but there is no 'postgres' system user to run "
                f"the PostgreSQL server as ({_INSTALL_HINT})"
            )
        if _user_switch_prefix(*account) is None:
            return (
                "running as root, but none of runuser/setpriv/su is available to "
                "run the PostgreSQL server as the 'postgres' user"
            )
    return None


def _free_port(host: str = HOST) -> int:
    """A TCP port that is free right now (bind to port 0 and release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _cleanup_leftovers(command_prefix: list[str] | None, pg_ctl: str, data_dir: str, tmp_dir: str) -> None:
    """Last-resort cleanup (garbage collection / interpreter exit).

    Stops the server immediately if it is still running and removes the
    temporary directory.  Must not reference the PostgresServer instance.
    """
    if os.path.exists(os.path.join(data_dir, "postmaster.pid")):
        command = [pg_ctl, "-D", data_dir, "-m", "immediate", "-w", "-t", "30", "stop"]
        if command_prefix is not None:
            command = _wrap_command(command_prefix, command)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=tmp_dir,
                timeout=60,
                check=False,
            )
    shutil.rmtree(tmp_dir, ignore_errors=True)


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


class PostgresServer:
    """A throwaway PostgreSQL server in a fresh temporary directory.

    Use it as a context manager (``with PostgresServer() as server: ...``)
    or call :meth:`start` / :meth:`stop` explicitly.

    ``base_dir`` is the directory in which the temporary directory is
    created; by default ``/tmp`` when running as root (the ``postgres`` user
    must be able to traverse every parent) and the platform temporary
    directory otherwise.  Keep it short: the Unix socket path must fit in
    about 100 bytes.

    Lifecycle:

    * :meth:`start` - ``initdb`` + ``pg_ctl start``; raises RuntimeError with
      the tail of the server log if the server does not come up;
    * :meth:`pause` - stop the server but keep its data (simulates "database
      unavailable"); :meth:`resume` - start it again on the same port;
    * :meth:`stop` - stop the server and delete the temporary directory.

    Connecting: :attr:`url` / :meth:`url_for` give SQLAlchemy URLs
    (``postgresql+psycopg://postgres@127.0.0.1:<port>/<db>``), :meth:`dsn`
    gives a libpq conninfo string for ``psycopg.connect``.
    """

    def __init__(self, base_dir: Path | None = None) -> None:
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.host = HOST
        self.port: int | None = None
        self.bin_dir: Path | None = None
        self.tmp_dir: Path | None = None
        self._command_prefix: list[str] | None = None
        self._finalizer: weakref.finalize | None = None

    # -- context manager -----------------------------------------------------

    def __enter__(self) -> "PostgresServer":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.tmp_dir and self.is_running() else "stopped"
        return f"<PostgresServer {self.host}:{self.port} {state} dir={self.tmp_dir}>"

    # -- paths -----------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory (PGDATA)."""
        return self._require_tmp_dir() / "data"

    @property
    def socket_dir(self) -> Path:
        """Directory holding the server's Unix-domain socket."""
        return self._require_tmp_dir() / "sock"

    @property
    def log_path(self) -> Path:
        """The server log file (written by ``pg_ctl -l``)."""
        return self._require_tmp_dir() / "postgres.log"

    def _require_tmp_dir(self) -> Path:
        if self.tmp_dir is None:
            raise RuntimeError("PostgresServer has not been started")
        return self.tmp_dir

    # -- connection strings ------------------------------------------------------

    def url_for(self, dbname: str) -> str:
        """SQLAlchemy URL (psycopg v3 driver) for database ``dbname``."""
        if self.port is None:
            raise RuntimeError("PostgresServer has not been started")
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    @property
    def url(self) -> str:
        """SQLAlchemy URL for the default ``postgres`` database."""
        return self.url_for("postgres")

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq conninfo string, e.g. for ``psycopg.connect(server.dsn())``."""
        if self.port is None:
            raise RuntimeError("PostgresServer has not been started")

        def value(text: str) -> str:
            return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

        return f"host={self.host} port={self.port} user={SUPERUSER} dbname={value(dbname)}"

    # -- running commands ----------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _PG_ENV_VARS}
        env.setdefault("LC_MESSAGES", "C")
        return env

    def _run(self, command: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL tool (as the postgres user when we are root)."""
        if self._command_prefix is not None:
            command = _wrap_command(self._command_prefix, command)
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            cwd=self.tmp_dir,
            env=self._env(),
            timeout=_COMMAND_TIMEOUT,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"command failed (exit {result.returncode}): {shlex.join(command)}\n{_output(result)}"
            )
        return result

    def _tool(self, name: str) -> str:
        assert self.bin_dir is not None
        path = self.bin_dir / name
        if not path.exists():  # e.g. createdb missing from a custom $PG_BIN
            return shutil.which(name) or str(path)
        return str(path)

    def log_tail(self, lines: int = _LOG_TAIL_LINES, offset: int = 0) -> str:
        """The last ``lines`` lines of the server log (from byte ``offset``)."""
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except (OSError, RuntimeError):
            return "(no server log)"
        text = data.decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:]) or "(server log is empty)"

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Create a fresh cluster and start the server.

        Raises RuntimeError (with the tail of the server log when there is
        one) if PostgreSQL is unavailable or the server does not start.
        """
        if self.tmp_dir is not None:
            raise RuntimeError("PostgresServer already started; call stop() first")
        reason = pg_skip_reason()
        if reason is not None:
            raise RuntimeError(reason)
        self.bin_dir = find_pg_bin()

        account = None
        if _is_root():
            account = _postgres_account()
            assert account is not None  # checked by pg_skip_reason()
            self._command_prefix = _user_switch_prefix(*account)

        base = self.base_dir
        if base is None and account is not None:
            base = Path("/tmp")
        tmp_dir = Path(tempfile.mkdtemp(prefix="lienthong-pg-", dir=base)).resolve()
        self.tmp_dir = tmp_dir
        self._finalizer = weakref.finalize(
            self,
            _cleanup_leftovers,
            self._command_prefix,
            self._tool("pg_ctl"),
            str(self.data_dir),
            str(tmp_dir),
        )
        try:
            # The postgres user (when we are root) must be able to traverse it.
            os.chmod(tmp_dir, 0o755)  # noqa: S103
            self.socket_dir.mkdir(mode=0o700)
            if account is not None:
                os.chown(tmp_dir, *account)
                os.chown(self.socket_dir, *account)
                self._check_postgres_user_access()
            self._check_socket_path()
            self._initdb()
            self._start_on_free_port()
        except BaseException:
            self._discard()
            raise

    def _check_postgres_user_access(self) -> None:
        result = self._run(["test", "-w", str(self.tmp_dir)], check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"the 'postgres' user cannot access {self.tmp_dir}; every parent "
                "directory must be traversable by it (use a base_dir under /tmp)"
                + (f"\n{_output(result)}" if _output(result) else "")
            )

    def _check_socket_path(self) -> None:
        socket_dir = str(self.socket_dir)
        if "," in socket_dir or '"' in socket_dir:
            raise RuntimeError(f"socket directory path {socket_dir!r} must not contain ',' or '\"'")
        longest = os.path.join(socket_dir, ".s.PGSQL.65535.lock")
        if len(longest.encode()) > _MAX_SOCKET_PATH:
            raise RuntimeError(
                f"socket path {longest!r} is too long for a Unix socket; pass a shorter base_dir"
            )

    def _initdb(self) -> None:
        common = [
            self._tool("initdb"),
            "-D",
            str(self.data_dir),
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--no-instructions",
        ]
        first = self._run([*common, "--locale=C.UTF-8"], check=False)
        if first.returncode == 0:
            return
        # C.UTF-8 may be missing (older glibc, other platforms): fall back.
        shutil.rmtree(self.data_dir, ignore_errors=True)
        second = self._run([*common, "--no-locale"], check=False)
        if second.returncode != 0:
            raise RuntimeError(
                "initdb failed.\n"
                f"--- with --locale=C.UTF-8 (exit {first.returncode}):\n"
                f"{_output(first)}\n"
                f"--- with --no-locale (exit {second.returncode}):\n"
                f"{_output(second)}"
            )

    def _start_on_free_port(self) -> None:
        for attempt in range(_PORT_ATTEMPTS):
            self.port = _free_port(self.host)
            try:
                self._pg_ctl_start()
                return
            except _PortInUse:
                if attempt == _PORT_ATTEMPTS - 1:
                    raise RuntimeError(
                        f"could not find a free port after {_PORT_ATTEMPTS} "
                        f"attempts\n--- server log (tail):\n{self.log_tail()}"
                    ) from None

    def _pg_ctl_start(self) -> None:
        assert self.port is not None
        server_options = [
            "-c",
            f"listen_addresses={self.host}",
            "-p",
            str(self.port),
            "-c",
            f"unix_socket_directories={self.socket_dir}",
            "-c",
            "max_connections=100",
        ]
        log_offset = self._log_size()
        result = self._run(
            [
                self._tool("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-o",
                # pg_ctl hands this string to /bin/sh, hence shell quoting.
                shlex.join(server_options),
                "-w",
                "-t",
                str(_STARTUP_TIMEOUT),
                "start",
            ],
            check=False,
        )
        if result.returncode == 0:
            return
        log = self.log_tail(offset=log_offset)
        # A server that did not become ready in time may still be starting.
        self._pg_ctl_stop("immediate", check=False)
        if "Address already in use" in log:
            raise _PortInUse
        raise RuntimeError(
            f"PostgreSQL server failed to start on {self.host}:{self.port} "
            f"(pg_ctl exit {result.returncode}).\n{_output(result)}\n"
            f"--- server log {self.log_path} (tail):\n{log}"
        )

    def _pg_ctl_stop(self, mode: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run(
            [
                self._tool("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                mode,
                "-w",
                "-t",
                str(_STARTUP_TIMEOUT),
                "stop",
            ],
            check=check,
        )

    def is_running(self) -> bool:
        """True if the server process is up (``pg_ctl status``)."""
        if self.tmp_dir is None or self.bin_dir is None:
            return False
        result = self._run([self._tool("pg_ctl"), "-D", str(self.data_dir), "status"], check=False)
        return result.returncode == 0

    def pause(self) -> None:
        """Stop the server (``pg_ctl -m fast stop``) but keep its data.

        Use it to test "database unavailable" behaviour; :meth:`resume`
        brings the same server back on the same port.  No-op if the server
        is not running.
        """
        self._require_tmp_dir()
        if not self.is_running():
            return
        result = self._pg_ctl_stop("fast", check=False)
        if result.returncode != 0 and self.is_running():
            raise RuntimeError(
                f"could not stop the PostgreSQL server:\n{_output(result)}\n"
                f"--- server log (tail):\n{self.log_tail()}"
            )

    def resume(self) -> None:
        """Start a paused server again on the same port (no-op if running).

        Raises RuntimeError with the server log tail if it does not start
        (for instance because another process took the port meanwhile).
        """
        self._require_tmp_dir()
        if self.is_running():
            return
        try:
            self._pg_ctl_start()
        except _PortInUse:
            raise RuntimeError(
                f"cannot resume: port {self.port} is now in use by another process"
                f"\n--- server log (tail):\n{self.log_tail()}"
            ) from None

    def stop(self) -> None:
        """Stop the server (``pg_ctl -m fast stop``) and delete its directory.

        Idempotent; safe to call on a paused or never-started server.
        """
        if self.tmp_dir is None:
            return
        try:
            if self.is_running():
                result = self._pg_ctl_stop("fast", check=False)
                if result.returncode != 0 and self.is_running():
                    self._pg_ctl_stop("immediate", check=False)
        finally:
            self._discard()

    def _discard(self) -> None:
        """Forget the temporary directory (stopping anything still running)."""
        if self._finalizer is not None:
            # Runs _cleanup_leftovers now: immediate stop if still up, rmtree.
            self._finalizer()
            self._finalizer = None
        elif self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self.tmp_dir = None
        self.port = None

    # -- databases ---------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create database ``name`` (with ``createdb``); return its SQLAlchemy URL."""
        if not self.is_running():
            raise RuntimeError("PostgresServer is not running")
        self._run(
            [
                self._tool("createdb"),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "--no-password",
                "--",
                name,
            ]
        )
        return self.url_for(name)


class _PortInUse(Exception):
    """Internal: the server could not bind its TCP port."""


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return "\n".join(part.strip() for part in (result.stdout, result.stderr) if part and part.strip())
