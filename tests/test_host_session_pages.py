"""The extension's pages never commit, flush or roll back the host's
``db.session``: the settings page (save, actions, key rotation), the segment
pages and the inbound route, in a request where the host has pending work of
its own. On SQLite and PostgreSQL.

The ``host`` fixture and the approach: test_host_session.py.
"""

from __future__ import annotations

import re
import typing as t

import pytest
from flask_refiner_segment import workspaces

from .inbound_support import identify
from .inbound_support import post
from .test_host_session import PAGES
from .test_host_session import Host
from .test_host_session import host as host  # a fixture

# -- the pages: POST routes inside a request where the host has pending work --


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def watch_requests(host: Host) -> list[dict[str, t.Any]]:
    host.seen = []
    return host.seen


def assert_untouched(seen: list[dict[str, t.Any]], status: int = 302) -> None:
    (entry,) = seen
    assert entry["status"] == status, entry
    assert entry["pending"] is True, entry
    assert entry["committed"] == 0 and entry["after_rollback"] == 0, entry


SETTINGS_FORM = {
    "enabled": "y",
    "region": "eu",
    "track_event": "Saved By The Page",
    "trait_prefix": "page_",
    "send_all": "all",
}


def test_settings_page_save(host: Host) -> None:
    seen = watch_requests(host)
    client = host.app.test_client()
    token = csrf_token(client.get(PAGES).get_data(as_text=True))
    client.post(PAGES, data={"csrf_token": token, **SETTINGS_FORM})
    assert_untouched(seen)
    with host.app.app_context():
        saved = host.ext.settings()
        stored = workspaces.stored(host.app.extensions["refiner_segment"], "default")
    assert (saved.track_event, saved.trait_prefix) == ("Saved By The Page", "page_")
    assert stored.trait_prefix == "page_"


@pytest.mark.parametrize(
    "path, data, status",
    [
        ("test", {}, 302),
        ("retry-failed", {}, 302),
        ("webhook-secret", {"secret": "whsec-7a7a"}, 302),
        ("backfill", {"days": "30"}, 302),
    ],
)
def test_settings_page_actions(host: Host, path: str, data: dict, status: int):
    seen = watch_requests(host)
    client = host.app.test_client()
    token = csrf_token(client.get(PAGES).get_data(as_text=True))
    client.post(PAGES + path, data={"csrf_token": token, **data})
    assert_untouched(seen, status)


def test_settings_page_rotate_key(host: Host) -> None:
    # The default workspace's inbound key comes from config here: use another.
    host.ext.workspace_loader(lambda: "ws-b")
    seen = watch_requests(host)
    client = host.app.test_client()
    token = csrf_token(client.get(PAGES).get_data(as_text=True))
    client.post(PAGES + "rotate-key", data={"csrf_token": token})
    assert_untouched(seen, 200)  # the new key is shown in this response
    with host.app.app_context():
        row = workspaces.stored(host.app.extensions["refiner_segment"], "ws-b")
    assert row is not None and row.inbound_key_hash is not None


def test_segments_pages_create_and_delete(host: Host) -> None:
    seen = watch_requests(host)
    client = host.app.test_client()
    html = client.get(PAGES + "segments/new").get_data(as_text=True)
    client.post(
        PAGES + "segments/new",
        data={
            "csrf_token": csrf_token(html),
            "name": "From The Page",
            "rules": '{"match": "all", "conditions": []}',
        },
    )
    assert_untouched(seen)
    with host.app.app_context():
        made = host.ext.get_segment_by_name("From The Page")
    assert made is not None
    seen.clear()
    html = client.get(PAGES + "segments/").get_data(as_text=True)
    client.post(
        PAGES + f"segments/{made.id}/delete", data={"csrf_token": csrf_token(html)}
    )
    assert_untouched(seen)
    with host.app.app_context():
        assert host.ext.get_segment(made.id) is None


def test_inbound_route(host: Host) -> None:
    seen = watch_requests(host)
    response = post(host.app, identify("ajs-identify-3", "u-3"))
    assert response.status_code == 200 and response.json["stored"] == 1
    assert_untouched(seen, 200)
    with host.app.app_context():
        assert host.ext.get_profile("u-3") is not None
