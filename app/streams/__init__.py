"""Streams: the journal (both sides), the per-process pub/sub hub, SSE readers."""

from .journal import REJECTED_CANCELLED, REJECTED_ENDED, Event, Journal
from .runtime import StreamRuntime

__all__ = ["REJECTED_CANCELLED", "REJECTED_ENDED", "Event", "Journal", "StreamRuntime"]
