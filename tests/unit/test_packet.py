"""Reading edXML packets: every golden sample is accepted, every broken one refused for its reason."""

from __future__ import annotations

import hashlib
import json

import pytest

from gateway import errors
from gateway.core.packet import EDOC, STATUS, Limits, read_packet
from tests.conftest import DATA

LIMITS = Limits(max_packet_bytes=1024 * 1024)
MANIFEST = json.loads((DATA / "invalid" / "manifest.json").read_text(encoding="utf-8"))
VALID = sorted(p.name for p in (DATA / "valid").glob("*.edxml"))


@pytest.mark.parametrize("name", VALID)
def test_valid_samples_are_accepted(schemas, name):
    data = (DATA / "valid" / name).read_bytes()
    packet = read_packet(data, schemas, LIMITS)
    assert packet.kind == (STATUS if name.startswith("status") else EDOC)
    assert packet.sha256 == hashlib.sha256(data).hexdigest()
    assert packet.size == len(data)
    assert packet.from_organ
    assert all(packet.to_organs)


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_invalid_samples_are_refused_for_their_reason(schemas, name):
    expected = MANIFEST[name]
    data = (DATA / "invalid" / name).read_bytes()
    with pytest.raises((errors.PacketError, errors.StatusReasonRequired)) as caught:
        read_packet(data, schemas, LIMITS)
    assert caught.value.code == expected["code"], caught.value.message
    if expected["code"] in ("Client.Packet.SchemaInvalid", "Client.Status.ReasonRequired"):
        assert caught.value.fields["element"] == expected["element"]
        assert expected["element"] in caught.value.message
        assert caught.value.fields.get("line"), "the fault must say which line"


def test_every_invalid_file_is_in_the_manifest():
    on_disk = {p.name for p in (DATA / "invalid").glob("*.edxml")}
    assert on_disk == set(MANIFEST)


def test_the_reference_samples_read_as_the_domain_says(schemas):
    doc = read_packet((DATA / "valid" / "edoc_new.edxml").read_bytes(), schemas, LIMITS)
    assert doc.from_organ == "000.00.00.G22"
    assert doc.to_organs == ("000.00.00.H41", "000.00.00.H49")
    assert doc.document_id == "000.00.00.G22,2026/12/04,1234/VPCP-KSTT"
    assert doc.code == "1234/VPCP-KSTT"
    assert doc.subject.startswith("V/v triển khai")
    assert doc.business.doc_type == 0

    status = read_packet((DATA / "valid" / "status_accepted.edxml").read_bytes(), schemas, LIMITS)
    assert status.kind == STATUS
    assert status.from_organ == "000.00.00.H41"
    assert status.to_organs == ("000.00.00.G22",)
    assert status.status_code == "03"
    assert status.response_for[0].document_id == doc.document_id
    assert status.staff == "Lê Văn C"


def test_header_children_in_any_order(schemas):
    data = (DATA / "valid" / "edoc_vendor_order.edxml").read_bytes()
    packet = read_packet(data, schemas, LIMITS)
    assert packet.document_id and packet.subject and packet.code


def test_duplicate_recipients_are_delivered_once(schemas):
    data = (DATA / "valid" / "edoc_new.edxml").read_bytes()
    doubled = data.replace(
        b"<To>\n          <OrganId>000.00.00.H49</OrganId>",
        b"<To><OrganId>000.00.00.H41</OrganId></To>\n        <To>\n          <OrganId>000.00.00.H49</OrganId>",
    )
    assert doubled != data
    assert read_packet(doubled, schemas, LIMITS).to_organs == ("000.00.00.H41", "000.00.00.H49")


def test_size_is_checked_before_parsing(schemas):
    # Not XML at all, but too large: the size refusal comes first, so nothing was parsed.
    with pytest.raises(errors.PacketTooLarge):
        read_packet(b"\x00" * (LIMITS.max_packet_bytes + 1), schemas, LIMITS)


def test_business_fields_of_a_recall(schemas):
    packet = read_packet((DATA / "valid" / "edoc_recall.edxml").read_bytes(), schemas, LIMITS)
    assert packet.business.doc_type == 1
    assert packet.business.document_id


def test_golden_copies_match_the_shared_samples_when_present():
    shared = DATA.parents[2] / "shared" / "samples"
    if not shared.is_dir():
        pytest.skip("../shared/samples is not beside this checkout")
    for name in ("edoc_new.edxml", "status_accepted.edxml"):
        assert (DATA / "valid" / name).read_bytes() == (shared / name).read_bytes()
