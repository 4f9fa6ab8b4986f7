"""The host app the benchmarks run, set up as the README says.

Configured from the environment so that the benchmark, its RQ workers
(``flask --app bench.hostapp refiner-segment worker``) and gunicorn
(``gunicorn 'bench.hostapp:create_app()'``) share one database and Redis:
``BENCH_DATABASE_URL``, ``BENCH_REDIS_URL`` and ``BENCH_API_HOST``.
"""

from __future__ import annotations

import os
import typing as t

import sqlalchemy as sa
from blinker import Namespace
from flask import Flask
from flask import request
from flask_refiner_segment import RefinerSegment
from flask_sqlalchemy import SQLAlchemy

WRITE_KEY = "bench-write-key-0001"
INBOUND_KEY = "bench-inbound-key-0001"

signals = Namespace()
survey_completed = signals.signal("survey_completed")


def create_app(*, extension: bool = True) -> Flask:
    """The host app; without ``extension``, the same app and database without
    flask-refiner-segment (the host alone, or analytics-python's setting)."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="bench",
        SQLALCHEMY_DATABASE_URI=os.environ["BENCH_DATABASE_URL"],
        REFINER_SEGMENT_REDIS_URL=os.environ["BENCH_REDIS_URL"],
        REFINER_SEGMENT_WRITE_KEY=WRITE_KEY,
        REFINER_SEGMENT_API_HOST=os.environ.get("BENCH_API_HOST", "http://127.0.0.1:9"),
        REFINER_SEGMENT_INBOUND_API_KEY=INBOUND_KEY,
        # The tenants part stores the local stand-in as each workspace's host.
        REFINER_SEGMENT_ALLOW_PRIVATE_HOSTS=True,
    )
    db = SQLAlchemy(app)
    if extension:
        RefinerSegment(app, db=db, signal=survey_completed)
    app.extensions["bench_db"] = db
    webhook = sa.Table(
        "bench_webhook",
        db.metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime, server_default=sa.func.now()),
    )
    app.extensions["bench_response"] = _response_model(db)

    @app.post("/bare")
    def bare() -> tuple[str, int]:
        """The inbound benchmark's baseline: read the body, answer 200."""
        request.get_data()
        return "", 200

    @app.post("/durable")
    def durable() -> tuple[str, int]:
        """The inbound benchmark's durable floor: the raw body INSERTed as one
        row and committed (one autocommit statement, one round trip)."""
        body = request.get_data().decode("utf-8", "replace")
        engine = db.engine.execution_options(isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(webhook.insert(), {"body": body})
        return "", 200

    return app


def _response_model(db: SQLAlchemy) -> t.Any:
    """The host's own table: one row per survey response, as a survey app keeps."""

    class Response(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "bench_survey_response"
        id = sa.Column(sa.Integer, primary_key=True)
        response_id = sa.Column(sa.String(255), nullable=False)
        user_id = sa.Column(sa.String(255), nullable=False)
        survey_id = sa.Column(sa.String(255), nullable=False)
        answers = sa.Column(sa.JSON, nullable=False)
        completed_at = sa.Column(sa.DateTime, nullable=False)

    return Response


def create_fresh_app(env: dict[str, str]) -> Flask:
    """The app for ``env`` (also set in ``os.environ``), on empty tables."""
    os.environ.update(env)
    app = create_app()
    db = app.extensions["bench_db"]
    with app.app_context():
        db.drop_all()
        db.create_all()
    return app
