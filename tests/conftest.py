"""Fixtures shared by the whole suite.

``world`` is a real gateway (gunicorn over HTTP on 127.0.0.1) on a fresh database, once per test module
and backend: SQLite (a file) and PostgreSQL (a real server the tests start and stop themselves; skipped
with the reason only where no PostgreSQL is installed, and ``.ci/run`` installs it).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from tests.support.pgserver import PostgresServer, pg_skip_reason

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"

_db_counter = itertools.count()
#: the packet size limit of the test gateways (small, so the size refusal is cheap to test)
MAX_PACKET = 512 * 1024


@pytest.fixture(scope="session")
def pg_server():
    reason = pg_skip_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)
    with PostgresServer() as server:
        yield server


def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'lienthong.db'}"
    server = request.getfixturevalue("pg_server")
    return server.create_database(f"lienthong_{os.getpid()}_{next(_db_counter)}")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def world(backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    from tests.support.world import World

    base = tmp_path_factory.mktemp(f"world-{backend}")
    w = World(base, database_url(backend, base, request), env={"LIENTHONG_MAX_PACKET_BYTES": str(MAX_PACKET)})
    w.setup().start()
    yield w
    w.stop()


@pytest.fixture(scope="session")
def schemas():
    from gateway.resources import load_schemas

    return load_schemas()


def read_data(*parts: str) -> bytes:
    return DATA.joinpath(*parts).read_bytes()
