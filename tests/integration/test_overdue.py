"""The same-day rule, with the real clock: a gateway whose working day ends a few seconds after it
starts. One recipient confirms in time, one late, one never; `getOverdueList` (the sender's view) and
`lienthong overdue --json` (the operator's) list the two that missed it, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import MAX_PACKET, database_url
from tests.support.packets import new_document, status_for
from tests.support.world import G01, G22, H41, H49, World

VN = ZoneInfo("Asia/Ho_Chi_Minh")
BIN = Path(sys.executable).parent
#: seconds between the gateway's start and the end of its working day
WINDOW = 12


@pytest.fixture(scope="module")
def short_day(backend, tmp_path_factory, request):
    now = dt.datetime.now(VN)
    if (now + dt.timedelta(seconds=WINDOW + 30)).date() != now.date():
        time.sleep(40)  # too close to midnight: a cut-off must fall on the same day
        now = dt.datetime.now(VN)
    cutoff = (now + dt.timedelta(seconds=WINDOW)).replace(microsecond=0)
    base = tmp_path_factory.mktemp(f"overdue-{backend}")
    env = {
        "LIENTHONG_MAX_PACKET_BYTES": str(MAX_PACKET),
        "LIENTHONG_WORKING_DAYS": "mon-sun",
        "LIENTHONG_CUTOFF": cutoff.time().isoformat(),
    }
    world = World(base, database_url(backend, base, request), env=env)
    world.setup().start()
    yield world, cutoff
    world.stop()


def test_recipients_that_missed_the_same_day_rule(short_day):
    world, cutoff = short_day
    vpcp, nghean, quangninh = world.client("vpcp"), world.client("nghean"), world.client("quangninh")
    document = new_document(G22, [H41, H49, G01])
    doc_id = vpcp.send(document).docId
    for client in (nghean, quangninh):
        client.fetch(doc_id)
    nghean.send(status_for(document, H41, "03", "Đã vào sổ"))  # in time
    assert dt.datetime.now(VN) < cutoff, "the test took too long to get here"
    assert [i for i in vpcp.overdue() if i.docId == doc_id] == []  # nothing is due yet

    time.sleep(max(0.0, (cutoff - dt.datetime.now(VN)).total_seconds()) + 1.5)
    quangninh.send(status_for(document, H49, "01"))  # after the end of the day: late

    listed = {i.recipient: i for i in vpcp.overdue() if i.docId == doc_id}
    assert set(listed) == {H49, G01}
    assert listed[H49].answeredAt is not None and listed[H49].businessStatus == "01"
    assert listed[G01].answeredAt is None and listed[G01].deliveredAt is None
    due = listed[G01].dueAt.astimezone(VN)
    assert due.replace(microsecond=0) == cutoff
    assert all(getattr(i, "from") == G22 for i in listed.values())
    # a recipient's own view lists its own sent documents only: H41 sent none
    assert [i for i in nghean.overdue() if i.docId == doc_id] == []
    rows = {r.recipient: r for r in vpcp.sent(doc_id)}
    assert rows[H41].answeredAt <= rows[H41].dueAt < rows[H49].answeredAt

    env = {**os.environ, "LIENTHONG_HOME": str(world.data_dir), "LIENTHONG_DATABASE_URL": world.database_url}
    out = subprocess.run(
        [str(BIN / "lienthong"), "overdue", "--json"], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    report = [r for r in json.loads(out.stdout) if r["docId"] == doc_id]
    assert {r["recipient"]: r["answeredAt"] is None for r in report} == {H49: False, G01: True}
    table = subprocess.run(
        [str(BIN / "lienthong"), "overdue", "--sender", G22],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert table.returncode == 0 and "NOT YET" in table.stdout and G01 in table.stdout
