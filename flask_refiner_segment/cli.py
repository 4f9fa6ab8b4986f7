"""``flask refiner-segment ...`` commands."""

from __future__ import annotations

import datetime as dt
import json
import typing as t
from urllib.parse import urlsplit

import click
import redis
import sqlalchemy as sa
from flask.cli import AppGroup

from .commands import register as _register_beyond
from .inbound.cli import register as _register_inbound
from .outbound import backfill_send
from .outbound import fallback
from .outbound import insight
from .outbound import kick
from .outbound import log
from .outbound import retention
from .outbound import sender
from .outbound import settings as outbound_settings
from .state import get_state

cli = AppGroup("refiner-segment", help="Deliver survey responses to Segment.")
_register_inbound(cli)
_register_beyond(cli)

_workspace_option = click.option(
    "--workspace", "workspace_id", default=None, help="Workspace id (default: all)."
)


@cli.command()
@click.option("--burst", is_flag=True, help="Drain the queue, then exit.")
@click.option(
    "--simple",
    is_flag=True,
    help="Run jobs in the worker process instead of forking one per job.",
)
def worker(burst: bool, simple: bool) -> None:
    """Run an RQ worker with its scheduler, inside the app context.

    On start it recovers deliveries whose job was lost (like ``requeue``) and
    schedules the periodic sweep; then, every ``RECOVERY_INTERVAL``, it releases
    expired leases and kicks due deliveries itself, with or without a scheduler.
    A database that refuses at start is left to that loop and to job retries.
    """
    from .outbound.worker import make_worker

    state = get_state()
    pool = state.redis.connection_pool
    # A connection of its own: RQ raises its socket timeout for blocking pops.
    connection = redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **dict(pool.connection_kwargs)
        )
    )
    queue = kick.make_queue(state.config, connection)
    recovered = {"released": 0}
    try:
        try:
            recovered = kick.requeue(state)
            backfill_send.resume(state)
        except sa.exc.SQLAlchemyError as exc:
            # Jobs retry and the recovery loop tries again: start anyway.
            click.echo(
                f"The database refused the start-up recovery ({type(exc).__name__});"
                " the worker starts and tries again every"
                f" {state.config.recovery_interval:g} s.",
                err=True,
            )
        kick.schedule_sweep(state, queue)
    except redis.RedisError as exc:
        raise click.ClickException(
            f"Redis is unavailable at {_safe_url(state.config.redis_url)}: {exc}"
        ) from None
    if recovered["released"]:
        click.echo(f"Recovered {recovered['released']} deliveries from a lost worker.")
    # Forked job processes must not share the parent's database connections.
    state.db.engine.dispose()
    rq_worker = make_worker(
        state,
        queue,
        connection,
        simple=simple,
        extra_queues=[backfill_send.make_queue(state, connection)],
    )
    rq_worker.work(burst=burst, with_scheduler=True)


@cli.command()
@click.option(
    "--force",
    is_flag=True,
    help="Also release deliveries claimed by a worker that may still be running.",
)
def requeue(force: bool) -> None:
    """Re-enqueue deliveries whose job was lost (Redis flushed, worker killed)."""
    state = get_state()
    try:
        result = kick.requeue(state, force=force)
    except redis.RedisError as exc:
        raise click.ClickException(f"Redis is unavailable: {exc}") from None
    click.echo(
        f"Released {result['released']} stale deliveries; queued delivery for"
        f" {result['workspaces']} workspace(s)."
    )


@cli.command("retry-failed")
@_workspace_option
def retry_failed(workspace_id: str | None) -> None:
    """Give failed deliveries a new retry window and queue them."""
    n = kick.retry_failed(get_state(), workspace_id)
    click.echo(f"Queued {n} failed deliveries again.")


