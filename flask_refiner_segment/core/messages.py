"""Pure functions: build Segment's identify/group/track from a completion.

:func:`build_messages` runs in the worker and turns the *completion* stored
with a delivery (:func:`.completion.normalize_completion`) into the messages the
README's "What is sent to Segment" describes, cut to Segment's size limits.
Nothing here uses Flask, the database or the network.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import itertools
import json
import re
import typing as t
import unicodedata
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from functools import lru_cache

from .completion import canonical_json
from .completion import completion_nps_score
from .completion import nps_group

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_MESSAGES = 2500
#: Bytes counted for a batch request's ``{"batch":[...],"sentAt":...,"writeKey":...}``.
BATCH_ENVELOPE_BYTES = 200
ELLIPSIS = "…"

#: Identify traits written after the prefix; an answer slug never takes one.
FIXED_TRAITS = (
    "last_survey_id",
    "last_survey_name",
    "last_survey_completed_at",
    "nps_score",
    "nps_group",
)
#: Track properties written unprefixed next to the flat ``{prefix}{slug}`` ones.
FIXED_PROPERTIES = (
    "survey_id",
    "survey_name",
    "response_id",
    "completed_at",
    "answers",
    "truncated_answers",
)

_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_DEFAULT = json.JSONEncoder()  # what json.dumps(message) gives: ASCII, with spaces
_ASCII_RUNS = re.compile(r"[^0-9a-z]+")
_VERBATIM_TRAIT = re.compile(r"[A-Za-z0-9_]*[A-Za-z0-9][A-Za-z0-9_]*")
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')

Message = dict[str, t.Any]


class MessageTooLarge(ValueError):
    """A message is over the size limit even after truncation; ``str(exc)`` says
    which message and how large it is."""


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """Per-workspace choices for building messages."""

    trait_prefix: str = "refiner_"
    event_name: str = "Survey Completed"
    library_name: str = "flask-refiner-segment"
    library_version: str = "0.1.0"
    max_message_bytes: int = MAX_MESSAGE_BYTES
    #: Track event names of the survey lifecycle signals (:mod:`.lifecycle`).
    shown_event: str = "Survey Shown"
    dismissed_event: str = "Survey Dismissed"


def dumps(obj: t.Any) -> str:
    """The compact JSON used for sizes and requests (UTF-8 text, no spaces)."""
    return _COMPACT.encode(obj)


def message_size(message: Mapping[str, t.Any]) -> int:
    """Bytes of ``message`` as sent (UTF-8 of :func:`dumps`)."""
    encoded = _COMPACT.encode(message)
    return len(encoded) if encoded.isascii() else len(encoded.encode())


def limit_size(message: Mapping[str, t.Any]) -> int:
    """The size checked against ``max_message_bytes``: bytes of the default
    ``json.dumps`` encoding (ASCII escapes, ``", "`` and ``": "``), the way
    segment-analytics-python checks Segment's 32 KB limit. Never less than
    :func:`message_size`, so a message within it is within both."""
    return len(_DEFAULT.encode(message))


# -- names -------------------------------------------------------------------


def slugify(value: str) -> str:
    """Lower-case ``value`` and make each run of non-alphanumerics one ``_``,
    trimmed at both ends. Unicode letters, digits and marks are kept (after
    NFKC normalization, so ``"ＮＰＳ"`` is ``"nps"``); may return ``""``.
    """
    if value.isascii():
        return _ASCII_RUNS.sub("_", value.lower()).strip("_")
    value = unicodedata.normalize("NFKC", value).lower()
    kept = [
        c if c.isalnum() or unicodedata.category(c)[0] == "M" else " " for c in value
    ]
    return "_".join("".join(kept).split())


_slug = lru_cache(maxsize=2048)(slugify)


def _base_slug(trait: str | None, key: str) -> str:
    if trait:
        if _VERBATIM_TRAIT.fullmatch(trait):
            return trait
        return _slug(trait) or "answer"
    return _slug(key) or "answer"


def trait_slugs(
    questions: Sequence[Mapping[str, t.Any]],
    answer_keys: Iterable[str],
    *,
    prefix: str = "refiner_",
) -> dict[str, str]:
    """Map each answer key to its unique slug (README: What is sent to Segment).

    The slug is the question's ``trait`` verbatim when it is made of ASCII
    letters, digits and ``_`` (case kept), else the slugified trait, else the
    slugified key; an empty slug is ``"answer"``. Slugs are made unique
    ignoring case, with ``_2``, ``_3``..., in question order, then answer
    keys without a question in answer order. Every question reserves its slug,
    answered or not, so a question's trait name is stable across responses.
    :data:`FIXED_TRAITS` and, where ``prefix + slug`` would be one,
    :data:`FIXED_PROPERTIES` are never used. Returns keys in that order.
    """
    taken = set(FIXED_TRAITS)
    taken.update(
        name[len(prefix) :] for name in FIXED_PROPERTIES if name.startswith(prefix)
    )
    by_question: dict[str, str] = {}
    for q in questions:
        key = q["key"]
        if key not in by_question:
            by_question[key] = _unique(_base_slug(q.get("trait"), key), taken)
    keys = list(answer_keys)
    present = set(keys)
    slugs = {k: slug for k, slug in by_question.items() if k in present}
    for key in keys:
        if key not in by_question:
            slugs[key] = _unique(_slug(key) or "answer", taken)
    return slugs


def _unique(base: str, taken: set[str]) -> str:
    slug, n = base, 1
    while slug.lower() in taken:
        n += 1
        slug = f"{base}_{n}"
    taken.add(slug.lower())
    return slug


# -- build_messages ------------------------------------------------------------


def build_messages(
    completion: Mapping[str, t.Any],
    options: BuildOptions,
    *,
    workspace_id: str = "default",
) -> list[Message]:
    """``[identify, group?, track]`` for one completion (the README's "What is
    sent to Segment"), without ``sentAt`` (the client adds it on every attempt).

    - Answer traits are named ``{prefix}{slug}`` (:func:`trait_slugs`). They
      win over ``user_traits`` / account traits of the same name; the fixed
      ``{prefix}last_survey_*`` and NPS traits win over ``user_traits``.
    - The NPS traits come from the first ``"nps"`` question, in question order,
      whose answer is an int-like 0–10.
    - Account-scope answers go to the group; without an account they are only
      in the track (which carries every answer).
    - ``messageId`` is ``rs-{type}-`` and 48 hex digits of a sha256 over the
      workspace, the options and the canonical completion: retries and
      re-signals with the same content repeat it, any edit changes all three.
    - A message over ``max_message_bytes`` (by :func:`limit_size`) has its
      longest string answers cut, longest first, to a common length that fits,
      each ending in ``…`` and listed in the track's ``truncated_answers``.

    :raise MessageTooLarge: when a message does not fit even so.
    """
    builder = _Builder(completion, options, workspace_id)
    answers = builder.answers
    messages = builder.build(answers, [])
    sizes = [limit_size(m) for m in messages]
    if max(sizes) <= options.max_message_bytes:
        return messages
    return _fit(builder, options.max_message_bytes, messages, sizes)


class _Builder:
    """What stays the same while answers are truncated."""

    def __init__(
        self, completion: Mapping[str, t.Any], options: BuildOptions, ws: str
    ) -> None:
        self.completion, self.options = completion, options
        self.answers: Mapping[str, t.Any] = completion["response"]["answers"]
        questions = completion["survey"].get("questions") or ()
        self.slugs = trait_slugs(questions, self.answers, prefix=options.trait_prefix)
        self.account_keys = {q["key"] for q in questions if q.get("scope") == "account"}
        self.nps = completion_nps_score(completion)
        o = options
        seed: list[t.Any] = [ws, o.trait_prefix, o.event_name, o.library_name]
        seed += [o.library_version, o.max_message_bytes, completion]
        digest = hashlib.sha256(canonical_json(seed).encode()).digest()
        self.ids = {
            kind: f"rs-{kind}-{hashlib.sha256(kind.encode() + digest).hexdigest()[:48]}"
            for kind in ("identify", "group", "track")
        }

    def build(
        self, answers: Mapping[str, t.Any], truncated: list[str]
    ) -> list[Message]:
        c, options = self.completion, self.options
        prefix, version = options.trait_prefix, options.library_version
        survey, response, account = c["survey"], c["response"], c.get("account")
        completed_at = response.get("completed_at")
        traits = dict(c.get("user_traits") or ())
        group_traits = dict(account.get("traits") or ()) if account else {}
        nested: dict[str, t.Any] = {}
        flat: dict[str, t.Any] = {}
        for key, slug in self.slugs.items():
            name, value = prefix + slug, answers[key]
            nested[slug] = flat[name] = value
            (group_traits if key in self.account_keys else traits)[name] = value
        traits[prefix + "last_survey_id"] = survey["id"]
        traits[prefix + "last_survey_name"] = survey.get("name")
        traits[prefix + "last_survey_completed_at"] = completed_at
        if self.nps is not None:
            traits[prefix + "nps_score"] = self.nps
            traits[prefix + "nps_group"] = nps_group(self.nps)
        properties = {
            "survey_id": survey["id"],
            "survey_name": survey.get("name"),
            "response_id": response["id"],
            "completed_at": completed_at,
            "answers": nested,
            **flat,
        }
        if truncated:
            properties["truncated_answers"] = truncated
        stamp = {} if completed_at is None else {"timestamp": completed_at}

        def message(kind: str, **fields: t.Any) -> Message:
            context = {
                "library": {"name": options.library_name, "version": version},
                "integration": {"name": "refiner", "version": version},
            }
            return {
                "type": kind,
                "messageId": self.ids[kind],
                "userId": c["user_id"],
                **fields,
                **stamp,
                "context": context,
            }

        messages = [message("identify", traits=traits)]
        track = message("track", event=options.event_name, properties=properties)
        if account:
            messages.append(
                message("group", groupId=account["id"], traits=group_traits)
            )
            track["context"]["groupId"] = account["id"]
        messages.append(track)
        return messages


def _json_width(ch: str) -> int:
    """Bytes of one character inside a JSON string, as :func:`limit_size` counts."""
    o = ord(ch)
    if o < 0x80:
        if o < 0x20:
            return 2 if ch in "\b\f\n\r\t" else 6
        return 2 if ch in '"\\' else 1
    return 6 if o < 0x10000 else 12  # \uXXXX, or a surrogate pair of them


class _Cutter:
    """Cuts one string answer to a byte budget; only its first ``limit + 1``
    characters are ever measured, so a 10 MB answer costs no more than 32 KB."""

    def __init__(self, value: str, limit: int) -> None:
        head = value[: limit + 1]
        self.value = value
        self.widths: list[int] | None = None
        if not head.isascii() or _JSON_ESCAPED.search(head):
            self.widths = list(itertools.accumulate(map(_json_width, head)))
        exact = len(head) if self.widths is None else self.widths[-1]
        self.width = exact if len(value) <= limit else limit + 1

    def cut(self, budget: int) -> str:
        if self.widths is None:
            return self.value[:budget] + ELLIPSIS
        return self.value[: bisect.bisect_right(self.widths, budget)] + ELLIPSIS


def _fit(
    builder: _Builder, limit: int, messages: list[Message], sizes: list[int]
) -> list[Message]:
    """Cap every string answer at the largest byte length where all messages
    fit (a binary search: about 15 builds), so the longest are cut first."""
    answers, slugs = builder.answers, builder.slugs
    cutters = {
        k: _Cutter(v, limit) for k in slugs if isinstance(v := answers[k], str) and v
    }
    if not cutters:
        raise _too_large(messages, sizes, limit, "no free-text answer to truncate")

    def attempt(cap: int) -> tuple[list[Message], list[int]]:
        values = dict(answers)
        truncated = []
        for key, cutter in cutters.items():
            if cutter.width > cap:
                values[key] = cutter.cut(cap)
                truncated.append(slugs[key])
        built = builder.build(values, truncated)
        return built, [limit_size(m) for m in built]

    best, sizes = attempt(0)
    if max(sizes) > limit:
        raise _too_large(best, sizes, limit, "even with every free-text answer cut")
    lo, hi = 0, min(limit, max(c.width for c in cutters.values()))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        built, sizes = attempt(mid)
        if max(sizes) <= limit:
            lo, best = mid, built
        else:
            hi = mid
    return best


def _too_large(
    messages: list[Message], sizes: list[int], limit: int, why: str
) -> MessageTooLarge:
    worst = max(range(len(sizes)), key=sizes.__getitem__)
    return MessageTooLarge(
        f"the {messages[worst]['type']} message is {sizes[worst]} bytes,"
        f" over the {limit}-byte limit ({why})"
    )


def chunk_batches(
    groups: Sequence[Sequence[Mapping[str, t.Any]]],
    *,
    max_bytes: int = 475_000,
    max_messages: int = MAX_BATCH_MESSAGES,
) -> list[list[int]]:
    """Split per-delivery message groups into batch requests, in order.

    A delivery's messages stay in one batch. Each chunk (a list of group
    indexes) keeps ``200 + Σ (message_size + 2)`` within ``max_bytes`` and its
    message count within ``max_messages``; a group that alone exceeds either
    gets a chunk of its own. Empty groups are kept in the current chunk.
    """
    chunks: list[list[int]] = []
    current: list[int] = []
    size, count = BATCH_ENVELOPE_BYTES, 0
    for index, group in enumerate(groups):
        group_size = sum(message_size(m) + 2 for m in group)
        if current and (
            size + group_size > max_bytes or count + len(group) > max_messages
        ):
            chunks.append(current)
            current, size, count = [], BATCH_ENVELOPE_BYTES, 0
        current.append(index)
        size += group_size
        count += len(group)
    if current:
        chunks.append(current)
    return chunks
