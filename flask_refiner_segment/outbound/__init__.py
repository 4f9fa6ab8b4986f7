"""Outbound: a completed survey to Segment.

The flow: :mod:`.receiver` (the signal) → :mod:`.outbox` (the durable row) →
:mod:`.kick` (a drain job queued) → :mod:`.jobs` (RQ) → :mod:`.sender` (batches)
→ :mod:`.client` (HTTP to Segment). :mod:`.settings` holds each workspace's
Segment source; :mod:`.log` reads the outbox for people.
"""
