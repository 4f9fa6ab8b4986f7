"""The write key never shows up in logs, errors, job data or the database."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from flask_refiner_segment import workspaces
from flask_refiner_segment.outbound.settings import write_key_values
from flask_refiner_segment.testing.embedded_redis import free_port

from .conftest import run_worker
from .conftest import send_completion

SECRET = "wk_super_secret_write_key_3fa9"


def _dump_redis(conn) -> bytes:
    out = []
    for key in conn.scan_iter():
        kind = conn.type(key)
        if kind == b"string":
            out.append(conn.get(key) or b"")
        elif kind == b"hash":
            out.extend(v for pair in conn.hgetall(key).items() for v in pair)
        elif kind == b"list":
            out.extend(conn.lrange(key, 0, -1))
        elif kind == b"zset":
            out.extend(conn.zrange(key, 0, -1))
        elif kind == b"set":
            out.extend(conn.smembers(key))
    return b"\n".join(out)


def _dump_db(app) -> str:
    db = app.extensions["test_db"]
    rows = []
    with app.app_context():
        for table in db.metadata.sorted_tables:
            rows.extend(str(r) for r in db.session.execute(sa.select(table)))
    return "\n".join(rows)


@pytest.mark.parametrize("fault", [None, 401, 503, "refused"])
def test_stored_write_key_never_leaks(
    make_app, segment, redis_url, redis_conn, caplog, fault
):
    caplog.set_level(logging.DEBUG)
    api_host = segment.url
    if fault == "refused":
        api_host = f"http://127.0.0.1:{free_port()}"
    elif fault is not None:
        segment.set_fault(status=fault)
    app = make_app(
        REFINER_SEGMENT_WRITE_KEY=None,
        REFINER_SEGMENT_API_HOST=None,
        REFINER_SEGMENT_ALLOW_PRIVATE_HOSTS=True,  # the stand-in is on 127.0.0.1
    )
    state = app.extensions["refiner_segment"]
    with app.app_context():
        values = write_key_values(state, SECRET)
        values.update(region="custom", custom_api_host=api_host)
        workspaces.update(state, "default", values)
    for n in range(3):
        send_completion(app, n)
    queued = _dump_redis(redis_conn)  # job data while the jobs wait
    run_worker(app, redis_url)
    with app.app_context():
        result = state.owner.send_test()
        settings = state.owner.settings()
    assert settings.write_key == SECRET  # it is really stored (encrypted)
    assert SECRET.encode() not in queued + _dump_redis(redis_conn)
    assert SECRET not in _dump_db(app)
    assert SECRET not in caplog.text
    assert SECRET not in repr(settings) + result.error + result.body
    assert settings.write_key_masked == "••••3fa9"


def test_secret_key_rotation_fails_clearly(make_app, segment):
    app = make_app(REFINER_SEGMENT_WRITE_KEY=None)
    state = app.extensions["refiner_segment"]
    with app.app_context():
        workspaces.update(state, "default", write_key_values(state, SECRET))
    rotated = make_app(REFINER_SEGMENT_WRITE_KEY=None, SECRET_KEY="a-new-secret")
    with rotated.app_context():
        settings = rotated.extensions["refiner_segment"].owner.settings()
        assert settings.write_key is None
        assert "cannot be decrypted" in settings.error
        assert settings.write_key_masked == "••••3fa9"
        assert settings.skip_reason("s") == settings.error
    # An old key listed after the new one keeps working (rotation without loss).
    both = make_app(
        REFINER_SEGMENT_WRITE_KEY=None,
        SECRET_KEY="a-new-secret",
        REFINER_SEGMENT_ENCRYPTION_KEY=["a-new-secret", "test-secret"],
    )
    with both.app_context():
        assert both.extensions["refiner_segment"].owner.settings().write_key == SECRET
