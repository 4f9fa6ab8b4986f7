"""A local stand-in of Segment's Tracking API, for tests, benchmarks and demos.

It validates requests the way Segment documents (Basic auth or body ``writeKey``,
32 KB per message, 500 KB per request, 2,500 messages per batch), records what
it accepted, counts duplicate ``messageId``s, and can be told to fail.

Run it alone with ``python -m flask_refiner_segment.standin --port 8765``.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import html
import json
import threading
import time
import typing as t

from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

MAX_MESSAGE = 32 * 1024
MAX_REQUEST = 500 * 1024
MAX_MESSAGES = 2500
SINGLE = ("identify", "track", "group", "page", "screen", "alias")


@dataclasses.dataclass
class Fault:
    """What the stand-in does instead of answering 200."""

    status: int | None = None
    times: int | None = None  # None: until cleared
    retry_after: str | None = None
    delay: float = 0.0
    fail_message_ids: frozenset[str] = frozenset()


def _json(
    data: t.Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(data), status=status, headers=headers, mimetype="application/json"
    )


class SegmentStandIn:
    """A WSGI app that behaves like Segment's ``/v1/batch`` and records calls."""

    def __init__(self, write_keys: t.Iterable[str] | None = None) -> None:
        self.write_keys = None if write_keys is None else set(write_keys)
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self.reset()
        self.clear_faults()

    # -- Python helpers -----------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.messages: list[dict[str, t.Any]] = []
            self.rejected: list[dict[str, t.Any]] = []
            self.duplicates = 0
            self.requests = 0
            self._seen: set[str] = set()
            # Requests still in flight from before a reset are not recorded.
            self._generation = getattr(self, "_generation", 0) + 1

    def message_ids(self) -> list[str]:
        with self._lock:
            return [m.get("messageId", "") for m in self.messages]

    def set_fault(
        self,
        *,
        status: int | None = None,
        times: int | None = None,
        retry_after: str | float | None = None,
        delay: float = 0.0,
        fail_message_ids: t.Iterable[str] = (),
    ) -> None:
        with self._lock:
            self.fault = Fault(
                status,
                times,
                None if retry_after is None else str(retry_after),
                delay,
                frozenset(fail_message_ids),
            )

    def clear_faults(self) -> None:
        with self._lock:
            self.fault = Fault()

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``count`` messages were accepted."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._arrived.wait(left)
            return True

    # -- HTTP ---------------------------------------------------------------

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> t.Iterable[bytes]:
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if request.method == "GET" and path == "/":
            return self._page()
        if request.method == "GET" and path == "/messages":
            with self._lock:
                return _json(
                    {
                        "messages": self.messages,
                        "rejected": self.rejected,
                        "duplicates": self.duplicates,
                        "requests": self.requests,
                    }
                )
        if request.method == "POST" and path == "/reset":
            self.reset()
            return _json({"ok": True})
        if request.method == "POST" and path == "/faults":
            spec = request.get_json(silent=True) or {}
            self.set_fault(
                **{k: v for k, v in spec.items() if k in Fault.__annotations__}
            )
            return _json({"ok": True})
        if request.method == "POST" and path in ("/v1/batch", "/v1/import", "/v1/b"):
            return self._receive(request, None)
        if request.method == "POST" and path.startswith("/v1/") and path[4:] in SINGLE:
            return self._receive(request, path[4:])
        return _json({"code": "not_found"}, 404)

    def _take_fault(self) -> Fault:
        with self._lock:
            fault = self.fault
            if fault.status is not None and fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.fault = Fault(fail_message_ids=fault.fail_message_ids)
            elif fault.delay and fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.fault = Fault()
            return fault

    def _receive(self, request: Request, single_type: str | None) -> Response:
        with self._lock:
            self.requests += 1
            generation = self._generation
        fault = self._take_fault()
        if fault.delay:
            time.sleep(fault.delay)
        if fault.status is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            return _json(
                {"code": "fault", "message": "injected"}, fault.status, headers
            )
        raw = request.get_data(cache=False)
        if len(raw) > MAX_REQUEST:
            return _json({"code": "too_large", "message": "request over 500 KB"}, 400)
        if not (request.mimetype or "").endswith("json"):
            return _json({"code": "invalid_content_type"}, 400)
        try:
            body = json.loads(raw)
        except ValueError:
            return _json({"code": "invalid_json", "message": "invalid JSON"}, 400)
        if not isinstance(body, dict):
            return _json(
                {"code": "invalid_json", "message": "body must be an object"}, 400
            )
        if not self._authorized(request, body):
            return _json({"code": "unauthorized", "message": "invalid write key"}, 401)
        if single_type is None:
            batch = body.get("batch")
            if not isinstance(batch, list):
                return _json(
                    {"code": "invalid_json", "message": "batch must be a list"}, 400
                )
        else:
            batch = [{**body, "type": single_type}]
        for message in batch:
            if isinstance(message, dict) and len(json.dumps(message)) > MAX_MESSAGE:
                return _json(
                    {"code": "too_large", "message": "message over 32 KB"}, 400
                )
            if (
                isinstance(message, dict)
                and message.get("messageId") in fault.fail_message_ids
            ):
                return _json(
                    {"code": "invalid", "message": "injected bad message"}, 400
                )
        self._record(batch, generation)
        return _json({"success": True})

    def _authorized(self, request: Request, body: dict[str, t.Any]) -> bool:
        key = body.get("writeKey") if isinstance(body.get("writeKey"), str) else None
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                key = base64.b64decode(header[6:]).decode().split(":", 1)[0]
            except ValueError:
                return False
        if not key:
            return False
        return self.write_keys is None or key in self.write_keys

    def _record(self, batch: list[t.Any], generation: int) -> None:
        now = time.time()
        too_many = len(batch) > MAX_MESSAGES
        with self._arrived:
            if generation != self._generation:
                return
            for message in batch:
                reason = "batch over 2500 messages" if too_many else _invalid(message)
                if reason:
                    self.rejected.append({"reason": reason, "message": message})
                    continue
                message_id = message.get("messageId")
                if message_id in self._seen:
                    self.duplicates += 1
                    continue
                if message_id:
                    self._seen.add(message_id)
                self.messages.append({**message, "receivedAt": now})
            self._arrived.notify_all()

    def _page(self) -> Response:
        with self._lock:
            recent = list(reversed(self.messages[-200:]))
            total, dups = len(self.messages), self.duplicates
        rows = "".join(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>".format(
                html.escape(m.get("type", "")),
                html.escape(str(m.get("userId", ""))),
                html.escape(str(m.get("event") or m.get("groupId") or "")),
                html.escape(
                    json.dumps(m.get("traits") or m.get("properties") or {}, indent=1)
                ),
            )
            for m in recent
        )
        page = (
            '<!doctype html><meta charset="utf-8"><title>Segment stand-in</title>'
            '<meta http-equiv="refresh" content="2"><style>'
            "body{font:14px system-ui,sans-serif;margin:1.5rem}"
            "table{border-collapse:collapse;width:100%}"
            "td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;"
            "vertical-align:top}pre{margin:0;font-size:12px;white-space:pre-wrap}"
            "</style><h1>Segment stand-in</h1>"
            f'<p id="summary">{total} calls received, {dups} duplicates dropped.'
            " Newest first; the page refreshes every 2 s.</p>"
            '<table id="calls"><tr><th>type</th><th>userId</th>'
            f"<th>event / groupId</th><th>traits / properties</th></tr>{rows}</table>"
        )
        return Response(page, mimetype="text/html")


