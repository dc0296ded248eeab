"""The one hardened door for XML.

Every byte string the gateway turns into a tree goes through :func:`parse_xml`: the size is checked before
parsing, DTDs are refused outright (so no entity is ever declared, let alone expanded), nothing is loaded
from the network, and comments and processing instructions are kept (a signature check must see them).
"""

from __future__ import annotations

import dataclasses

from lxml import etree

from gateway import errors

#: libxml2 refuses text nodes above 10 MB unless "huge" mode is on; huge mode is needed for large
#: attachments. It is only switched on for inputs above this size, after the size limit was checked.
HUGE_THRESHOLD = 8 * 1024 * 1024


#: libxml2 error codes for references to entities (never declared here, since DTDs are refused)
_ENTITY_ERRORS = {26, 27}  # XML_ERR_UNDECLARED_ENTITY, XML_WAR_UNDECLARED_ENTITY
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class TreeLimits:
    """Bounds on the tree itself, enforced while parsing, so memory stays proportional to the input."""

    max_elements: int = 200_000
    max_depth: int = 64


PACKET_TREE = TreeLimits(max_elements=200_000, max_depth=64)
REQUEST_TREE = TreeLimits(max_elements=5_000, max_depth=32)


#: below this size the whole input is parsed at once (the tree cannot grow large); above, a pull parser
#: counts elements and depth as it goes
SMALL_INPUT = 16 * 1024  # so small that even "<a/>" repeated stays under the request element limit

_SAFE = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "remove_blank_text": False,
    "remove_comments": False,
    "remove_pis": False,
    "strip_cdata": False,
    "collect_ids": False,
}


def make_small_parser() -> etree.XMLParser:
    """The hardened settings, for inputs up to :data:`SMALL_INPUT` bytes (and for trusted local files)."""
    return etree.XMLParser(huge_tree=False, **_SAFE)


def make_parser(*, huge: bool = False) -> etree.XMLPullParser:
    """The hardened settings as a pull parser, fed in chunks, for larger inputs."""
    return etree.XMLPullParser(events=("start", "end"), huge_tree=huge, **_SAFE)


def parse_xml(
    data: bytes,
    *,
    max_bytes: int,
    limits: TreeLimits = PACKET_TREE,
    too_large: type[errors.LienthongError] = errors.PacketTooLarge,
    not_xml: type[errors.LienthongError] = errors.PacketNotXml,
    dtd_forbidden: type[errors.LienthongError] = errors.PacketDtdForbidden,
    what: str = "packet",
) -> etree._ElementTree:
    """Parse untrusted bytes into a tree, or raise the caller's error classes.

    The error classes are parameters so the same door serves packets (``Client.Packet.*``) and SOAP
    requests (``Client.Request.*``). The element count and depth are checked as the parser goes, so a
    flood of tiny elements is refused long before it costs memory.
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
    # A DOCTYPE can only stand in the prolog, before the root element: walk the whole prolog and refuse one
    # before libxml2 reads any declaration (it would otherwise fetch external parameter entities).
    problem = _prolog_problem(data)
    if problem == "doctype":
        raise dtd_forbidden(f"the {what} contains a DOCTYPE or ENTITY declaration; these are never accepted")
    if problem:
        raise not_xml(f"the {what} is not acceptable XML: {problem}")
    try:
        root = _parse(data, limits, not_xml, what)
    except etree.XMLSyntaxError as exc:
        line = getattr(exc, "lineno", None)
        msg = str(getattr(exc, "msg", exc))
        if exc.code in _ENTITY_ERRORS:
            raise dtd_forbidden(
                f"the {what} refers to an entity ({msg}); entities are never accepted", line=line
            ) from None
        raise not_xml(f"the {what} is not well-formed XML (line {line}): {msg}", line=line) from None
    tree = root.getroottree()
    info = tree.docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise dtd_forbidden(f"the {what} contains a DOCTYPE declaration; these are never accepted")
    return tree


def _prolog_problem(data: bytes) -> str | None:
    """Walk the prolog (XML declaration, comments, processing instructions, white space) up to the root
    element. Returns "doctype" for a document type declaration, another reason for an encoding this byte
    walk cannot read (UTF-16/32: edXML and our SOAP are UTF-8), or None."""
    view = bytes(data[:4]) if len(data) >= 4 else bytes(data)
    if view.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\x00<", b"<\x00")):
        return "only UTF-8 (or another ASCII-compatible encoding) is accepted, not UTF-16 or UTF-32"
    pos = 3 if data[:3] == b"\xef\xbb\xbf" else 0
    end = len(data)
    while pos < end:
        byte = data[pos : pos + 1]
        if byte in (b" ", b"\t", b"\r", b"\n"):
            pos += 1
            continue
        if data.startswith(b"<?", pos):
            close = data.find(b"?>", pos + 2)
            if close < 0:
                return None  # unterminated: the parser reports it
            pos = close + 2
            continue
        if data.startswith(b"<!--", pos):
            close = data.find(b"-->", pos + 4)
            if close < 0:
                return None
            pos = close + 3
            continue
        if data.startswith(b"<!", pos):
            return "doctype"  # <!DOCTYPE (or any other markup declaration) before the root element
        return None  # the root element (or junk the parser will refuse)
    return None


def _deeper_than(root: etree._Element, depth: int) -> bool:
    """Whether any element sits deeper than ``depth`` (one XPath step per level, evaluated in C)."""
    return bool(root.xpath("boolean(/" + "/*" * (depth + 1) + ")"))


def _parse(
    data: bytes, limits: TreeLimits, not_xml: type[errors.LienthongError], what: str
) -> etree._Element:
    if len(data) <= SMALL_INPUT:
        # Small inputs cannot hold more elements than the limits allow; only the depth needs a look.
        root = etree.fromstring(bytes(data), make_small_parser())
        # (packets: libxml2's own limit of 256 is enough for a 16 KB input; requests keep their tighter one)
        if limits.max_depth < 64 and _deeper_than(root, limits.max_depth):
            raise not_xml(f"the {what} nests elements deeper than {limits.max_depth} levels")
        return root
    parser = make_parser(huge=len(data) > HUGE_THRESHOLD)
    view = memoryview(data)
    elements = depth = 0
    for offset in range(0, len(view), _CHUNK):
        parser.feed(bytes(view[offset : offset + _CHUNK]))
        for event, _el in parser.read_events():
            if event == "start":
                elements += 1
                depth += 1
                if depth > limits.max_depth:
                    raise not_xml(f"the {what} nests elements deeper than {limits.max_depth} levels")
                if elements > limits.max_elements:
                    raise not_xml(f"the {what} has more than {limits.max_elements:,} elements")
            else:
                depth -= 1
    return parser.close()
