"""Compressed inbound bodies: gzip accepted with the cap on the decompressed
size, unknown encodings refused; and the official Segment client with gzip on."""

from __future__ import annotations

import gzip
import json
import threading
import typing as t

import pytest
from flask import Flask
from werkzeug.serving import make_server

from .inbound_support import API_KEY
from .inbound_support import URL
from .inbound_support import close_app
from .inbound_support import counts
from .inbound_support import make_app
from .inbound_support import segment_headers
from .inbound_support import track


@pytest.fixture
def small_cap_app(database_url: str) -> t.Iterator[Flask]:
    app = make_app(database_url, REFINER_SEGMENT_INBOUND_MAX_BYTES=64 * 1024)
    yield app
    close_app(app)


def post_raw(app: Flask, data: bytes, **headers: str) -> t.Any:
    return app.test_client().post(
        URL, data=data, headers={**segment_headers(), **headers}
    )


def test_gzip_body_is_accepted(small_cap_app: Flask) -> None:
    body = json.dumps([track("g-1"), track("g-2")]).encode()
    for encoding in ("gzip", "x-gzip", "GZIP"):
        response = post_raw(
            small_cap_app, gzip.compress(body), **{"Content-Encoding": encoding}
        )
        assert response.status_code == 200, response.json
    assert counts(small_cap_app)["refiner_segment_event"] == 2  # later ones duplicates
    plain = post_raw(small_cap_app, body, **{"Content-Encoding": "identity"})
    assert plain.status_code == 200 and plain.json["duplicates"] == 2


def test_a_zip_bomb_gets_413_without_inflating_it(small_cap_app: Flask) -> None:
    bomb = gzip.compress(b"[" + b" " * (50 * 1024 * 1024) + b"]", compresslevel=9)
    assert len(bomb) < 64 * 1024  # small enough to pass the compressed cap
    response = post_raw(small_cap_app, bomb, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert response.json["error"] == "too_large"


@pytest.mark.parametrize(
    ("data", "encoding", "status", "error"),
    [
        (b"{}", "br", 415, "unsupported_encoding"),
        (b"{}", "gzip, br", 415, "unsupported_encoding"),
        (b"not gzip at all", "gzip", 400, "bad_request"),
        (gzip.compress(b'{"type": "track"')[:-8], "gzip", 400, "bad_request"),
    ],
)
def test_bad_or_unknown_encodings_are_4xx(
    small_cap_app: Flask, data: bytes, encoding: str, status: int, error: str
) -> None:
    response = post_raw(small_cap_app, data, **{"Content-Encoding": encoding})
    assert response.status_code == status
    assert response.json["error"] == error
    assert counts(small_cap_app)["refiner_segment_event"] == 0


def test_the_official_python_client_with_gzip(database_url: str) -> None:
    """segment-analytics-python pointed at the route, as a Segment-compatible
    sender would be, with its gzip option on."""
    import segment.analytics as analytics_module
    from segment.analytics.client import Client

    app = make_app(
        database_url,
        REFINER_SEGMENT_URL_PREFIX="/segment",
        REFINER_SEGMENT_INBOUND_PATH="/v1/batch",
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = Client(
            API_KEY,
            host=f"http://127.0.0.1:{server.server_port}/segment",
            gzip=True,
            sync_mode=True,
            max_retries=0,
        )
        errors: list[t.Any] = []
        client.on_error = lambda error, items: errors.append(error)
        client.identify("u-gz", {"plan": "pro"})
        client.track("u-gz", "Signed Up", {"n": 1})
        client.flush()
        assert errors == []
        assert analytics_module is not None
    finally:
        server.shutdown()
        thread.join(5)
    table_counts = counts(app)
    close_app(app)
    assert table_counts["refiner_segment_event"] == 1
    assert table_counts["refiner_segment_user_trait"] == 1
