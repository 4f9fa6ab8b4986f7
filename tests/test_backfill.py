"""Backfill of past completions (#16, part 1): CLI, resume, lane, rate, page."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import typing as t

import pytest
from flask_refiner_segment.outbound import backfill as backfills
from flask_refiner_segment.outbound import backfill_send
from flask_refiner_segment.outbound import settings as outbound_settings
from rq import Queue

from . import hostapp
from .conftest import ROOT
from .conftest import cli_environment
from .conftest import flask_cli
from .conftest import run_worker
from .conftest import send_completion
from .helpers import deliveries
from .helpers import statuses
from .test_views import URL
from .test_views import allow
from .test_views import token

SINCE = "2026-01-01"


def work(app: t.Any, redis_url: str) -> None:
    """A real RQ worker on the live queue, then the backfill queue, in burst mode."""
    run_worker(app, redis_url, backfill=True)


def work_until(
    app: t.Any, redis_url: str, until: t.Callable[[], bool], timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise AssertionError(f"not done before the timeout: {statuses(app)}")
        work(app, redis_url)
        time.sleep(0.1)


def tracks(segment: t.Any) -> list[dict[str, t.Any]]:
    return [m for m in segment.messages if m["type"] == "track"]


@pytest.fixture
def env(app_config: dict[str, t.Any]) -> dict[str, str]:
    return cli_environment(app_config, HOSTAPP_HISTORY="30")


def test_cli_records_like_the_signal_and_sends(make_app, env, segment, redis_url):
    app = make_app(HISTORY=30)
    # One past completion was already delivered live with the same content.
    with app.test_request_context():
        hostapp.survey_completed.send(app, **hostapp.history_item(4))
    result = flask_cli(["refiner-segment", "backfill", "--since", SINCE], env)
    assert result.returncode == 0, result.stderr
    assert "30 completions read: 29 recorded, 1 already recorded" in result.stdout
    assert "29 deliveries wait to be sent" in result.stdout
    assert statuses(app) == {"backfill": 29, "pending": 1}
    # Recorded as the signal would: signalled again, nothing new is recorded.
    with app.test_request_context():
        hostapp.survey_completed.send(app, **hostapp.history_item(7))
    assert len(deliveries(app)) == 30
    work_until(app, redis_url, lambda: statuses(app) == {"sent": 30})
    sent = tracks(segment)
    assert len(sent) == 30
    assert len(set(segment.message_ids())) == len(segment.messages)
    by_response = {m["properties"]["response_id"]: m for m in sent}
    assert by_response["r-h7"]["timestamp"] == "2026-01-01T07:00:00.000Z"
    assert by_response["r-h29"]["properties"]["answers"]["why"] == "answer 29"

    again = flask_cli(["refiner-segment", "backfill", "--since", SINCE], env)
    assert "30 completions read: 0 recorded, 30 already recorded" in again.stdout
    work(app, redis_url)
    assert len(tracks(segment)) == 30


def test_live_deliveries_go_first(make_app, app_config, segment, redis_url):
    app = make_app(HISTORY=60, REFINER_SEGMENT_BATCH_SIZE=10)
    env = cli_environment(
        app_config, HOSTAPP_HISTORY="60", REFINER_SEGMENT_BATCH_SIZE="10"
    )
    segment.keep_bodies = True
    result = flask_cli(["refiner-segment", "backfill", "--since", SINCE], env)
    assert result.returncode == 0, result.stderr
    send_completion(app, 1)  # live, after the whole backfill was recorded
    work_until(app, redis_url, lambda: statuses(app) == {"sent": 61})
    order = [m["properties"]["response_id"] for m in tracks(segment)]
    # At most the one backfill batch that was queued first went ahead of it.
    assert order.index("r-1") <= 10
    requests = [json.loads(b)["batch"] for b in segment.bodies]
    assert max(len(batch) for batch in requests) <= 30  # 10 completions x 3


def test_interrupted_and_run_again_resumes(make_app, app_config, segment, redis_url):
    app = make_app(HISTORY=40)
    env = cli_environment(app_config, HOSTAPP_HISTORY="40")
    failing = flask_cli(
        ["refiner-segment", "backfill", "--since", SINCE],
        {**env, "HOSTAPP_HISTORY_FAIL_AT": "15"},
    )
    assert failing.returncode == 1
    assert "The completion source raised ConnectionError" in failing.stderr
    assert "run the same command again to resume" in failing.stderr
    assert "Traceback" not in failing.stderr
    assert statuses(app) == {"backfill": 15}

    result = flask_cli(["refiner-segment", "backfill", "--since", SINCE], env)
    assert result.returncode == 0, result.stderr
    assert "Resuming the backfill" in result.stdout
    assert "15 completions read already" in result.stdout
    # The rerun read only what was left: totals cover both runs.
    assert "40 completions read: 40 recorded, 0 already recorded" in result.stdout
    work_until(app, redis_url, lambda: statuses(app) == {"sent": 40})
    ids = [m["properties"]["response_id"] for m in tracks(segment)]
    assert sorted(ids) == sorted(f"r-h{n}" for n in range(40))
    assert segment.duplicates == 0


def test_ctrl_c_then_resume(make_app, app_config, segment, redis_url, redis_conn):
    app = make_app(HISTORY=40)
    env = cli_environment(
        app_config, HOSTAPP_HISTORY="40", HOSTAPP_HISTORY_DELAY="0.05"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "tests.hostapp:create_app"]
        + ["refiner-segment", "backfill", "--since", SINCE],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    key = backfills.progress_key("default")
    deadline = time.monotonic() + 60
    while int(redis_conn.hget(key, "seen") or 0) < 5:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Interrupted: run the same command again to resume." in err
    assert "Traceback" not in err
    assert redis_conn.hget(key, "status") == b"interrupted"
    seen = int(redis_conn.hget(key, "seen"))
    assert 5 <= seen < 40
    assert len(deliveries(app)) == seen

    result = flask_cli(
        ["refiner-segment", "backfill", "--since", SINCE],
        {**env, "HOSTAPP_HISTORY_DELAY": "0"},
    )
    assert result.returncode == 0, result.stderr
    assert f"{seen} completions read already" in result.stdout
    assert "40 completions read: 40 recorded" in result.stdout
    work_until(app, redis_url, lambda: statuses(app) == {"sent": 40})
    assert len(tracks(segment)) == 40
    assert segment.duplicates == 0


def test_dry_run_survey_and_errors(make_app, app_config, segment):
    app = make_app(HISTORY=30)
    env = cli_environment(app_config, HOSTAPP_HISTORY="30")
    send_completion(app, 1)
    dry = flask_cli(
        ["refiner-segment", "backfill", "--since", "2026-01-01T10:00:00", "--dry-run"],
        env,
    )
    assert dry.returncode == 0, dry.stderr
    assert "20 completions read: 20 would record, 0 already recorded" in dry.stdout
    assert statuses(app) == {"pending": 1}
    survey = flask_cli(
        ["refiner-segment", "backfill", "--since", SINCE, "--survey", "onboarding"],
        env,
    )
    assert "10 recorded" in survey.stdout
    assert "20 of other surveys or workspaces" in survey.stdout

    no_source = flask_cli(
        ["refiner-segment", "backfill", "--since", SINCE],
        {**env, "REFINER_SEGMENT_WRITE_KEY": "", "REFINER_SEGMENT_API_HOST": ""},
    )
    assert no_source.returncode == 1
    assert "cannot send: no Segment write key configured" in no_source.stderr
    bad = flask_cli(["refiner-segment", "backfill", "--since", "yesterday"], env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_rate_and_retry_stay_in_the_backfill_lane(
    make_app, app_config, segment, redis_url
):
    app = make_app(HISTORY=12)
    env = cli_environment(app_config, HOSTAPP_HISTORY="12")
    result = flask_cli(
        ["refiner-segment", "backfill", "--since", SINCE, "--rate", "5"], env
    )
    assert result.returncode == 0, result.stderr
    assert "at most 5 a second" in result.stdout
    segment.keep_bodies = True
    segment.set_fault(status=503, times=1)
    state = app.extensions["refiner_segment"]
    with app.app_context():
        current = outbound_settings.load(state, "default", fresh=True)
        stats = backfill_send.BackfillBatch(
            state, "default", backfill_send.make_queue(state), current
        ).run_batch()
    assert stats["retry"] == 5
    assert statuses(app) == {"backfill": 12}  # never in the live lane
    assert sum(1 for r in deliveries(app) if r.attempts == 1) == 5
    work_until(app, redis_url, lambda: statuses(app) == {"sent": 12})
    batches = [json.loads(b)["batch"] for b in segment.bodies]
    assert all(len(batch) <= 15 for batch in batches)  # 5 completions x 3
    assert len(tracks(segment)) == 12


def test_settings_page_starts_and_shows_it(make_app, segment, redis_url):
    app = make_app(HISTORY=20)
    allow(app)
    client = app.test_client()
    html = client.get(URL).get_data(as_text=True)
    assert 'id="start-backfill"' in html
    bad = client.post(URL + "backfill", data={"csrf_token": token(html), "days": "0"})
    assert bad.status_code == 400
    assert "Enter 1 to 3650 days." in bad.get_data(as_text=True)
    response = client.post(
        URL + "backfill", data={"csrf_token": token(html), "days": "3650"}
    )
    assert response.status_code == 302
    page = client.get(URL).get_data(as_text=True)
    assert "Backfill of the last 3650 days started" in page
    assert 'data-status="queued"' in page
    work_until(app, redis_url, lambda: statuses(app) == {"sent": 20})
    page = client.get(URL).get_data(as_text=True)
    assert 'data-status="recorded"' in page
    assert '<dd id="backfill-recorded">20</dd>' in page
    assert '<dd id="backfill-waiting">0</dd>' in page
    assert ">done<" in page


def test_a_live_edit_supersedes_the_waiting_backfill(make_app, env, segment, redis_url):
    app = make_app(HISTORY=30)
    result = flask_cli(["refiner-segment", "backfill", "--since", SINCE], env)
    assert result.returncode == 0, result.stderr
    edited = hostapp.history_item(3)
    edited["response"]["answers"] = {"how_likely": 10, "why": "edited live"}
    with app.test_request_context():
        hostapp.survey_completed.send(app, **edited)
    work_until(app, redis_url, lambda: statuses(app) == {"sent": 30, "skipped": 1})
    (skipped,) = [r for r in deliveries(app) if r.status == "skipped"]
    assert skipped.response_id == "r-h3"
    assert skipped.reason.startswith("superseded")
    sent = [m for m in tracks(segment) if m["properties"]["response_id"] == "r-h3"]
    assert [m["properties"]["answers"]["why"] for m in sent] == ["edited live"]


def test_the_sweep_restarts_a_lost_chain(make_app, env, segment, redis_url, redis_conn):
    from flask_refiner_segment.outbound import jobs

    app = make_app(HISTORY=30)
    result = flask_cli(["refiner-segment", "backfill", "--since", SINCE], env)
    assert result.returncode == 0, result.stderr
    state = app.extensions["refiner_segment"]
    # The chain's job and key are lost (a Redis failover, a killed worker).
    Queue(state.config.backfill_queue, connection=redis_conn).empty()
    redis_conn.delete(backfill_send.lock_key("default"))
    work(app, redis_url)
    assert statuses(app) == {"backfill": 30}  # nothing sends it any more
    with app.app_context():
        assert jobs.sweep()["backfills"] == 1
    work_until(app, redis_url, lambda: statuses(app) == {"sent": 30})
    assert len(tracks(segment)) == 30
