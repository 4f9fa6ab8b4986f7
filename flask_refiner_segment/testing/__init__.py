"""Parts for demos and tests, never imported by the extension itself:
:mod:`.standin` (a local stand-in of Segment's Tracking API) and
:mod:`.embedded_redis` (a private ``redis-server``)."""
