"""A worker computes one request at a time (``compute_slots``), once the request's body is read: a client
that uploads slowly holds a thread, not the worker, and a refused request gives its slot back.

The gateway here has a single worker process, so a slot that was never given back, or a slow upload that
held the slot, would stop it answering anyone (the requests below would time out).
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from gateway.config import Config
from gateway.errors import ConfigError
from tests.support import raw
from tests.support.packets import new_document
from tests.support.world import G22, H41, World


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    base = tmp_path_factory.mktemp("slots")
    world = World(base, f"sqlite:///{base / 'lienthong.db'}", workers=1).setup().start()
    yield world
    world.stop()


def _send_body(world: World) -> bytes:
    packet = world.seal(new_document(G22, [H41]), G22)
    return raw.envelope(raw.send_edoc_payload(packet), raw.security_header("vpcp", world.secrets["vpcp"]))


def _post(world: World, body: bytes, content_type: str = "text/xml; charset=utf-8") -> requests.Response:
    return requests.post(world.url, data=body, headers={"Content-Type": content_type}, timeout=15)


def test_a_slow_upload_holds_a_thread_not_the_worker(one_worker):
    world = one_worker
    slow_body = _send_body(world)
    host, port = world.url.split("//", 1)[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as slow:
        slow.sendall(
            b"POST / HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: text/xml; charset=utf-8\r\n"
            b"Content-Length: %d\r\n\r\n" % (host.encode(), port.encode(), len(slow_body))
        )
        half = len(slow_body) // 2
        slow.sendall(slow_body[:half])
        time.sleep(0.5)  # the worker has started reading it
        started = time.monotonic()
        reply = raw.parse_reply(_post(world, _send_body(world)))
        assert reply.status == 200 and reply.code is None, reply.body[:300]
        assert time.monotonic() - started < 10
        slow.sendall(slow_body[half:])
        answer = b""
        while b"</soap11env:Envelope>" not in answer and b"Envelope>" not in answer[-40:]:
            chunk = slow.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert b"duplicate>false<" in answer


def test_refused_requests_give_their_slot_back(one_worker):
    world = one_worker
    refusals = [
        (b"not xml at all", "Client.Request.NotXml"),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', "Client.Request.DtdForbidden"),
        (raw.envelope("<tns:noSuchOperation/>"), None),
        (raw.envelope(raw.send_edoc_payload(b"<notedxml/>"), raw.security_header("vpcp", "wrong")), None),
        (
            raw.envelope(
                raw.send_edoc_payload(b"<notedxml/>"), raw.security_header("vpcp", world.secrets["vpcp"])
            ),
            None,
        ),
    ]
    for _ in range(3):  # more refusals than the worker has slots and threads
        for body, code in refusals:
            reply = raw.parse_reply(_post(world, body))
            assert reply.code is not None, reply.body[:300]
            if code is not None:
                assert reply.code == code
    reply = raw.parse_reply(_post(world, _send_body(world)))
    assert reply.status == 200 and reply.code is None, reply.body[:300]


@pytest.mark.parametrize("value", ["0", "65", "two"])
def test_compute_slots_must_be_a_sensible_number(tmp_path, value):
    with pytest.raises(ConfigError) as caught:
        Config.from_sources({"LIENTHONG_COMPUTE_SLOTS": value}, data_dir=tmp_path)
    assert "compute_slots" in str(caught.value)


def test_compute_slots_from_the_environment(tmp_path):
    assert Config.from_sources({}, data_dir=tmp_path).compute_slots == 1
    assert Config.from_sources({"LIENTHONG_COMPUTE_SLOTS": "3"}, data_dir=tmp_path).compute_slots == 3


@pytest.mark.parametrize("slots", [1, 2])
def test_no_more_requests_compute_at_once_than_there_are_slots(one_worker, slots):
    world = one_worker
    app = world.app(LIENTHONG_COMPUTE_SLOTS=str(slots))
    inner = app.direct
    lock = threading.Lock()
    running, most = [0], [0]

    def watched(*args):  # type: ignore[no-untyped-def]
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.3)  # long enough for the other threads to arrive while this one computes
            return inner(*args)
        finally:
            with lock:
                running[0] -= 1

    app.direct = watched
    bodies = [_send_body(world) for _ in range(4)]
    answers: list = []
    threads = [threading.Thread(target=lambda b=b: answers.append(raw.in_process(app, b))) for b in bodies]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        app.axis.db.dispose()
    assert [status[:3] for status, _ in answers] == ["200"] * 4
    assert most[0] == slots
