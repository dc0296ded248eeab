"""The one hardened parser: size first, no DTD, no entity, no network."""

from __future__ import annotations

import pytest

from gateway import errors
from gateway.core.xmlparse import parse_xml


def parse(data: bytes, limit: int = 10_000):
    return parse_xml(data, max_bytes=limit)


def test_plain_xml_parses():
    assert parse(b"<a><b>x</b></a>").getroot().findtext("b") == "x"


@pytest.mark.parametrize(
    "data",
    [
        b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>',
        b'<!DOCTYPE a SYSTEM "http://127.0.0.1:9/x.dtd"><a/>',
        b'<?xml version="1.0"?>\n<!DOCTYPE a><a/>',
        b'<!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><a>&xxe;</a>',
    ],
)
def test_any_doctype_is_refused(data):
    with pytest.raises(errors.PacketDtdForbidden):
        parse(data)


def test_doctype_after_a_long_prolog_is_still_refused():
    data = b"<!--" + b"x" * 8000 + b'-->\n<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>'
    with pytest.raises(errors.PacketDtdForbidden):
        parse(data, limit=100_000)


def test_undeclared_entity_is_refused_not_expanded():
    with pytest.raises(errors.PacketDtdForbidden):
        parse(b"<a>&secret;</a>")


def test_a_bare_ampersand_is_malformed_xml_not_a_dtd():
    with pytest.raises(errors.PacketNotXml) as caught:
        parse(b"<a>Ban A & B</a>")
    assert "well-formed" in caught.value.message


def test_element_flood_is_refused_while_parsing():
    from gateway.core.xmlparse import TreeLimits

    data = b"<a>" + b"<b/>" * 200_000 + b"</a>"  # 800 KB: above the small-input size, so counted
    with pytest.raises(errors.PacketNotXml) as caught:
        parse_xml(data, max_bytes=10**7, limits=TreeLimits(max_elements=10_000, max_depth=32))
    assert "10,000 elements" in caught.value.message


@pytest.mark.parametrize("size", [100, 300_000])
def test_deep_nesting_is_refused(size):
    depth = 10_000
    data = b"<a>" * depth + b"x" * size + b"</a>" * depth
    with pytest.raises(errors.PacketNotXml):
        parse_xml(data, max_bytes=10**7)


def test_size_limit_checked_first():
    with pytest.raises(errors.PacketTooLarge) as caught:
        parse(b"<a>" + b"x" * 200 + b"</a>", limit=100)
    assert caught.value.fields["limit"] == 100


@pytest.mark.parametrize("data", [b"", b"not xml", b"<a>", b"\xff\xfe\x00<", b"%PDF-1.7\n"])
def test_not_xml(data):
    with pytest.raises(errors.PacketNotXml):
        parse(data)


def test_error_classes_are_the_callers():
    with pytest.raises(errors.RequestNotXml):
        parse_xml(b"<", max_bytes=10, not_xml=errors.RequestNotXml)


def test_comments_and_processing_instructions_are_kept():
    root = parse(b"<a><!--c--><?pi x?>t</a>").getroot()
    assert len(root) == 2
