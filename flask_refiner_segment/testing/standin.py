"""A local stand-in of Segment's Tracking API, for tests, benchmarks and demos.

It validates like Segment documents (Basic auth or body ``writeKey``; JSON; 32 KB
per message, 500 KB per request, 2,500 messages per batch; required fields per
call type), records what it accepted, counts duplicate ``messageId``\\s and can
be told to fail. Use :func:`serve` for a thread (HTTP/1.1 with keep-alive:
:mod:`.standin_server`), mount it as a WSGI app, or run
``python -m flask_refiner_segment.testing.standin --port 8765 [--write-key KEY]``
(``--write-key`` repeatable). What a request must be is in
:mod:`.standin_requests`, the HTML page in :mod:`.standin_page`.

``GET /`` shows the calls received, ``GET /messages`` returns them as JSON
(``GET /stats`` only the counts), ``POST /reset`` forgets them, ``POST /faults``
with a JSON object of :class:`Fault` fields programs a fault (``{}`` clears),
with ``"write_key"`` that write key's own (one tenant's source failing).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import datetime as dt
import gc
import json
import signal
import sys
import threading
import time
import typing as t
import uuid

from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from .standin_faults import Fault
from .standin_page import render_page
from .standin_requests import MAX_BATCH_MESSAGES
from .standin_requests import MAX_MESSAGE_BYTES
from .standin_requests import MAX_REQUEST_BYTES
from .standin_requests import TYPES
from .standin_requests import error_response
from .standin_requests import invalid_reason
from .standin_requests import json_response
from .standin_requests import load_body
from .standin_server import Server

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIEnvironment

BATCH_PATHS = ("/v1/batch", "/v1/import", "/v1/b")


class SegmentStandIn:
    """A WSGI app that answers like Segment's Tracking API and records calls.

    :param write_keys: the keys accepted; ``None`` accepts any non-empty key.
    :param freeze_gc: for a process of its own: keep recorded messages out of the
        cyclic garbage collector, which otherwise rescans them all, again and again.

    Thread-safe. Records: ``messages`` (accepted, with ``receivedAt``),
    ``rejected`` (``{"reason", "message"}``), ``duplicates`` (a count) and
    ``duplicate_ids``, ``requests`` (calls to ``/v1/*``). :func:`serve` sets ``url``.
    With ``keep_bodies`` set it also keeps ``bodies``: the raw body of every call
    to ``/v1/*``, answered or failed by a fault, in arrival order.
    ``on_request``, when set, is called (with no arguments) as a call arrives.
    """

    def __init__(
        self, write_keys: t.Iterable[str] | None = None, *, freeze_gc: bool = False
    ) -> None:
        self.write_keys = None if write_keys is None else frozenset(write_keys)
        self.links: dict[str, str] = {}  # label: URL, on top of the page
        self.freeze_gc = freeze_gc
        self.url: str | None = None
        self.fault = Fault()
        #: Faults of one write key (as sent in Basic auth), instead of ``fault``.
        self.key_faults: dict[str, Fault] = {}
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._generation = 0
        self.keep_bodies = False
        self.on_request: t.Callable[[], None] | None = None
        self.reset()

    def reset(self) -> None:
        """Forget everything received (faults stay)."""
        with self._lock:
            self.messages: list[dict[str, t.Any]] = []
            self.rejected: list[dict[str, t.Any]] = []
            self.duplicates = 0
            self.duplicate_ids: list[str] = []
            self.requests = 0
            self.bodies: list[bytes] = []
            self._seen: set[str] = set()
            self._generation += 1  # requests in flight now are not recorded

    def message_ids(self) -> list[str]:
        """The ``messageId`` of each accepted message, in arrival order."""
        with self._lock:
            return [m["messageId"] for m in self.messages]

    def set_fault(
        self,
        *,
        status: int | None = None,
        times: int | None = None,
        retry_after: str | float | None = None,
        delay: float = 0.0,
        fail_message_ids: t.Iterable[str] = (),
        write_key: str | None = None,
    ) -> None:
        """Replace the current fault with this :class:`Fault`; with
        ``write_key``, only that write key's (the others answer as before)."""
        checks = {
            "status": status is None or type(status) is int and 100 <= status <= 599,
            "times": times is None or type(times) is int and times >= 0,
            "delay": isinstance(delay, (int, float)) and 0 <= delay <= 600,
            "fail_message_ids": not isinstance(fail_message_ids, (str, bytes)),
            "write_key": write_key is None or isinstance(write_key, str) and write_key,
        }
        if not all(checks.values()):
            bad = ", ".join(name for name, ok in checks.items() if not ok)
            raise ValueError(f"invalid fault: {bad}")
        after = None if retry_after is None else str(retry_after)
        ids = frozenset(str(i) for i in fail_message_ids)
        fault = Fault(status, times, after, float(delay), ids)
        with self._lock:
            if write_key is None:
                self.fault = fault
            else:
                self.key_faults[write_key] = fault

    def clear_faults(self, write_key: str | None = None) -> None:
        """Answer normally again (with ``write_key``: to that key)."""
        with self._lock:
            if write_key is None:
                self.fault = Fault()
                self.key_faults.clear()
            else:
                self.key_faults.pop(write_key, None)

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

    def snapshot(self) -> dict[str, t.Any]:
        """What ``GET /messages`` answers."""
        with self._lock:
            return {
                "messages": list(self.messages),
                "rejected": list(self.rejected),
                "duplicates": self.duplicates,
                "duplicate_ids": list(self.duplicate_ids),
                "requests": self.requests,
            }

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> t.Iterable[bytes]:
        return self.dispatch(Request(environ))(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        """Answer one request."""
        method, path = request.method, request.path.rstrip("/") or "/"
        if method == "POST" and path in BATCH_PATHS:
            return self._receive(request, None)
        if method == "POST" and path[:4] == "/v1/" and path[4:] in TYPES:
            return self._receive(request, path[4:])
        if method == "GET" and path == "/":
            if not request.environ.get("PATH_INFO"):  # mounted, no trailing slash
                return Response(status=308, headers={"Location": request.root_url})
            return self._page()
        if method == "GET" and path == "/messages":
            return json_response(self.snapshot())
        if method == "GET" and path == "/stats":
            with self._lock:
                n = len(self.messages), len(self.rejected), self.duplicates
                n_requests = self.requests
            stats = {"accepted": n[0], "rejected": n[1], "duplicates": n[2]}
            return json_response({**stats, "requests": n_requests})
        if method == "POST" and path == "/reset":
            self.reset()
            return json_response({"success": True})
        if method == "POST" and path == "/faults":
            spec = request.get_json(silent=True)
            if not isinstance(spec, dict):
                return error_response(400, "invalid_request", "send a JSON object")
            try:
                self.set_fault(**spec) if spec else self.clear_faults()
            except (TypeError, ValueError) as exc:
                return error_response(400, "invalid_fault", str(exc))
            return json_response({"success": True})
        return error_response(404, "not_found", f"no endpoint {method} {path}")

    def _take_fault(self, key: str | None) -> Fault:
        with self._lock:
            own = key is not None and key in self.key_faults
            fault = self.key_faults[t.cast(str, key)] if own else self.fault
            fault, after = fault.take()
            if own:
                self.key_faults[t.cast(str, key)] = after
            else:
                self.fault = after
            return fault

    def _authorized(self, key: t.Any) -> bool:
        if not isinstance(key, str) or not key:
            return False
        return self.write_keys is None or key in self.write_keys

    def _receive(self, request: Request, single: str | None) -> Response:
        hook = self.on_request
        if hook is not None:
            hook()
        raw = request.get_data(cache=False)
        with self._lock:
            self.requests += 1
            generation = self._generation
            if self.keep_bodies:
                self.bodies.append(raw)
        header = request.headers.get("Authorization", "")
        basic = header[:6].lower() == "basic "
        key = ""
        if basic:
            try:
                key = base64.b64decode(header[6:], validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                key = ""
            key = key.partition(":")[0]
        fault = self._take_fault(key or None)
        if fault.delay:
            time.sleep(fault.delay)
        if fault.status is not None:
            after = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return error_response(fault.status, "fault", "injected fault", **after)
        if basic:
            if not self._authorized(key):
                return error_response(401, "unauthorized", "invalid write key")
        if len(raw) > MAX_REQUEST_BYTES:
            return error_response(400, "request_too_large", "request body over 500 KB")
        if request.mimetype != "application/json":
            return error_response(400, "invalid_request", "Content-Type must be JSON")
        try:
            text = raw.decode()
            body, spans = load_body(text)
        except ValueError as exc:  # UnicodeDecodeError is one too
            return error_response(400, "invalid_json", f"invalid JSON: {exc}")
        if not isinstance(body, dict):
            return error_response(400, "invalid_json", "the body must be a JSON object")
        if not basic and not self._authorized(body.get("writeKey")):
            return error_response(401, "unauthorized", "missing or invalid write key")
        if single is not None:
            body.pop("writeKey", None)
            batch, spans = [{**body, "type": single}], None
        elif not isinstance(body.get("batch"), list):
            return error_response(400, "invalid_request", "batch must be a list")
        else:
            batch = body["batch"]
        # json.dumps (Segment's measure here) writes a character as up to 12.
        longest = MAX_MESSAGE_BYTES // (6 if text.isascii() else 12)
        for n, item in enumerate(batch):
            too_long = spans is None or spans[n] > longest
            if too_long and len(json.dumps(item)) > MAX_MESSAGE_BYTES:
                return error_response(
                    400, "message_too_large", f"message {n} over 32 KB"
                )
            message_id = item.get("messageId") if isinstance(item, dict) else None
            if isinstance(message_id, str) and message_id in fault.fail_message_ids:
                return error_response(
                    400, "invalid_request", f"message {n} refused (fault)"
                )
        self._record(body if single is None else {}, batch, generation)
        return json_response({"success": True})

    def _record(
        self, body: dict[str, t.Any], batch: list[t.Any], generation: int
    ) -> None:
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        received_at = now.isoformat(timespec="milliseconds") + "Z"
        sent_at = body.get("sentAt") if isinstance(body.get("sentAt"), str) else None
        shared = {k: body[k] for k in ("context", "integrations") if k in body}
        shared = {k: v for k, v in shared.items() if isinstance(v, dict)}
        if len(batch) > MAX_BATCH_MESSAGES:
            verdicts: list[str | None] = ["batch over 2500 messages"] * len(batch)
        else:
            verdicts = [invalid_reason(m) for m in batch]
        with self._arrived:
            if generation != self._generation:
                return
            for message, reason in zip(batch, verdicts, strict=True):
                if reason:
                    self.rejected.append({"reason": reason, "message": message})
                    continue
                message_id = message.get("messageId")
                if message_id is None:  # Segment sets one
                    message_id = message["messageId"] = f"standin-{uuid.uuid4()}"
                if message_id in self._seen:
                    self.duplicates += 1
                    self.duplicate_ids.append(message_id)
                    continue
                self._seen.add(message_id)
                for key, value in shared.items():  # a batch's context is merged
                    own = message.get(key)
                    message[key] = {**value, **own} if isinstance(own, dict) else value
                if sent_at and "sentAt" not in message:
                    message["sentAt"] = sent_at
                message["receivedAt"] = received_at
                self.messages.append(message)
            self._arrived.notify_all()
        if self.freeze_gc:
            gc.freeze()

    def _page(self) -> Response:
        with self._lock:
            recent = self.messages[-200:][::-1]
            total, dups, rejected = len(self.messages), self.duplicates, self.rejected
        page = render_page(recent, total, dups, rejected, self.links)
        return Response(page, mimetype="text/html")


class RunningServer:
    """A stand-in served on a daemon thread; also a context manager."""

    def __init__(self, standin: SegmentStandIn, host: str, port: int) -> None:
        self.server = Server(host, port, standin)
        self.port = int(self.server.server_port)
        self.url = f"http://{host}:{self.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.1,), daemon=True
        )
        self.thread.start()

    def shutdown(self) -> None:
        """Stop serving, close the socket and the open connections."""
        self.server.shutdown()
        self.server.server_close()
        self.server.close_connections()
        self.thread.join(5)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def serve(
    standin: SegmentStandIn, host: str = "127.0.0.1", port: int = 0
) -> RunningServer:
    """Serve ``standin`` on a daemon thread; ``port=0`` picks a free port."""
    running = RunningServer(standin, host, port)
    standin.url = running.url
    return running


def main(argv: t.Sequence[str] | None = None) -> None:
    """Serve a stand-in in the foreground until interrupted or terminated."""
    parser = argparse.ArgumentParser(
        "python -m flask_refiner_segment.testing.standin",
        description="A local stand-in of Segment's Tracking API.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0: any free port")
    parser.add_argument(
        "--write-key", action="append", help="accept only these (repeatable)"
    )
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    standin = SegmentStandIn(args.write_key, freeze_gc=True)
    server = Server(args.host, args.port, standin, quiet=args.quiet)
    standin.url = f"http://{args.host}:{server.server_port}"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"Segment stand-in on {standin.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
