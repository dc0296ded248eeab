"""Finding and loading the files the gateway ships: the edXML schemas (``xsd/``) and the WSDL (``wsdl/``).

In a source checkout or an editable install they are the top-level ``xsd/`` and ``wsdl/`` directories; a
regular install copies them to ``<prefix>/share/lienthong/``. Schemas are loaded from these files only:
the parser has no network access, and every ``xs:include`` resolves inside the directory.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from lxml import etree

from gateway.core.packet import SchemaSet
from gateway.core.xmlparse import make_small_parser

_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def resource_dir(name: str) -> Path:
    """The directory ``xsd`` or ``wsdl`` of this installation."""
    for base in (_SOURCE_ROOT, Path(sys.prefix) / "share" / "lienthong"):
        candidate = base / name
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"lienthong's {name}/ directory is missing from this installation")


def _schema(path: Path) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(path), make_small_parser()))


@functools.lru_cache(maxsize=4)
def load_schemas(schema_dir: Path | None = None) -> SchemaSet:
    """Load the document and status schemas (cached per directory; they are immutable)."""
    base = schema_dir or resource_dir("xsd")
    return SchemaSet(
        document=_schema(base / "edxml-document.xsd"),
        status=_schema(base / "edxml-status.xsd"),
    )


def wsdl_path() -> Path:
    return resource_dir("wsdl") / "lienthong.wsdl"
