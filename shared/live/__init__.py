"""The live history: one ordered log of the messages `/ws/live` streams (tickets, KPIs, alerts).

Producers (the metrics service) append `LiveItem`s; the log gives each a `seq` (an integer that
increases strictly along the hub's one history, the same on every gateway replica) and renders
its JSON text frame once, so the gateways forward it to every subscriber as it is.
"""

from shared.live.base import LiveHead, LiveItem, LiveLog, LiveRecord, LiveStream, render_body

__all__ = ["LiveHead", "LiveItem", "LiveLog", "LiveRecord", "LiveStream", "render_body"]
