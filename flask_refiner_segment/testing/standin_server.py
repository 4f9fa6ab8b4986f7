"""The stand-in's HTTP server: HTTP/1.1 with keep-alive, a thread per
connection, for any WSGI app whose responses fit in memory.

Werkzeug's development server closes every connection after one request, so a
client's keep-alive session never shows against it. This one keeps a
connection open for the next request (until the client closes it, sends
``Connection: close``, or leaves it idle for :attr:`Handler.timeout` seconds),
and :meth:`Server.close_connections` drops the open ones, so that a stopped
stand-in is really gone for its clients.
"""

from __future__ import annotations

import http.server
import io
import socket
import socketserver
import sys
import threading
import typing as t
import urllib.parse

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


class Handler(http.server.BaseHTTPRequestHandler):
    """One connection: its requests, one after the other, each answered with
    a ``Content-Length`` (or ``Connection: close``)."""

    protocol_version = "HTTP/1.1"
    #: Headers and body are two writes: without TCP_NODELAY the body waits for
    #: the client's delayed ACK of the headers (tens of ms per keep-alive request).
    disable_nagle_algorithm = True
    #: An idle keep-alive connection is closed after this long (s).
    timeout = 60
    server: Server

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError, OSError):
            pass  # the client went away (or stayed idle too long)

    def log_message(self, format: str, *args: t.Any) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)

    def _body(self) -> bytes | None:
        """The request body; ``None`` when it cannot be read (the connection
        is closed after the answer)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if not size:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit():
            return None
        return self.rfile.read(int(length))

    def _wsgi(self) -> None:
        try:
            body = self._body()
        except ValueError:
            body = None
        if body is None:
            self.close_connection = True
            self.send_error(400, "Bad Content-Length or chunked body")
            return
        path, _, query = self.path.partition("?")
        host, port = self.server.server_address[:2]
        environ: dict[str, t.Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": urllib.parse.unquote(path, "latin-1"),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name in self.headers:
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[key] = ",".join(self.headers.get_all(name) or [])
        answer: list[t.Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: t.Any = None
        ) -> t.Callable[[bytes], object]:
            answer[:] = [status, headers]
            return lambda data: None

        chunks = self.server.app(environ, start_response)
        try:
            data = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        status, headers = answer
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_HEAD = do_PUT = do_PATCH = do_DELETE = _wsgi


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Serves ``app`` on ``host``:``port`` (``0``: any free port)."""

    daemon_threads = True

    def __init__(
        self, host: str, port: int, app: WSGIApplication, *, quiet: bool = True
    ) -> None:
        self.app = app
        self.quiet = quiet
        #: Connections accepted so far.
        self.accepted = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__((host, port), Handler)

    def process_request(self, request: t.Any, client_address: t.Any) -> None:
        with self._lock:
            self.accepted += 1
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: t.Any) -> None:
        with self._lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Drop every open connection (their clients see it closed)."""
        with self._lock:
            found = list(self._open)
        for sock in found:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
