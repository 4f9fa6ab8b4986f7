"""Signals this extension sends, in a private namespace.

Every signal is sent with the app (``current_app._get_current_object()``) as sender.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: Segment answered 2xx for a batch. Keyword arguments: ``workspace_id``,
#: ``delivery_ids`` (list of int), ``response_ids`` (list of str).
delivery_succeeded = _signals.signal("delivery-succeeded")

#: A delivery failed for good. Keyword arguments: ``workspace_id``,
#: ``delivery_id``, ``response_id``, ``reason``, ``status_code`` (int or None).
delivery_failed = _signals.signal("delivery-failed")

#: Inbound data from Segment was committed. Keyword arguments:
#: ``workspace_id``, ``stored``, ``duplicates``, ``ignored`` (counts).
inbound_received = _signals.signal("inbound-received")
