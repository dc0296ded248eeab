"""A sendEdoc must not cost more as the sender's history grows, nor a getEdoc and its updateStatus as the
recipient's: every statement on their paths finds its rows through an index on the columns it asks for,
not by walking earlier packets or deliveries.

SQLite has no statistics unless ANALYZE is run, so it picks indexes by their shape alone; a condition that
matches a wider index (``sender_code`` + ``message_type``) can lead it to visit every document a ministry
ever sent, on each send. The work SQLite does is counted in virtual-machine instructions (the driver's
progress handler), for one sendEdoc (or one getEdoc + updateStatus done) before and after 4000 earlier
documents of the same sender (delivered to and acknowledged by the same recipient) are added.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event

from tests.support import raw
from tests.support.packets import new_document
from tests.support.world import G22, H41

HISTORY = 4000
STEP = 10  # instructions per progress-handler call


@pytest.fixture()
def counted_app(world, backend):
    if backend != "sqlite":
        pytest.skip("counts SQLite's virtual-machine instructions")
    app = world.app()
    counter = [0]

    def tick() -> int:
        counter[0] += STEP
        return 0  # 0: go on

    @event.listens_for(app.axis.db.engine, "connect")
    def _count(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.set_progress_handler(tick, STEP)

    app.axis.db.engine.dispose()  # connections made while the app was built have no handler
    yield app, counter
    app.axis.db.dispose()


def _send(app, world, counter) -> int:
    packet = world.seal(new_document(G22, [H41]), G22)
    body = raw.envelope(raw.send_edoc_payload(packet), raw.security_header("vpcp", world.secrets["vpcp"]))
    before = counter[0]
    status, answer = raw.in_process(app, body)
    assert status.startswith("200"), answer[:400]
    assert b"duplicate>false<" in answer
    return counter[0] - before


def _add_history(world, count: int, tag: str = "hist") -> None:
    """``count`` earlier documents of G22, copies of one it sent, each with its own docId (``tag-N``),
    digest and DocumentId (what years of sending leave behind)."""
    with world.db.engine.begin() as conn:
        columns = [row[1] for row in conn.exec_driver_sql("PRAGMA table_info(packets)") if row[1] != "id"]
        made = {
            "doc_id": f"'{tag}-' || n.i",
            "sha256": "lower(hex(randomblob(32)))",
            "document_id": f"'{tag}-' || n.i || ',' || document_id",
        }
        select = ", ".join(made.get(c, c) for c in columns)
        conn.exec_driver_sql(
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) "
            f"INSERT INTO packets ({', '.join(columns)}) SELECT {select} FROM n, "
            "(SELECT * FROM packets WHERE sender_code = ? AND message_type = 'edoc' ORDER BY id LIMIT 1)",
            (G22,),
        )


def _add_delivered_history(world, count: int) -> None:
    """As :func:`_add_history`, each earlier document also delivered to H41 and acknowledged done (a copy
    of a delivery of the same sender's first document, on the copy's packet)."""
    _add_history(world, count, "delivered")
    with world.db.engine.begin() as conn:
        columns = [row[1] for row in conn.exec_driver_sql("PRAGMA table_info(deliveries)") if row[1] != "id"]
        made = {"packet_id": "h.id", "state": "'done'"}
        select = ", ".join(made.get(c, f"d.{c}") for c in columns)
        conn.exec_driver_sql(
            f"INSERT INTO deliveries ({', '.join(columns)}) SELECT {select} FROM packets h, "
            "(SELECT * FROM deliveries WHERE recipient_code = ? ORDER BY id LIMIT 1) d "
            "WHERE h.doc_id LIKE 'delivered-%'",
            (H41,),
        )


def _reorder_indexes(world, reverse: bool, tables: tuple[str, ...] = ("packets",)) -> None:
    """Drop and re-create the tables' indexes in order (or in reverse). Without statistics SQLite settles
    a tie between two indexes by their order in the schema, which the migrations do not fix: the same
    database can be fast or slow depending on it, so both orders are measured."""
    with world.db.engine.begin() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN ({', '.join('?' * len(tables))}) "
            "AND sql IS NOT NULL",
            tables,
        ).fetchall()
        for name, sql in sorted(rows, reverse=reverse):
            conn.exec_driver_sql(f'DROP INDEX "{name}"')
            conn.exec_driver_sql(sql)


def test_send_cost_does_not_grow_with_the_senders_history(world, counted_app):
    app, counter = counted_app
    for _ in range(3):  # warm: the first sends of a process load keys and policies
        _send(app, world, counter)
    small = min(_send(app, world, counter) for _ in range(3))
    _add_history(world, HISTORY)
    large = 0
    for reverse in (False, True):
        _reorder_indexes(world, reverse)
        large = max(large, min(_send(app, world, counter) for _ in range(3)))
    # visiting the 4000 earlier documents costs tens of thousands of instructions; a lookup by index a few
    # dozen more (a deeper B-tree)
    assert small > 0, "the progress handler counted nothing"
    assert large < small * 1.25 + 500, (small, large)


def _fetch_and_ack(app, world, counter) -> int:
    """Send one document to H41 (not counted), then count its getEdoc and updateStatus done."""
    packet = world.seal(new_document(G22, [H41]), G22)
    body = raw.envelope(raw.send_edoc_payload(packet), raw.security_header("vpcp", world.secrets["vpcp"]))
    status, answer = raw.in_process(app, body)
    assert status.startswith("200"), answer[:400]
    doc_id = answer.split(b"docId>", 1)[1].split(b"<", 1)[0].decode()
    header = raw.security_header("nghean", world.secrets["nghean"])
    before = counter[0]
    for payload in (
        f"<tns:getEdoc><tns:docId>{doc_id}</tns:docId></tns:getEdoc>",
        f"<tns:updateStatus><tns:docId>{doc_id}</tns:docId><tns:status>done</tns:status></tns:updateStatus>",
    ):
        status, answer = raw.in_process(app, raw.envelope(payload, header))
        assert status.startswith("200"), answer[:400]
        assert b"Fault" not in answer
    return counter[0] - before


def test_fetch_and_ack_cost_does_not_grow_with_the_recipients_history(world, counted_app):
    app, counter = counted_app
    for _ in range(3):
        _fetch_and_ack(app, world, counter)
    small = min(_fetch_and_ack(app, world, counter) for _ in range(3))
    _add_delivered_history(world, HISTORY)
    with world.db.engine.connect() as conn:
        done = conn.exec_driver_sql(
            "SELECT count(*) FROM deliveries WHERE recipient_code = ? AND state = 'done'", (H41,)
        ).scalar()
    assert done >= HISTORY
    large = 0
    for reverse in (False, True):
        _reorder_indexes(world, reverse, ("packets", "deliveries"))
        large = max(large, min(_fetch_and_ack(app, world, counter) for _ in range(3)))
    assert small > 0, "the progress handler counted nothing"
    assert large < small * 1.25 + 500, (small, large)
