"""Backfill: record past completions from the host's source, as the signal would.

The host registers ``@refiner_segment.completion_source``: a function given
``since`` (an aware UTC datetime) that yields the ``survey_completed`` keyword
arguments of its past completions, best oldest first. Each one is checked and
recorded by the receiver's own code (:func:`.receiver.prepare`,
:func:`.record.insert_pending`): the same deduplication against the response's
latest content, the same payload and so the same messageIds, ``completed_at``
as ``timestamp``. Its delivery waits with the status ``backfill`` for the
backfill's own jobs (:mod:`.backfill_send`), so live deliveries never queue
behind it.

Progress lives in a Redis hash per workspace. Run again after an interruption,
a backfill resumes after the last completion it saw (when the source yields
oldest first; otherwise it reads the source again, and what was recorded is
deduplicated, so nothing is sent twice either way).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import json
import logging
import time
import typing as t
import uuid
from collections.abc import Iterator
from collections.abc import Mapping

from ..tables import outbound as models
from ..tables.base import utcnow
from . import backfill_send
from . import receiver
from . import record
from . import settings
from .ready import KEY_PREFIX

if t.TYPE_CHECKING:
    from ..state import State

logger = logging.getLogger("flask_refiner_segment")

#: Progress is saved (and the send chain started) at least this often (s).
SAVE_EVERY = 0.5
#: A run's lock outlives its last save this long (s): a killed run can be
#: resumed after that.
LOCK_TTL = 5

COUNTS = ("seen", "recorded", "unchanged", "invalid", "not_selected", "other")


class BackfillError(Exception):
    """A backfill cannot start or go on; ``str(exc)`` says why."""


def progress_key(workspace_id: str) -> str:
    return f"{KEY_PREFIX}backfill:{workspace_id}"


def lock_key(workspace_id: str) -> str:
    return f"{KEY_PREFIX}backfill-run:{workspace_id}"


@dataclasses.dataclass
class Progress:
    """What a workspace's backfill did so far (a Redis hash)."""

    run_id: str = ""
    #: ``recording``, ``recorded`` (every completion read), ``interrupted``
    #: or ``failed``.
    status: str = ""
    since: str = ""
    survey_id: str = ""
    started_at: str = ""
    updated_at: str = ""
    error: str = ""
    #: ``completed_at`` of the last completion read, while the source yields
    #: oldest first; ``at_cursor``: how many were read at that time.
    cursor: str = ""
    at_cursor: int = 0
    ordered: bool = True
    dry_run: bool = False
    seen: int = 0
    recorded: int = 0
    unchanged: int = 0
    invalid: int = 0
    not_selected: int = 0
    other: int = 0

    @classmethod
    def load(cls, state: State, workspace_id: str) -> Progress:
        raw = state.redis.hgetall(progress_key(workspace_id))
        values: dict[str, t.Any] = {}
        for field in dataclasses.fields(cls):
            value = raw.get(field.name.encode())
            if value is None:
                continue
            text = value.decode() if isinstance(value, bytes) else str(value)
            if field.type == "int":
                values[field.name] = int(text)
            elif field.type == "bool":
                values[field.name] = text == "1"
            else:
                values[field.name] = text
        return cls(**values)

    def save(self, state: State, workspace_id: str) -> None:
        self.updated_at = iso_time(utcnow())
        mapping: dict[str, t.Any] = {
            k: (int(v) if isinstance(v, bool) else v)
            for k, v in dataclasses.asdict(self).items()
        }
        state.redis.hset(progress_key(workspace_id), mapping=t.cast(t.Any, mapping))

    @property
    def resumable(self) -> bool:
        return self.status in ("recording", "interrupted", "failed")

    def counts(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in COUNTS}


