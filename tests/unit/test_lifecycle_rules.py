"""The document's life as pure rules: which status may follow which, what recalls, updates and replaces
ask, and the working-day deadline of the same-day rule."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway import errors
from gateway.core import lifecycle
from gateway.core.lifecycle import Original, RecipientFacts, check_status, plan_successor
from gateway.core.packet import RECALL, REPLACE, UPDATE, Business, Packet
from gateway.core.workdays import WorkingCalendar, parse_days


def facts(sent=(), fetched=True, state=None):
    return RecipientFacts("H41", "G22,2026/12/04,1/TEST", fetched, {c: f"doc-{c}" for c in sent}, state)


@pytest.mark.parametrize(
    ("code", "sent", "fetched", "state", "error"),
    [
        ("03", (), False, None, errors.StatusNotDelivered),
        ("01", (), False, None, errors.StatusNotDelivered),
        ("02", (), False, None, errors.StatusNotDelivered),
        ("04", ("01",), True, None, errors.StatusOutOfOrder),
        ("01", ("03",), True, None, errors.StatusOutOfOrder),
        ("05", ("03", "06"), True, None, errors.StatusOutOfOrder),
        ("02", ("03",), True, None, errors.StatusOutOfOrder),
        ("03", ("02",), True, None, errors.StatusAfterRejection),
        ("15", (), True, None, errors.StatusNoPendingRequest),
        ("16", ("15",), True, "recalled", errors.StatusAlreadyAnswered),
        ("15", ("16",), True, "update-refused", errors.StatusAlreadyAnswered),
        ("05", ("03", "15"), True, "recalled", errors.StatusDocumentRecalled),
    ],
)
def test_refused_statuses_name_their_rule(code, sent, fetched, state, error):
    with pytest.raises(error) as caught:
        check_status(code, facts(sent, fetched, state))
    assert code in caught.value.message and caught.value.fields["status_code"] == code


@pytest.mark.parametrize(
    ("code", "sent", "state"),
    [
        ("01", (), None),
        ("03", (), None),
        ("03", ("01",), None),
        ("04", ("01", "03"), None),
        ("06", ("03",), None),
        ("02", ("01",), None),
        ("15", ("02",), "recall-requested"),  # a rejected document may still be recalled
        ("16", ("06",), "update-requested"),
        ("05", ("03", "16"), "recall-refused"),  # a refused recall: work goes on
        ("04", ("03", "15"), "updated"),
    ],
)
def test_allowed_statuses(code, sent, state):
    assert check_status(code, facts(sent, True, state)) is None


def test_the_same_status_again_is_the_first_one():
    assert check_status("03", facts(("01", "03"))) == "doc-03"
    assert check_status("02", facts(("02",))) == "doc-02"
    assert check_status("15", facts(("15",), state="recalled")) == "doc-15"


def packet(kind, to, *, ref="G22,1", added=(), removed=(), replacements=()):
    return Packet(
        kind="edoc",
        from_organ="G22",
        to_organs=tuple(to),
        sha256="0" * 64,
        size=1,
        document_id="G22,2",
        business=Business(kind, ref, "lý do", tuple(added), tuple(removed), tuple(replacements)),
    )


ORIGINAL = Original(7, "doc-7", "G22,1", {"H41": None, "H49": "recall-refused", "G01": "recalled"})


def test_a_recall_asks_every_original_recipient_that_has_not_agreed_yet():
    plan = plan_successor(packet(RECALL, ["H41"]), {"G22,1": ORIGINAL})
    assert plan.recipients == ("H41", "H49", "G01")
    assert plan.targets == ((7, "H41"), (7, "H49"))
    with pytest.raises(errors.ReceiverMismatch):
        plan_successor(packet(RECALL, ["K41"]), {"G22,1": ORIGINAL})


def test_an_update_must_account_for_every_original_recipient():
    original = Original(7, "doc-7", "G22,1", {"H41": None, "H49": None})
    plan = plan_successor(packet(UPDATE, ["H41", "G01"], added=["G01"], removed=["H49"]), {"G22,1": original})
    assert plan.recipients == ("H41", "G01", "H49") and plan.targets == ((7, "H41"), (7, "H49"))
    for bad in (
        packet(UPDATE, ["H41"]),  # H49 silently dropped
        packet(UPDATE, ["H41", "H49"], removed=["H49"]),  # removed but still in To
        packet(UPDATE, ["H41", "H49"], added=["G01"]),  # added but not in To
        packet(UPDATE, ["H41", "H49"], removed=["G01"]),  # removes one that never received it
    ):
        with pytest.raises(errors.ReceiverMismatch):
            plan_successor(bad, {"G22,1": original})
    with pytest.raises(errors.OriginalRecalled):
        plan_successor(packet(UPDATE, ["H41", "H49", "G01"]), {"G22,1": ORIGINAL})


def test_a_replace_targets_what_its_replacement_list_names():
    other = Original(9, "doc-9", "G22,0", {"H41": None})
    plan = plan_successor(
        packet(REPLACE, ["H41"], replacements=[("G22,1", ("H41",)), ("G22,0", ("H41",))]),
        {"G22,1": ORIGINAL, "G22,0": other},
    )
    assert plan.targets == ((7, "H41"), (9, "H41")) and plan.origin is ORIGINAL
    with pytest.raises(errors.UnknownOriginal):
        plan_successor(packet(REPLACE, ["H41"], replacements=[("G22,5", ("H41",))]), {"G22,1": ORIGINAL})
    with pytest.raises(errors.MissingOriginalReference):
        lifecycle.references(packet(REPLACE, ["H41"], ref=None))


VN = dt.timezone(dt.timedelta(hours=7))


@pytest.mark.parametrize(
    ("delivered", "due"),
    [
        (dt.datetime(2026, 12, 4, 9, 0, tzinfo=VN), dt.datetime(2026, 12, 4, 17, 0, tzinfo=VN)),  # Friday
        (
            dt.datetime(2026, 12, 4, 17, 0, tzinfo=VN),
            dt.datetime(2026, 12, 7, 17, 0, tzinfo=VN),
        ),  # after cut-off
        (dt.datetime(2026, 12, 5, 10, 0, tzinfo=VN), dt.datetime(2026, 12, 7, 17, 0, tzinfo=VN)),  # Saturday
        (
            dt.datetime(2026, 12, 31, 18, 0, tzinfo=VN),
            dt.datetime(2027, 1, 4, 17, 0, tzinfo=VN),
        ),  # 1/1 holiday
        # late on Thursday in UTC is already Friday morning in Vietnam
        (
            dt.datetime(2026, 12, 3, 23, 30, tzinfo=dt.timezone.utc),
            dt.datetime(2026, 12, 4, 17, 0, tzinfo=VN),
        ),
    ],
)
def test_the_deadline_is_the_end_of_the_working_day_of_delivery(delivered, due):
    calendar = WorkingCalendar(holidays=frozenset({dt.date(2027, 1, 1)}))
    assert calendar.deadline(delivered) == due


def test_working_days_and_a_saturday_shift():
    assert parse_days("mon-fri") == frozenset(range(5))
    assert parse_days("mon-fri,sat") == frozenset(range(6))
    calendar = WorkingCalendar(days=parse_days("mon-sat"), cutoff=dt.time(11, 30))
    assert calendar.deadline(dt.datetime(2026, 12, 5, 10, 0, tzinfo=VN)) == dt.datetime(
        2026, 12, 5, 11, 30, tzinfo=VN
    )
    for bad in ("", "fri-mon", "monday"):
        with pytest.raises(ValueError):
            parse_days(bad)


def test_an_update_skips_recipients_that_gave_the_document_back():
    plan = plan_successor(packet(UPDATE, ["H41", "H49"]), {"G22,1": ORIGINAL})  # G01 agreed to the recall
    assert plan.targets == ((7, "H41"), (7, "H49"))
    plan = plan_successor(packet(UPDATE, ["H41"], removed=["H49", "G01"]), {"G22,1": ORIGINAL})
    assert plan.removed == ("H49",) and plan.recipients == ("H41", "H49")
    pending = Original(7, "doc-7", "G22,1", {"H41": "recall-requested", "H49": None})
    with pytest.raises(errors.OriginalRecalled):
        plan_successor(packet(UPDATE, ["H41", "H49"]), {"G22,1": pending})


def test_a_cutoff_with_an_offset_is_refused():
    from gateway.config import Config
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match="cutoff"):
        Config.from_sources({"LIENTHONG_CUTOFF": "17:00+07:00"}, data_dir="/tmp/x")
    assert Config.from_sources({"LIENTHONG_CUTOFF": "16:30"}, data_dir="/tmp/x").cutoff == dt.time(16, 30)
