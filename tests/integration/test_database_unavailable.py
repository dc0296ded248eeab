"""The database unavailable: a ``Server.Database.Unavailable`` fault with no internals, and the gateway
recovers by itself when the database comes back."""

from __future__ import annotations

import pytest

from lienthong_client import GatewayFault, LienthongClient
from tests.support.packets import new_document
from tests.support.pgserver import PostgresServer
from tests.support.world import G22, H41, World

INTERNALS = (
    "Traceback",
    "sqlalchemy",
    "psycopg",
    "sqlite",
    "OperationalError",
    "connection",
    "5432",
    "127.0.0.1",
)


def assert_unavailable(call, gateway_log) -> None:
    with pytest.raises(GatewayFault) as caught:
        call()
    fault = caught.value
    assert fault.code == "Server.Database.Unavailable"
    assert not any(word.lower() in fault.message.lower() for word in INTERNALS), fault.message
    assert fault.correlation_id in gateway_log()


def test_postgresql_down_then_back(tmp_path, pg_server):
    # a server of its own, so stopping it disturbs no other test
    with PostgresServer() as server:
        world = World(tmp_path, server.create_database("lienthong_outage")).setup().start()
        try:
            vpcp = world.client("vpcp")
            first = vpcp.send(new_document(G22, [H41]))
            server.pause()
            try:
                assert_unavailable(lambda: vpcp.send(new_document(G22, [H41])), world.gateway.log_text)
                assert_unavailable(lambda: vpcp.sent(), world.gateway.log_text)
                assert world.gateway.is_running()
            finally:
                server.resume()
            # back: the gateway reconnects without a restart, and nothing was lost or half-written
            rows = vpcp.sent()
            assert [r.docId for r in rows] == [first.docId]
            assert vpcp.send(new_document(G22, [H41])).docId
        finally:
            world.stop()


def test_postgresql_connections_lost_while_idle_are_replaced(tmp_path, pg_server):
    """A pooled connection the server dropped while it sat idle (a restart, ``idle_session_timeout``, a
    firewall) is checked before use and replaced: the next request succeeds. Only a connection used less
    than ``PING_AFTER_IDLE_S`` ago is taken unchecked."""
    import time

    import psycopg

    from gateway.store.db import PING_AFTER_IDLE_S

    name = "lienthong_idle_loss"
    world = World(tmp_path, pg_server.create_database(name)).setup().start()
    try:
        vpcp = world.client("vpcp")
        first = vpcp.send(new_document(G22, [H41]))  # both workers may now hold pooled connections
        vpcp.sent()
        with psycopg.connect(pg_server.dsn(name), autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            ).fetchone()[0]
        assert killed >= 1  # the gateway's pooled connections are gone
        time.sleep(PING_AFTER_IDLE_S + 0.2)
        for _ in range(4):  # enough calls to reach every worker's pool
            assert [r.docId for r in vpcp.sent()] == [first.docId]
        assert vpcp.send(new_document(G22, [H41])).docId
        assert "Server.Database.Unavailable" not in world.gateway.log_text()
    finally:
        world.stop()


def test_sqlite_file_that_cannot_be_opened(tmp_path):
    from gateway.launcher import GatewayProcess

    with GatewayProcess(tmp_path, database_url="sqlite:////nonexistent-dir/lienthong.db") as gw:
        client = LienthongClient(gw.url, "vpcp", "s" * 43, timeout=30)
        assert_unavailable(lambda: client.agencies(), gw.log_text)
        assert gw.is_running()
