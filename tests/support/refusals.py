"""A refusal, as every test checks it: the declared fault code, a message without internals, a
correlation id that is in the server log, the database exactly as before, and the server still serving."""

from __future__ import annotations

import pytest

from lienthong_client import GatewayFault
from tests.support.world import G22

INTERNALS = ("Traceback", "sqlalchemy", "psycopg", "sqlite3", "OperationalError", 'File "', "127.0.0.1:")


def still_serving(world) -> None:
    assert any(a.code == G22 for a in world.client("vpcp").agencies())


def refused(world, call, code: str) -> GatewayFault:
    """Run ``call``; it must fail with ``code`` and change nothing."""
    before, audit_head = world.snapshot(), world.audit_head()
    with pytest.raises(GatewayFault) as caught:
        call()
    fault = caught.value
    # the one thing a refusal adds: its audit entry, with the fault code and the correlation id
    added = world.audit_entries(audit_head)
    assert [(e["event"], e["code"], e["correlationId"]) for e in added] == [
        ("refused", fault.code, fault.correlation_id)
    ], added
    assert fault.code == code, fault
    assert fault.message and not any(word in fault.message for word in INTERNALS), fault.message
    assert fault.correlation_id and len(fault.correlation_id) >= 16
    assert world.snapshot() == before, "a refused request changed the database"
    still_serving(world)
    assert fault.correlation_id in world.gateway.log_text(), "the correlation id must be in the server log"
    return fault
