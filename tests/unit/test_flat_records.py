"""List answers are written by a fast path for flat records; it must write exactly what spyne's generic
serializer writes for the same values (None members left out, a member named ``from``, times with their
zone, booleans and integers)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from lxml import etree
from spyne.protocol.soap import Soap11

from gateway.soap.app import build_application
from gateway.soap.faults import TNS
from gateway.soap.service import AgencyEntry, OverdueEdoc, ReceivedEdoc, SentEdoc, TraceEvent

AT = dt.datetime(2026, 12, 4, 18, 15, 5, 524041, tzinfo=dt.timezone.utc)
VN = dt.timezone(dt.timedelta(hours=7))

SAMPLES = [
    (
        SentEdoc,
        {
            "docId": "d85ba8bc-dd1c-49b8-a2bb-bb2ec510831a",
            "messageType": "edoc",
            "from_": "000.00.00.G22",
            "documentId": "000.00.00.G22,2026/12/05,1234/VPCP-KSTT",
            "subject": "V/v triển khai <gửi> & nhận",
            "recipient": "000.00.00.H41",
            "acceptedAt": AT,
            "deliveredAt": AT.astimezone(VN),
            "transportState": "done",
            "businessStatus": "16",
            "businessStatusStaff": "Văn thư",
            "lifecycle": "recall-refused",
            "dueAt": AT.replace(microsecond=0),
        },
    ),
    (
        ReceivedEdoc,
        {
            "docId": "x",
            "messageType": "status",
            "to": "000.00.00.G22",
            "from_": "000.00.00.H41",
            "statusCode": "03",
            "createdAt": AT,
            "transportState": "pending",
        },
    ),
    (TraceEvent, {"at": AT, "kind": "status", "recipient": "000.00.00.H41", "code": "15", "detail": ""}),
    (
        OverdueEdoc,
        {
            "docId": "x",
            "from_": "G22",
            "recipient": "H41",
            "acceptedAt": AT,
            "dueAt": AT,
            "businessStatus": None,
        },
    ),
    (AgencyEntry, {"code": "000.00.00.G22", "name": "Văn phòng Chính phủ", "active": False}),
]


@pytest.mark.parametrize(("cls", "fields"), SAMPLES, ids=[c.__name__ for c, _ in SAMPLES])
def test_fast_records_match_spyne(cls, fields):
    protocol = build_application().out_protocol
    fast, generic = etree.Element("root"), etree.Element("root")
    protocol.complex_to_parent(None, cls, SimpleNamespace(**fields), fast, TNS, name=cls.__name__)
    Soap11.complex_to_parent(protocol, None, cls, cls(**fields), generic, TNS, name=cls.__name__)
    assert protocol._flat_plan(cls) is not None, "the fast path must be taken"
    assert etree.tostring(fast, encoding="unicode") == etree.tostring(generic, encoding="unicode")
