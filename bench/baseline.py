"""What a user would write instead: ``segment-analytics-python`` in the handler.

The handler sends the same three messages as the extension (identify with the
answers as traits, group, track) through the official client: an in-memory
queue, one background thread, batches of 100. Queued messages are lost on a
crash or exit, and once the queue is full (10,000 by default) new ones are
dropped with a warning.
"""

from __future__ import annotations

import logging
import typing as t

from segment.analytics import Client

from .hostapp import WRITE_KEY


def make_client(host: str, **options: t.Any) -> Client:
    # The full-queue warning would be printed once per dropped message.
    logging.getLogger("segment").setLevel(logging.ERROR)
    return Client(WRITE_KEY, host=host, **options)


def handler(client: Client) -> t.Callable[..., None]:
    """A ``survey_completed`` receiver calling ``client`` directly."""

    def on_survey_completed(
        sender: t.Any,
        *,
        user_id: str,
        survey: dict[str, t.Any],
        response: dict[str, t.Any],
        account: dict[str, t.Any] | None = None,
        user_traits: dict[str, t.Any] | None = None,
        **extra: t.Any,
    ) -> None:
        answers = response["answers"]
        traits = {**(user_traits or {})}
        traits.update({f"refiner_{key}": value for key, value in answers.items()})
        client.identify(user_id, traits, timestamp=response["completed_at"])
        if account:
            client.group(
                user_id,
                account["id"],
                account.get("traits") or {},
                timestamp=response["completed_at"],
            )
        client.track(
            user_id,
            "Survey Completed",
            {
                "survey_id": survey["id"],
                "survey_name": survey["name"],
                "response_id": response["id"],
                **answers,
            },
            timestamp=response["completed_at"],
        )

    return on_survey_completed
