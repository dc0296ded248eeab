"""Routing rules, as pure functions."""

from __future__ import annotations

import pytest

from gateway import errors
from gateway.core.packet import Limits, read_packet
from gateway.core.routing import AgencyState, Identity, route_document, route_status
from tests.conftest import DATA

G22, H41, H49 = "000.00.00.G22", "000.00.00.H41", "000.00.00.H49"


@pytest.fixture
def doc(schemas):
    return read_packet((DATA / "valid" / "edoc_new.edxml").read_bytes(), schemas, Limits(10**6))


@pytest.fixture
def status(schemas):
    return read_packet((DATA / "valid" / "status_accepted.edxml").read_bytes(), schemas, Limits(10**6))


def directory(*codes, inactive=()):
    return {c: AgencyState(c, c not in inactive) for c in codes}


def test_document_goes_to_every_recipient(doc):
    route = route_document(doc, Identity("vpcp", frozenset({G22})), directory(H41, H49))
    assert route.recipients == (H41, H49)


def test_sender_must_be_one_of_the_callers_agencies(doc):
    with pytest.raises(errors.SenderNotAllowed) as caught:
        route_document(doc, Identity("nghean", frozenset({H41})), directory(H41, H49))
    assert G22 in caught.value.message


def test_unknown_recipient_refuses_the_whole_packet(doc):
    with pytest.raises(errors.UnknownRecipient) as caught:
        route_document(doc, Identity("vpcp", frozenset({G22})), directory(H41))
    assert caught.value.fields["agencies"] == [H49]


def test_inactive_recipient_refuses_the_whole_packet(doc):
    with pytest.raises(errors.InactiveRecipient):
        route_document(doc, Identity("vpcp", frozenset({G22})), directory(H41, H49, inactive={H49}))


def test_status_goes_back_to_the_original_sender(status):
    route = route_status(status, Identity("nghean", frozenset({H41})), delivered_packet_id=7)
    assert route.recipients == (G22,)
    assert route.answers_packet == 7


def test_status_for_a_document_never_delivered_to_its_sender(status):
    with pytest.raises(errors.StatusForUnknownDocument):
        route_status(status, Identity("nghean", frozenset({H41})), delivered_packet_id=None)


def test_status_sender_must_be_the_callers(status):
    with pytest.raises(errors.SenderNotAllowed):
        route_status(status, Identity("vpcp", frozenset({G22})), delivered_packet_id=7)
