"""A stacked bar chart as server-rendered SVG (no script, no style sheet).

Colours and sizes are SVG presentation attributes, so the chart draws the same
under a Content-Security-Policy without ``style-src 'unsafe-inline'``. Nothing
here uses Flask, the database or the network.
"""

from __future__ import annotations

import typing as t
from html import escape

#: ``(key, label, colour)`` of each stacked series, bottom up.
Series = t.Sequence[tuple[str, str, str]]

DEFAULT_SERIES: Series = (
    ("sent", "sent", "#2e7d32"),
    ("failed", "failed", "#c62828"),
    ("skipped", "skipped", "#9e9e9e"),
)


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 × 10ⁿ at least ``value`` (at least 1)."""
    if value <= 1:
        return 1
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def stacked_bars(
    buckets: t.Sequence[t.Mapping[str, t.Any]],
    labels: t.Sequence[str],
    *,
    title: str,
    element_id: str,
    label_every: int = 1,
    series: Series = DEFAULT_SERIES,
    empty_text: str = "No deliveries in this period.",
    width: int = 720,
    height: int = 210,
) -> str:
    """An ``<svg>`` of one stacked bar per bucket (``labels[i]`` under bar
    ``i``, every ``label_every``-th shown); each bar has a tooltip with its
    counts. Without any count, the axes and ``empty_text``."""
    left, right, top, bottom = 44, 8, 28, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(1, len(buckets))
    totals = [sum(int(b.get(key, 0)) for key, _, _ in series) for b in buckets]
    peak = nice_ceiling(max(totals, default=0))
    slot = plot_w / n
    bar = max(1.0, slot * 0.78)
    base = top + plot_h
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{escape(element_id)}"'
        f' class="rs-chart" viewBox="0 0 {width} {height}" width="100%"'
        f' role="img" aria-labelledby="{escape(element_id)}-title"'
        ' font-family="system-ui, sans-serif" font-size="11">',
        f'<title id="{escape(element_id)}-title">{escape(title)}:'
        f" {_summary(buckets, series)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    for fraction in (0, 0.5, 1):
        y = base - plot_h * fraction
        value = peak * fraction
        text = f"{value:g}" if value != int(value) else str(int(value))
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"'
            f' stroke="{"#888888" if fraction == 0 else "#e5e5e5"}" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end"'
            f' fill="#555555">{text}</text>'
        )
    x_legend = width - right
    for _key, label, colour in reversed(series):
        x_legend -= 8 + 7 * len(label) + 14
        parts.append(
            f'<rect x="{x_legend}" y="8" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x_legend + 14}" y="17" fill="#333333">{escape(label)}</text>'
        )
    parts.append(
        f'<text x="{left}" y="17" fill="#333333" font-weight="600">'
        f"{escape(title)}</text>"
    )
    for i, bucket in enumerate(buckets):
        x = left + slot * i + (slot - bar) / 2
        y = float(base)
        tip = escape(f"{labels[i]}: {_counts(bucket, series)}")
        parts.append(f'<g class="rs-bar" data-total="{totals[i]}"><title>{tip}</title>')
        for key, _, colour in series:
            count = int(bucket.get(key, 0))
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}"'
                f' fill="{colour}" data-series="{key}" data-count="{count}"/>'
            )
        # An invisible full-height target, so a tooltip shows on empty bars too.
        parts.append(
            f'<rect x="{x:.1f}" y="{top}" width="{bar:.1f}" height="{plot_h}"'
            ' fill="#000000" fill-opacity="0"/></g>'
        )
        if i % label_every == 0 or i == len(buckets) - 1:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{base + 15}" text-anchor="middle"'
                f' fill="#555555">{escape(labels[i])}</text>'
            )
    if not any(totals):
        parts.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}"'
            ' text-anchor="middle" fill="#777777" font-size="13"'
            f' class="rs-chart-empty">{escape(empty_text)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _counts(bucket: t.Mapping[str, t.Any], series: Series) -> str:
    return ", ".join(f"{int(bucket.get(key, 0))} {label}" for key, label, _ in series)


def _summary(buckets: t.Sequence[t.Mapping[str, t.Any]], series: Series) -> str:
    totals = {key: sum(int(b.get(key, 0)) for b in buckets) for key, _, _ in series}
    return ", ".join(f"{totals[key]} {label}" for key, label, _ in series)
