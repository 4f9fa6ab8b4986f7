"""Configuration keys, their defaults, and the frozen view read once in ``init_app``."""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import os
import typing as t

if t.TYPE_CHECKING:
    from flask import Flask

#: Prefix of every configuration key of this extension.
PREFIX = "REFINER_SEGMENT_"

#: Defaults, without the prefix. Every key is documented in README.md.
DEFAULTS: dict[str, t.Any] = {
    # Default workspace (single-tenant hosts never see another one).
    "DEFAULT_WORKSPACE": "default",
    # Values that, when set, win over the default workspace's stored settings.
    "WRITE_KEY": None,
    "API_HOST": None,
    "INBOUND_API_KEY": None,
    # Encryption at rest of the write key; derived from SECRET_KEY when unset.
    "ENCRYPTION_KEY": None,
    # Redis and RQ.
    "REDIS_URL": None,  # None: $REDIS_URL, then redis://localhost:6379/0
    "QUEUE": "refiner_segment",
    # The queue of backfill jobs: workers take live jobs first, and a backfill
    # job does one batch at a time, so live deliveries never wait behind it.
    "BACKFILL_QUEUE": "refiner_segment_backfill",
    "JOB_TIMEOUT": 300,
    # RQ retries of a drain job that crashed (e.g. the database was down).
    "JOB_RETRY_INTERVALS": (5, 30, 120),
    "REDIS_SOCKET_TIMEOUT": 2.0,
    # A worker's state change that lost its database connection is tried again
    # after each of these delays (s).
    "DB_RETRY_DELAYS": (0.1, 0.5, 2.0),
    # HTTP to Segment.
    "CONNECT_TIMEOUT": 3.05,
    "READ_TIMEOUT": 10.0,
    # Retry policy.
    "BACKOFF_BASE": 2.0,
    # At most this long (s) between attempts, so deliveries resume within a
    # minute of Segment's recovery: with RQ's whole-second scheduling, or with
    # a worker's recovery poll (RECOVERY_INTERVAL), the next attempt comes
    # within BACKOFF_MAX + RECOVERY_INTERVAL + 1 s. A Retry-After wins.
    "BACKOFF_MAX": 45.0,
    "RETRY_AFTER_MAX": 300.0,
    "RETRY_WINDOW": 24 * 3600.0,
    # Batching and recovery.
    "BATCH_SIZE": 500,
    # Under steady load, wait this long between batches so that they fill up.
    "BATCH_LINGER": 0.05,
    # Many workspaces: a serve job sends this many requests at once (threads
    # sharing a keep-alive session per Segment host; twice as many turns are
    # claimed, in rounds) ...
    "SEND_THREADS": 8,
    # ... a workspace with a full batch goes on for at most this long (s)
    # before the other due workspaces' turns (at least one batch) ...
    "TURN_SECONDS": 0.5,
    # ... and while more is due than one job takes, up to this many serve jobs
    # run at once (None: one per worker listening on the queue).
    "SERVE_JOBS": None,
    "LEASE_SECONDS": 120.0,
    "SWEEP_INTERVAL": 60.0,
    # How often (s) a `flask refiner-segment worker` itself, without RQ's
    # scheduler, releases expired leases, kicks workspaces with due deliveries
    # and reschedules the sweep.
    "RECOVERY_INTERVAL": 10.0,
    "KICK_TTL": 30.0,
    # After seeing a drain job's kick key, a process skips Redis this long.
    "KICK_CACHE_SECONDS": 0.1,
    "SETTINGS_CACHE_SECONDS": 5.0,
    # Defaults of per-workspace settings.
    "TRACK_EVENT": "Survey Completed",
    "TRAIT_PREFIX": "refiner_",
    # Track event names of the survey_shown / survey_dismissed signals (sent
    # only for workspaces that turned them on).
    "SHOWN_EVENT": "Survey Shown",
    "DISMISSED_EVENT": "Survey Dismissed",
    # Web.
    "URL_PREFIX": "/integrations/segment",
    "INBOUND_PATH": "/inbound",
    "BASE_TEMPLATE": "refiner_segment/base.html",
    "INBOUND_MAX_BYTES": 1024 * 1024,
    "ALLOW_PRIVATE_HOSTS": False,
    # Content-Security-Policy of the extension's own pages. The default leaves
    # scripts and styles to the host's base template and forbids framing.
    "CONTENT_SECURITY_POLICY": (
        "frame-ancestors 'self'; form-action 'self'; base-uri 'self'; object-src 'none'"
    ),
    "EVENT_RETENTION_DAYS": 365,
    # Sent, failed and skipped deliveries are pruned this many days after their
    # last change (by the periodic sweep and `prune`); None keeps them forever.
    "DELIVERY_RETENTION_DAYS": 30,
}


@dataclasses.dataclass(frozen=True)
class Config:
    """The extension's configuration for one app, read once in ``init_app``."""

    default_workspace: str
    write_key: str | None
    api_host: str | None
    inbound_api_key: str | None
    encryption_key: str | None
    redis_url: str
    queue: str
    backfill_queue: str
    job_timeout: int
    job_retry_intervals: tuple[int, ...]
    redis_socket_timeout: float
    db_retry_delays: tuple[float, ...]
    connect_timeout: float
    read_timeout: float
    backoff_base: float
    backoff_max: float
    retry_after_max: float
    retry_window: float
    batch_size: int
    batch_linger: float
    send_threads: int
    turn_seconds: float
    serve_jobs: int | None
    lease_seconds: float
    sweep_interval: float
    recovery_interval: float
    kick_ttl: float
    kick_cache_seconds: float
    settings_cache_seconds: float
    track_event: str
    trait_prefix: str
    shown_event: str
    dismissed_event: str
    url_prefix: str
    inbound_path: str
    base_template: str
    inbound_max_bytes: int
    allow_private_hosts: bool
    content_security_policy: str
    event_retention_days: int
    delivery_retention_days: int | None
    secret_key: str | None


def read_config(app: Flask) -> Config:
    """Record the defaults in ``app.config`` and return the effective values."""
    for key, value in DEFAULTS.items():
        app.config.setdefault(PREFIX + key, value)

    values = {
        key.lower(): app.config[PREFIX + key] for key in DEFAULTS if key != "REDIS_URL"
    }
    redis_url = (
        app.config[PREFIX + "REDIS_URL"]
        or os.environ.get("REDIS_URL")
        or "redis://localhost:6379/0"
    )
    secret = app.config.get("SECRET_KEY")
    values["db_retry_delays"] = tuple(float(d) for d in values["db_retry_delays"])
    values["job_retry_intervals"] = tuple(
        int(i) for i in values["job_retry_intervals"]
    ) or (1,)
    config = Config(
        redis_url=redis_url,
        secret_key=str(secret) if secret else None,
        **values,
    )
    if not config.url_prefix.startswith("/") or config.url_prefix.endswith("/"):
        raise RuntimeError(
            f"{PREFIX}URL_PREFIX must start with '/' and not end with one,"
            f" got {config.url_prefix!r}."
        )
    return config


@functools.cache
def library_version() -> str:
    """The installed version of this package (``0.0.0`` when not installed)."""
    try:
        return importlib.metadata.version("flask-refiner-segment")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"