def iso_time(value: dt.datetime) -> str:
    """A UTC time as text that sorts like the time (always with microseconds)."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def as_aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


class Backfill:
    """One run of a workspace's backfill (the CLI's, or one recording job's).

    :raise BackfillError: no source is registered, the workspace cannot send,
        or another run of the same workspace is going on.
    """

    def __init__(
        self,
        state: State,
        workspace_id: str,
        since: dt.datetime,
        *,
        survey_id: str | None = None,
        rate: int | None = None,
        dry_run: bool = False,
        run_id: str | None = None,
    ) -> None:
        source = state.hooks.completion_source
        if source is None:
            raise BackfillError(
                "No completion source is registered: decorate a function with"
                " @refiner_segment.completion_source (README: Backfill)."
            )
        self.state, self.workspace_id, self.source = state, workspace_id, source
        self.since = as_aware(since).astimezone(dt.timezone.utc)
        self.survey_id, self.dry_run = survey_id, dry_run
        self.settings = settings.load(state, workspace_id, fresh=True)
        if not self.settings.sendable and not dry_run:
            raise BackfillError(
                f"Workspace {workspace_id!r} cannot send:"
                f" {self.settings.skip_reason(None)}."
            )
        previous = Progress.load(state, workspace_id)
        self.run_id = run_id or uuid.uuid4().hex
        taken = dry_run or state.redis.set(
            lock_key(workspace_id), self.run_id, nx=True, ex=LOCK_TTL
        )
        if not taken and state.redis.get(lock_key(workspace_id)) != (
            self.run_id.encode()
        ):
            raise BackfillError(
                f"A backfill of workspace {workspace_id!r} is running (started"
                f" {previous.started_at or 'just now'}); wait for it to finish."
            )
        same = previous.since == iso_time(self.since) and previous.survey_id == (
            survey_id or ""
        )
        self.resumed = bool(same and previous.resumable and not dry_run)
        if self.resumed or (run_id is not None and previous.run_id == run_id):
            self.progress = previous
            self.progress.run_id = self.run_id
        else:
            self.progress = Progress(
                run_id=self.run_id,
                since=iso_time(self.since),
                survey_id=survey_id or "",
                started_at=iso_time(utcnow()),
                dry_run=dry_run,
            )
        self.progress.status = "recording"
        self.progress.error = ""
        self._saved = time.monotonic()
        self._unsent = 0
        if not dry_run:  # a dry run leaves a real run's progress as it is
            backfill_send.set_rate(state, workspace_id, rate)
            self.progress.save(state, workspace_id)

    # -- reading the source ---------------------------------------------------

    @property
    def start(self) -> dt.datetime:
        """Where the source is read from: ``since``, or the resume cursor."""
        p = self.progress
        if p.cursor and p.ordered:
            return max(self.since, parse_time(p.cursor))
        return self.since

    def completions(self) -> Iterator[Mapping[str, t.Any]]:
        """The source's completions not read yet by this backfill."""
        kwargs: dict[str, t.Any] = {}
        try:
            parameters = inspect.signature(self.source).parameters
        except (TypeError, ValueError):
            parameters = {}  # type: ignore[assignment]
        if "workspace_id" in parameters:
            kwargs["workspace_id"] = self.workspace_id
        if "survey_id" in parameters:
            kwargs["survey_id"] = self.survey_id
        p = self.progress
        skip = p.at_cursor if p.cursor and p.ordered else 0
        cursor = p.cursor
        for item in self.source(self.start, **kwargs):
            if skip and _completed_at(item) == cursor:
                skip -= 1  # read by the run that was interrupted
                continue
            skip = 0
            yield item

    # -- recording ------------------------------------------------------------

    def process(self, kwargs: Mapping[str, t.Any]) -> str:
        """Record one completion; returns what became of it (a count's name).

        :raise sqlalchemy.exc.SQLAlchemyError: the database refused (the run
            can be resumed).
        """
        p = self.progress
        outcome = self._record(kwargs)
        p.seen += 1
        setattr(p, outcome, getattr(p, outcome) + 1)
        self._advance(_completed_at(kwargs))
        if time.monotonic() - self._saved >= SAVE_EVERY:
            self.save()
        return outcome

    def _record(self, kwargs: Mapping[str, t.Any]) -> str:
        state, ws = self.state, self.workspace_id
        if state.workspace(kwargs.get("workspace_id")) != ws:
            return "other"
        prepared = receiver.prepare(state, kwargs)
        survey = prepared.base["survey_id"]
        if self.survey_id is not None and survey != self.survey_id:
            return "other"
        if prepared.row is None:
            logger.info(
                "Backfill: completion %r not recorded: %s.",
                prepared.base["response_id"],
                prepared.reason,
            )
            return "invalid"
        if self.settings.skip_reason(survey) is not None:
            return "not_selected"
        if self.dry_run:
            changed = record.would_record(state, prepared.row)
        else:
            row = {**prepared.row, "status": models.BACKFILL}
            changed = record.insert_pending(state, row)
            self._unsent += changed
        return "recorded" if changed else "unchanged"

    def _advance(self, completed_at: str | None) -> None:
        p = self.progress
        if not p.ordered or completed_at is None:
            return
        if p.cursor and completed_at < p.cursor:
            # Not oldest first: a rerun must read the source from the start.
            p.ordered, p.cursor, p.at_cursor = False, "", 0
            return
        if completed_at == p.cursor:
            p.at_cursor += 1
        else:
            p.cursor, p.at_cursor = completed_at, 1

    def save(self) -> None:
        """Save the progress, keep the run's lock, start sending what was recorded."""
        state, ws = self.state, self.workspace_id
        self._saved = time.monotonic()
        if self.dry_run:
            return
        self.progress.save(state, ws)
        state.redis.set(lock_key(ws), self.run_id, ex=LOCK_TTL)
        if self._unsent:
            backfill_send.start(state, ws)
            self._unsent = 0

    def finish(self, status: str = "recorded", error: str = "") -> Progress:
        """End the run: save its outcome, release its lock, start the sending."""
        state, ws = self.state, self.workspace_id
        self.progress.status = status
        self.progress.error = error
        if self.dry_run:
            return self.progress
        self.progress.save(state, ws)
        if state.redis.get(lock_key(ws)) == self.run_id.encode():
            state.redis.delete(lock_key(ws))
        if self._unsent or status == "recorded":
            backfill_send.start(state, ws)
            self._unsent = 0
        return self.progress

    def pause(self) -> None:
        """End one recording job of several: save, keep the lock for the next."""
        self.save()


def _completed_at(kwargs: Mapping[str, t.Any]) -> str | None:
    """The completion's ``completed_at`` in the stored ISO form, if any."""
    response = kwargs.get("response")
    if not isinstance(response, Mapping):
        return None
    value = response.get("completed_at")
    if isinstance(value, dt.datetime):
        return iso_time(as_aware(value))
    if isinstance(value, str):
        try:
            return iso_time(as_aware(parse_time(value)))
        except ValueError:
            return None
    return None


def summary(progress: Progress) -> str:
    """The counts of a run in words."""
    p = progress
    verb = "would record" if p.dry_run else "recorded"
    text = (
        f"{p.seen} completions read: {p.recorded} {verb}, {p.unchanged} already"
        f" recorded with the same content"
    )
    extra = [
        f"{p.invalid} invalid (see the log)" if p.invalid else "",
        f"{p.not_selected} of surveys not selected to send" if p.not_selected else "",
        f"{p.other} of other surveys or workspaces" if p.other else "",
    ]
    return text + "".join(f", {e}" for e in extra if e) + "."


def to_json(progress: Progress) -> str:
    return json.dumps(dataclasses.asdict(progress))
