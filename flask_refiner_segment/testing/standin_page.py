"""The Segment stand-in's HTML page: the calls it received, newest first."""

from __future__ import annotations

import html
import json
import typing as t

_ROW = '<tr class="call-{0}"><td>{1}<td>{0}<td>{2}<td>{3}<td><pre>{4}</pre></tr>'
_PAGE = """<!doctype html><html lang="en"><meta charset="utf-8">
<title>Segment stand-in</title><meta http-equiv="refresh" content="2">
<style>body{{font:14px system-ui,sans-serif;margin:1.5rem;color:#222}}
table{{border-collapse:collapse;width:100%}} #rejected{{color:#a00}}
td,th{{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;
vertical-align:top}} pre{{margin:0;font-size:12px;white-space:pre-wrap}}</style>
{nav}<h1>Segment stand-in</h1>
<p id="summary">{total} calls received, {dups} duplicates dropped, {rejected}
rejected. Newest first; the page refreshes every 2 s. <a href="messages">JSON</a>
{problems}<table id="calls"><tr><th>received<th>type<th>user<th>event / groupId
<th>traits / properties</tr>{rows}</table>
"""


def _cells(m: dict[str, t.Any]) -> list[str]:
    data = m.get("traits") or m.get("properties") or {}
    who = m.get("userId") or m.get("anonymousId") or ""
    what = m.get("event") or m.get("groupId") or ""
    cells = [m["type"], m["receivedAt"], who, what]
    return [*map(str, cells), json.dumps(data, indent=1, ensure_ascii=False)]


def render_page(
    recent: t.Iterable[dict[str, t.Any]],
    total: int,
    duplicates: int,
    rejected: list[dict[str, t.Any]],
    links: t.Mapping[str, str] | None = None,
) -> str:
    """The page: ``links`` (label: URL) to the app around it, a summary, the
    last 20 ``rejected`` and the ``recent`` calls."""
    rows = "".join(_ROW.format(*map(html.escape, _cells(m))) for m in recent)
    problems = "".join(
        f"<li>{html.escape(r['reason'])}: "
        f"<code>{html.escape(json.dumps(r['message'])[:300])}</code>"
        for r in rejected[-20:]
    )
    nav = " · ".join(
        f'<a href="{html.escape(url)}">{html.escape(label)}</a>'
        for label, url in (links or {}).items()
    )
    return _PAGE.format(
        nav=f'<nav id="standin-nav">{nav}</nav>' if nav else "",
        total=total,
        dups=duplicates,
        rejected=len(rejected),
        problems=f'<ul id="rejected">{problems}</ul>' if problems else "",
        rows=rows,
    )
