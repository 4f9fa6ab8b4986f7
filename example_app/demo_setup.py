"""What ``python -m example_app`` sets up around the app: where its embedded
Redis runs (a file in the instance folder, read by ``flask --app example_app``)
and the Segment stand-in as the demo's custom data plane."""

from __future__ import annotations

import os
import re
import typing as t

if t.TYPE_CHECKING:
    from flask import Flask

#: The instance file that holds the running demo's Redis URL.
REDIS_URL_FILE = "demo-redis-url"
#: A stand-in URL stored by an earlier run of the demo (maybe on another port).
_STANDIN_URL = re.compile(r"^http://127\.0\.0\.1:\d+/segment-standin$")


def redis_url_path(instance_path: str) -> str:
    return os.path.join(instance_path, REDIS_URL_FILE)


def read_redis_url(instance_path: str) -> str | None:
    """The Redis URL of the running demo, or ``None`` when it isn't running."""
    try:
        with open(redis_url_path(instance_path), encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def write_redis_url(instance_path: str, url: str) -> None:
    with open(redis_url_path(instance_path), "w", encoding="utf-8") as f:
        f.write(url + "\n")


def remove_redis_url(instance_path: str, url: str) -> None:
    """Remove the file if it still names ``url`` (not a newer run's)."""
    if read_redis_url(instance_path) == url:
        os.remove(redis_url_path(instance_path))


def use_standin(app: Flask, standin_url: str) -> None:
    """Store the stand-in as the custom data plane, as an admin would on the
    settings page, unless the admin chose another region or a real key is in
    app config. The write key is left for the newcomer to paste."""
    from .app import refiner_segment

    if app.config.get("REFINER_SEGMENT_WRITE_KEY"):
        return
    with app.app_context():
        current = refiner_segment.settings()
        fresh = current.region == "us" and current.write_key is None
        moved = (
            current.region == "custom"
            and _STANDIN_URL.match(current.custom_api_host or "") is not None
            and current.custom_api_host != standin_url
        )
        if fresh or moved:
            refiner_segment.save_settings(region="custom", custom_api_host=standin_url)
