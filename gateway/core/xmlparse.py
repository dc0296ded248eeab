"""The one hardened door for XML.

Every byte string the gateway turns into a tree goes through :func:`parse_xml`: the size is checked before
parsing, DTDs are refused outright (so no entity is ever declared, let alone expanded), nothing is loaded
from the network, and comments and processing instructions are kept (a signature check must see them).
"""

from __future__ import annotations

from lxml import etree

from gateway import errors

#: libxml2 refuses text nodes above 10 MB unless "huge" mode is on; huge mode is needed for large
#: attachments. It is only switched on for inputs above this size, after the size limit was checked.
HUGE_THRESHOLD = 8 * 1024 * 1024


def make_parser(*, huge: bool = False) -> etree.XMLParser:
    """The only lxml parser configuration used on untrusted input."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=huge,
        remove_blank_text=False,
        remove_comments=False,
        remove_pis=False,
        strip_cdata=False,
        collect_ids=False,
    )


def parse_xml(
    data: bytes,
    *,
    max_bytes: int,
    too_large: type[errors.LienthongError] = errors.PacketTooLarge,
    not_xml: type[errors.LienthongError] = errors.PacketNotXml,
    dtd_forbidden: type[errors.LienthongError] = errors.PacketDtdForbidden,
    what: str = "packet",
) -> etree._ElementTree:
    """Parse untrusted bytes into a tree, or raise the caller's error classes.

    The error classes are parameters so the same door serves packets (``Client.Packet.*``) and SOAP
    requests (``Client.Request.*``).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise not_xml(f"the {what} must be bytes")
    if len(data) > max_bytes:
        raise too_large(
            f"the {what} is {len(data):,} bytes; this gateway accepts at most {max_bytes:,} bytes",
            size=len(data),
            limit=max_bytes,
        )
    if len(data) == 0:
        raise not_xml(f"the {what} is empty")
    # A DOCTYPE can only stand in the prolog, before the root element; refuse it before libxml2 reads any
    # declaration. The tree check below catches encodings this byte scan cannot see.
    head = bytes(data[:4096])
    if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
        raise dtd_forbidden(f"the {what} contains a DOCTYPE or ENTITY declaration; these are never accepted")
    parser = make_parser(huge=len(data) > HUGE_THRESHOLD)
    try:
        tree = etree.fromstring(bytes(data), parser).getroottree()
    except etree.XMLSyntaxError as exc:
        line = getattr(exc, "lineno", None)
        msg = str(exc.msg if hasattr(exc, "msg") else exc)
        if "DOCTYPE" in msg or "Entity" in msg or "entity" in msg:
            raise dtd_forbidden(f"the {what} uses a DTD or an entity: {msg}", line=line) from None
        raise not_xml(f"the {what} is not well-formed XML (line {line}): {msg}", line=line) from None
    except ValueError as exc:  # e.g. unicode strings with an encoding declaration
        raise not_xml(f"the {what} is not well-formed XML: {exc}") from None
    info = tree.docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise dtd_forbidden(f"the {what} contains a DOCTYPE declaration; these are never accepted")
    return tree