@cli.command()
@_workspace_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(workspace_id: str | None, as_json: bool) -> None:
    """Count deliveries per status and the completions waiting in the Redis
    fallback (``null`` when Redis is unavailable); say whether RQ's scheduler
    runs, where deliveries go, whether they are paused, how long the oldest
    pending delivery has waited; the deliveries per hour (24 h) and per day
    (30 days) and the latency of the last hour, as on the settings page
    (``insight`` in JSON)."""
    state = get_state()
    counts: dict[str, int | None] = dict(log.counts(state, workspace_id))
    current = outbound_settings.load(state, state.workspace(workspace_id), fresh=True)
    oldest = log.oldest_pending(state, workspace_id)
    age = (
        None
        if oldest is None
        else max(0.0, (dt.datetime.now(dt.timezone.utc) - oldest).total_seconds())
    )
    try:
        counts["fallback"] = fallback.length(state.redis)
    except redis.RedisError:
        counts["fallback"] = None
    try:
        scheduler: bool | None = kick.scheduler_active(state.redis, state.queue.name)
    except redis.RedisError:
        scheduler = None
    figures = insight.figures(state, workspace_id)
    if as_json:
        extra = {
            "scheduler": scheduler,
            "workspace": current.workspace_id,
            "api_host": current.api_host,
            "paused": current.paused,
            "paused_reason": current.attention_reason,
            "oldest_pending_seconds": None if age is None else round(age, 1),
            "insight": figures,
        }
        click.echo(json.dumps({**counts, **extra}))
        return
    for name, n in counts.items():
        click.echo(f"{name:8} {'unknown' if n is None else n}")
    click.echo(f"scheduler {_describe_scheduler(scheduler)}")
    click.echo(f"oldest pending: {'none' if age is None else _describe_age(age)}")
    ws = "" if workspace_id is None else f" (workspace {current.workspace_id!r})"
    click.echo(f"host{ws}: {current.api_host}")
    if current.paused:
        click.echo(
            f"PAUSED{ws}: Segment rejected the write key"
            f" ({current.attention_reason or 'no reason given'}); deliveries wait"
            " for a new key."
        )
    else:
        click.echo(f"deliveries{ws}: {'enabled' if current.enabled else 'DISABLED'}")
    click.echo(_describe_insight(figures))


def _describe_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def _describe_insight(figures: dict[str, t.Any]) -> str:
    day, month = insight.totals(figures["hourly"]), insight.totals(figures["daily"])
    latency = figures["latency"]
    lines = [
        "last 24 h " + ", ".join(f"{n} {name}" for name, n in day.items()),
        "last 30 d " + ", ".join(f"{n} {name}" for name, n in month.items()),
        (
            f"latency  p50 {latency['p50']:.2f} s, p99 {latency['p99']:.2f} s"
            f" ({latency['count']} sent in the last hour)"
            if latency["count"]
            else "latency  none sent in the last hour"
        ),
    ]
    return "\n".join(lines)


def _describe_scheduler(active: bool | None) -> str:
    if active is None:
        return "unknown (Redis is unavailable)"
    if active:
        return "running"
    return (
        "NOT RUNNING: retries after a backoff and the periodic sweep wait for a"
        " `flask refiner-segment worker` (or `rq worker --with-scheduler`)"
    )


@cli.command()
@click.option(
    "--days",
    type=click.IntRange(min=0),
    default=None,
    help="Age in days (default: REFINER_SEGMENT_DELIVERY_RETENTION_DAYS).",
)
@_workspace_option
def prune(days: int | None, workspace_id: str | None) -> None:
    """Delete sent, failed and skipped deliveries older than DAYS, in batches.

    Pending and sending deliveries are kept; user segments do not change.
    """
    state = get_state()
    if days is None and state.config.delivery_retention_days is None:
        raise click.UsageError(
            "REFINER_SEGMENT_DELIVERY_RETENTION_DAYS is None (keep forever):"
            " pass --days to prune."
        )
    result = retention.prune(state, days, workspace_id=workspace_id)
    age = days if days is not None else state.config.delivery_retention_days
    detail = ", ".join(f"{result.by_status.get(s, 0)} {s}" for s in retention.FINISHED)
    where = f" in workspace {workspace_id!r}" if workspace_id is not None else ""
    click.echo(
        f"Removed {result.total} deliveries older than {age} days{where}"
        f" ({detail}) in {result.batches} batch(es)."
    )


@cli.command("send-test")
@_workspace_option
def send_test(workspace_id: str | None) -> None:
    """Send a test event to Segment now and print its answer."""
    try:
        result = sender.send_test(get_state(), workspace_id)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    code = result.status_code if result.status_code is not None else "no answer"
    click.echo(f"Segment answered: {code} {result.error or 'OK'}")
    if result.body:
        click.echo(result.body)
    if result.outcome != "ok":
        raise SystemExit(1)


def _safe_url(url: str) -> str:
    """A Redis URL without its password."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"
