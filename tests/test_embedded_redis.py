"""The private redis-server of the tests and of ``python -m bench``."""

from __future__ import annotations

import redis
from flask_refiner_segment.testing import embedded_redis
from flask_refiner_segment.testing.embedded_redis import EmbeddedRedis


def _pid(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def test_a_port_taken_meanwhile_is_not_shared(tmp_path, monkeypatch):
    """Two test runs side by side can pick the same free port: the second
    used to ping the first one's server and share it."""
    with EmbeddedRedis(tmp_path) as taken:
        ports = iter([int(taken.rsplit(":", 1)[1].split("/")[0])])
        real = embedded_redis.free_port
        monkeypatch.setattr(
            embedded_redis, "free_port", lambda: next(ports, None) or real()
        )
        second = EmbeddedRedis(tmp_path / "not-yet")
        assert second.url == taken
        with second as url:
            assert url != taken
            assert second.proc is not None
            assert _pid(url) == second.proc.pid
            assert _pid(taken) != second.proc.pid


def test_a_restart_keeps_the_url(tmp_path):
    server = EmbeddedRedis(tmp_path)
    url = server.start()
    try:
        server.stop()
        assert server.start() == url
        assert server.proc is not None and _pid(url) == server.proc.pid
    finally:
        server.stop()
