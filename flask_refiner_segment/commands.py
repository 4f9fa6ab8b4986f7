"""``flask refiner-segment backfill`` and ``forget-user`` (beyond live delivery)."""

from __future__ import annotations

import datetime as dt
import signal
import typing as t
from urllib.parse import urlsplit

import click
import redis
import sqlalchemy as sa

from . import erasure
from .outbound import backfill as backfills
from .outbound import backfill_send
from .state import get_state


def register(group: click.Group) -> None:
    """Add the commands to the ``refiner-segment`` group."""
    group.add_command(forget_user)
    group.add_command(backfill)


@click.command("forget-user")
@click.argument("user_id")
@click.option(
    "--workspace",
    "workspace_id",
    default=None,
    help="Workspace id (default: default).",
)
def forget_user(user_id: str, workspace_id: str | None) -> None:
    """Erase what is stored about USER_ID: answers and traits in deliveries,
    recorded answers, inbound traits, events, views and links.

    Deliveries not sent yet are not sent. Segment keeps what it received: ask
    Segment to delete the user too (README: Erasure).
    """
    state = get_state()
    try:
        n = erasure.forget_user(state, user_id, state.workspace(workspace_id))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(
        f"Forgot user {user_id!r}: {n['deliveries']} deliveries emptied"
        f" ({n['cancelled']} not sent, now skipped), {n['responses']} recorded"
        f" responses, {n['traits']} traits, {n['events']} events, {n['views']}"
        f" views, {n['memberships']} account links, {n['profiles']} profile(s)."
    )
    if n["fallback"] < 0:
        click.echo(
            "Warning: Redis is unavailable, so completions waiting in the Redis"
            " fallback were not checked; run this again once it is back.",
            err=True,
        )


@click.command()
@click.option(
    "--since",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="Completions since this date (UTC), e.g. 2026-01-01.",
)
@click.option("--survey", "survey_id", default=None, help="Only this survey id.")
@click.option(
    "--dry-run", is_flag=True, help="Count what would be sent; record nothing."
)
@click.option(
    "--rate",
    type=click.IntRange(min=1),
    default=None,
    help="Send at most N completions a second (default: one batch at a time).",
)
@click.option(
    "--workspace",
    "workspace_id",
    default=None,
    help="Workspace id (default: default).",
)
def backfill(
    since: dt.datetime,
    survey_id: str | None,
    dry_run: bool,
    rate: int | None,
    workspace_id: str | None,
) -> None:
    """Send past completions from the host's completion source.

    They are recorded as the signal would record them (a response already sent
    with the same content is not sent again) and sent by the workers on the
    backfill queue, never ahead of live deliveries. Interrupted, the same
    command resumes where it stopped.
    """
    state = get_state()
    ws = state.workspace(workspace_id)
    try:
        run = backfills.Backfill(
            state,
            ws,
            since.replace(tzinfo=dt.timezone.utc),
            survey_id=survey_id,
            rate=rate,
            dry_run=dry_run,
        )
    except backfills.BackfillError as exc:
        raise click.ClickException(str(exc)) from None
    except redis.RedisError as exc:
        raise click.ClickException(
            f"Redis is unavailable at {_safe_url(state.config.redis_url)}: {exc}"
        ) from None
    p = run.progress
    if run.resumed:
        click.echo(
            f"Resuming the backfill started {p.started_at}: {p.seen} completions"
            f" read already{f', going on from {p.cursor}' if p.cursor else ''}."
        )
    label = "Checking (dry run)" if dry_run else "Recording"
    # Ctrl-C stops after the completion being recorded (a second one at once).
    stop: list[bool] = []

    def interrupt(signum: int, frame: t.Any) -> None:
        stop.append(True)
        signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        try:
            with click.progressbar(
                run.completions(),
                label=label,
                show_pos=True,
                item_show_func=lambda _: f"{p.recorded} new, {p.unchanged} unchanged",
            ) as bar:
                for item in bar:
                    run.process(item)
                    if stop:
                        raise KeyboardInterrupt
        finally:
            signal.signal(signal.SIGINT, previous)
    except KeyboardInterrupt:
        run.finish("interrupted")
        click.echo(backfills.summary(p))
        click.echo("Interrupted: run the same command again to resume.", err=True)
        raise SystemExit(130) from None
    except sa.exc.SQLAlchemyError as exc:
        run.finish("failed", type(exc).__name__)
        raise click.ClickException(
            f"The database refused ({type(exc).__name__}) after {p.seen}"
            " completions: run the same command again to resume."
        ) from None
    except Exception as exc:
        run.finish("failed", f"{type(exc).__name__}: {exc}"[:500])
        raise click.ClickException(
            f"The completion source raised {type(exc).__name__}: {exc}"
            f" (after {p.seen} completions); run the same command again to resume."
        ) from None
    run.finish()
    click.echo(backfills.summary(p))
    if dry_run:
        return
    waiting = backfill_send.waiting(state, ws)
    pace = f" at most {rate} a second" if rate else ""
    click.echo(
        f"{waiting} deliveries wait to be sent{pace} by `flask refiner-segment"
        f" worker` (queue {state.config.backfill_queue!r}), after live ones."
    )


def _safe_url(url: str) -> str:
    """A Redis URL without its password."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"