def _invalid(message: t.Any) -> str | None:
    if not isinstance(message, dict):
        return "not an object"
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in SINGLE:
        return "missing or unknown type"
    if len(str(message.get("messageId", ""))) > 100:
        return "messageId over 100 characters"
    if kind in ("identify", "track", "group", "page", "screen") and not (
        message.get("userId") or message.get("anonymousId")
    ):
        return "no_user_anon_id"
    if kind == "track" and not isinstance(message.get("event"), str):
        return "track without event"
    if kind == "group" and not message.get("groupId"):
        return "group without groupId"
    return None


class RunningServer:
    """A stand-in served on a background thread."""

    def __init__(self, standin: SegmentStandIn, host: str, port: int) -> None:
        self.server = make_server(host, port, standin, threaded=True)
        self.port = int(self.server.server_port)
        self.url = f"http://{host}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(
    standin: SegmentStandIn, host: str = "127.0.0.1", port: int = 0
) -> RunningServer:
    """Serve ``standin`` on a background thread; ``port=0`` picks a free port."""
    return RunningServer(standin, host, port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--write-key", action="append", dest="write_keys")
    args = parser.parse_args()
    server = make_server(
        args.host, args.port, SegmentStandIn(args.write_keys), threaded=True
    )
    print(f"Segment stand-in on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
