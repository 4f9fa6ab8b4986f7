"""The request body: read with a size cap, and decompressed when it is gzip.

The cap (``REFINER_SEGMENT_INBOUND_MAX_BYTES``) applies to the body as read and,
for a gzip body, to the decompressed bytes too, which are produced in bounded
steps: a zip bomb costs at most the cap in memory before its 413.
"""

from __future__ import annotations

import zlib

from flask import request
from werkzeug.exceptions import HTTPException

from .parse import InboundError

#: ``Content-Encoding`` values accepted (lower case); none means identity.
GZIP = frozenset({"gzip", "x-gzip"})
IDENTITY = frozenset({"", "identity"})
_CHUNK = 65536


def read_body(limit: int) -> bytes:
    """The body, decompressed, at most ``limit`` bytes.

    :raises InboundError: 413 beyond the cap, 415 for an unknown encoding, 400
        for a body that cannot be read or decompressed.
    """
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in IDENTITY and encoding not in GZIP:
        raise InboundError(
            415,
            "unsupported_encoding",
            f"Content-Encoding {encoding[:40]!r} is not supported: send gzip or none.",
        )
    raw = _read(limit)
    return gunzip(raw, limit) if encoding in GZIP else raw


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress gzip ``data`` (one or more members) to at most ``limit`` bytes."""
    out: list[bytes] = []
    size = 0
    try:
        while True:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            pending = data
            while pending:
                chunk = inflater.decompress(pending, _CHUNK)
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                out.append(chunk)
                pending = inflater.unconsumed_tail
                if inflater.eof:
                    break
            if not inflater.eof:
                chunk = inflater.flush()
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                out.append(chunk)
                if not inflater.eof:
                    raise zlib.error("truncated")
            data = inflater.unused_data
            if not data:
                return b"".join(out)
    except zlib.error:
        raise InboundError(
            400, "bad_request", "The gzip body could not be decompressed."
        ) from None


def _read(limit: int) -> bytes:
    """At most ``limit`` bytes of the body as sent; 413 beyond."""
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= limit:
            chunk = request.stream.read(min(_CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except HTTPException as exc:
        if exc.code == 413:
            raise too_large(limit) from None
        raise InboundError(
            400, "bad_request", "The request body could not be read."
        ) from None
    if size > limit:
        raise too_large(limit)
    return b"".join(chunks)


def too_large(limit: int) -> InboundError:
    return InboundError(
        413, "too_large", f"The request body is larger than {limit} bytes."
    )
