"""The Segment stand-in served: as a separate process, with keep-alive
connections, and with TCP_NODELAY on them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import typing as t

import pytest
import requests
from flask_refiner_segment.testing.embedded_redis import free_port
from flask_refiner_segment.testing.standin import SegmentStandIn
from flask_refiner_segment.testing.standin import serve

from .test_standin import AUTH
from .test_standin import KEY
from .test_standin import track


def test_separate_process() -> None:
    port = free_port()
    command = [sys.executable, "-m", "flask_refiner_segment.testing.standin", "--port",
               str(port), "--write-key", KEY, "--quiet"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = t.cast(t.IO[str], proc.stdout).readline()
        assert line.strip() == f"Segment stand-in on http://127.0.0.1:{port}"
        url = f"http://127.0.0.1:{port}"
        body = {"batch": [track()]}
        assert (
            requests.post(url + "/v1/batch", json=body, auth=("x", "")).status_code
            == 401
        )
        assert requests.post(url + "/v1/batch", json=body, auth=AUTH).ok
        assert (
            requests.get(url + "/messages").json()["messages"][0]["messageId"] == "m-1"
        )
    finally:
        proc.terminate()
        assert proc.wait(5) == 0
        t.cast(t.IO[str], proc.stdout).close()


def test_a_session_keeps_its_connection_alive_until_the_stand_in_stops() -> None:
    """HTTP/1.1 keep-alive: a client's requests share one connection (as a
    serve job's session does with Segment); stopping the stand-in drops it,
    so the client then finds nothing listening."""
    standin = SegmentStandIn()
    server = serve(standin)
    session = requests.Session()
    try:
        for n in range(3):
            answer = session.post(
                server.url + "/v1/batch", json={"batch": [track(f"m-{n}")]}, auth=AUTH
            )
            assert answer.ok and "close" not in answer.headers.get("Connection", "")
        assert session.get(server.url + "/stats").json()["accepted"] == 3
        assert server.server.accepted == 1
        closing = session.get(server.url + "/stats", headers={"Connection": "close"})
        assert closing.headers["Connection"] == "close"
        session.get(server.url + "/stats")
        assert server.server.accepted == 2  # a new one after the close
    finally:
        server.shutdown()
    with pytest.raises(requests.ConnectionError):
        session.get(server.url + "/stats", timeout=5)
    session.close()


def test_answers_are_not_held_back_by_nagle() -> None:
    """An answer is two writes (headers, then body): with Nagle's algorithm on
    a keep-alive connection the body waits for the client's delayed ACK, tens
    of milliseconds a request, and the stand-in, not the code under test, sets
    the pace. Its connections have ``TCP_NODELAY``."""
    standin = SegmentStandIn()
    server = serve(standin)
    session = requests.Session()
    try:
        assert session.get(server.url + "/stats").ok
        (sock,) = server.server._open
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        session.close()
        server.shutdown()
