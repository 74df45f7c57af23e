"""Streams: the journal (both sides), the per-process pub/sub hub, SSE readers."""

from .journal import (
    CLAIM_REFUSED,
    CLAIMED,
    CLAIMED_CANCELLED,
    REJECTED_CANCELLED,
    REJECTED_ENDED,
    Event,
    Journal,
    error_data,
)
from .runtime import StreamRuntime

__all__ = [
    "CLAIMED",
    "CLAIMED_CANCELLED",
    "CLAIM_REFUSED",
    "REJECTED_CANCELLED",
    "REJECTED_ENDED",
    "Event",
    "Journal",
    "StreamRuntime",
    "error_data",
]
