"""The cross-check between the operation's reader (spyne or gateway.soap.direct) and the verified
signature: it must have read the very payload element of the signed Body (the guard hands both its own
tree, so this holds by construction; the check makes sure a change elsewhere cannot silently break it)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from lxml import etree

from gateway import errors
from gateway.soap.service import _check_same_body


def test_the_verified_payload_passes_and_any_other_element_is_refused():
    body = etree.fromstring(b"<Body><op><x/></op></Body>")
    credentials = SimpleNamespace(envelope=SimpleNamespace(body=body))
    _check_same_body(body[0], credentials)
    decoy = etree.fromstring(b"<op><x/></op>")  # equal content, another element
    with pytest.raises(errors.SignatureWrapping):
        _check_same_body(decoy, credentials)
    # requests without a signature are not concerned
    _check_same_body(decoy, SimpleNamespace(envelope=None))
