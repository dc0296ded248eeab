"""The client's one XML parser for packets it receives: no DTD, no entities, no network."""

from __future__ import annotations

from lxml import etree


class UnsafeXml(ValueError):
    pass


def parse(data: bytes) -> etree._Element:
    if b"<!DOCTYPE" in data[:4096] or b"<!ENTITY" in data[:4096]:
        raise UnsafeXml("the packet carries a DOCTYPE; refused")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=len(data) > 8 * 1024 * 1024
    )
    root = etree.fromstring(data, parser)
    if root.getroottree().docinfo.doctype:
        raise UnsafeXml("the packet carries a DOCTYPE; refused")
    return root
