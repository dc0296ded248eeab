"""The published contract: the WSDL served equals the checked-in one, and both equal what the code
defines; every operation is documented and declares its fault; the schemas load with no network."""

from __future__ import annotations

import re

import pytest
import requests
from lxml import etree

from gateway.soap.app import WSDL_PLACEHOLDER_ADDRESS, generate_wsdl
from tests.conftest import ROOT
from tests.support.contract import OPERATIONS

WSDL_FILE = ROOT / "wsdl" / "lienthong.wsdl"
W = {"wsdl": "http://schemas.xmlsoap.org/wsdl/", "soap": "http://schemas.xmlsoap.org/wsdl/soap/"}


@pytest.fixture(scope="module")
def backend():
    return "sqlite"


def test_wsdl_is_generated_the_same_on_every_run():
    import os
    import subprocess
    import sys

    outputs = {
        subprocess.run(
            [sys.executable, "-m", "gateway.cli", "wsdl"],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            check=True,
        ).stdout
        for seed in (1, 2, 3)
    }
    assert len(outputs) == 1


def test_checked_in_wsdl_is_what_the_code_defines():
    assert WSDL_FILE.read_bytes() == generate_wsdl(WSDL_PLACEHOLDER_ADDRESS), (
        "wsdl/lienthong.wsdl is stale: run `lienthong wsdl -o wsdl/lienthong.wsdl`"
    )


def test_served_wsdl_is_the_checked_in_one(world):
    served = requests.get(world.url + "?wsdl", timeout=10)
    assert served.status_code == 200 and served.headers["Content-Type"].startswith("text/xml")
    expected = WSDL_FILE.read_bytes().replace(WSDL_PLACEHOLDER_ADDRESS.encode(), world.url.encode())
    assert served.content == expected
    address = etree.fromstring(served.content).find(".//soap:address", W).get("location")
    assert address == world.url


def test_a_forged_host_header_is_not_reflected(world):
    served = requests.get(world.url + "?wsdl", headers={"Host": 'evil"><x y="'}, timeout=10)
    assert b"evil" not in served.content


def test_operations_are_documented_and_declare_the_fault():
    root = etree.parse(str(WSDL_FILE)).getroot()
    port_type = root.find("wsdl:portType", W)
    ops = {op.get("name"): op for op in port_type.findall("wsdl:operation", W)}
    assert set(ops) == OPERATIONS
    for name, op in ops.items():
        doc = op.findtext("wsdl:documentation", namespaces=W) or ""
        assert len(doc.split()) >= 10, f"{name} needs documentation"
        faults = [f.get("message") for f in op.findall("wsdl:fault", W)]
        assert faults == ["tns:LienthongFault"], name
    binding = root.find("wsdl:binding", W)
    assert binding.find("soap:binding", W).get("style") == "document"
    assert binding.find("soap:binding", W).get("transport") == "http://schemas.xmlsoap.org/soap/http"
    for body in binding.iterfind(".//soap:body", W):
        assert body.get("use") == "literal"
    fault_type = root.find(".//{http://www.w3.org/2001/XMLSchema}complexType[@name='LienthongFault']")
    names = [el.get("name") for el in fault_type.iter("{http://www.w3.org/2001/XMLSchema}element")]
    assert names == ["code", "message", "correlationId"]


def test_schemas_load_offline_and_reference_nothing_outside_xsd():
    for path in sorted((ROOT / "xsd").glob("*.xsd")):
        text = path.read_text(encoding="utf-8")
        for location in re.findall(r'schemaLocation="([^"]+)"', text):
            assert "/" not in location and ":" not in location, f"{path.name} points outside xsd/: {location}"
        etree.XMLSchema(etree.parse(str(path), etree.XMLParser(no_network=True, resolve_entities=False)))


def test_schemas_keep_the_standard_namespace():
    for name in ("edxml-document.xsd", "edxml-status.xsd"):
        root = etree.parse(str(ROOT / "xsd" / name)).getroot()
        assert root.get("targetNamespace") == "http://www.mic.gov.vn/TBT/QCVN_102_2016"


def test_configured_public_url_is_the_only_address_served(tmp_path):
    from gateway.launcher import GatewayProcess

    with GatewayProcess(tmp_path, env={"LIENTHONG_PUBLIC_URL": "https://axis.example.gov.vn/"}) as gw:
        served = requests.get(gw.url + "?wsdl", headers={"Host": "evil.example"}, timeout=10).content
    assert b"evil.example" not in served
    address = etree.fromstring(served).find(".//soap:address", W).get("location")
    assert address == "https://axis.example.gov.vn/"
