"""``autoplay_sdk.core.metrics``: 0.13.0's pluggable metrics hook protocol.

Pass an object with any of these methods as ``metrics=`` to a client; methods it
lacks are not called, and an exception raised by one is logged at DEBUG and
ignored, so a broken metrics backend never stops the stream. Every method takes
keyword arguments only.

What calls them here:

- ``record_event_dropped(reason="queue_full", event_type, session_id, product_id)``:
  ``ConnectorClient`` and ``AsyncConnectorClient``, for each event a full queue drops;
- ``record_queue_depth(depth)``: ``ConnectorClient``, as each payload is handed to a
  callback (the events then still queued);
- ``record_summarizer_latency``, ``record_redis_operation``,
  ``record_semaphore_timeout``: kept for 0.13.0 implementations; nothing in this
  package calls them (it has no Redis buffer).
"""

from __future__ import annotations

from typing import Optional, Protocol, runtime_checkable


@runtime_checkable
class SdkMetricsHook(Protocol):
    """0.13.0's metrics hook: implement the methods you need."""

    def record_event_dropped(
        self,
        *,
        reason: str,
        event_type: str,
        session_id: Optional[str],
        product_id: Optional[str],
    ) -> None:
        """An event was dropped (``reason`` is ``"queue_full"`` here)."""

    def record_summarizer_latency(self, *, session_id: str, elapsed_ms: float, action_count: int) -> None:
        """An LLM summary took ``elapsed_ms``."""

    def record_redis_operation(self, *, operation: str, elapsed_ms: float, success: bool) -> None:
        """A Redis pipeline ran (0.13.0's Redis buffer)."""

    def record_queue_depth(self, *, depth: int) -> None:
        """How many events are queued."""

    def record_semaphore_timeout(self, *, session_id: Optional[str], product_id: Optional[str]) -> None:
        """A Redis buffer semaphore timed out (0.13.0's Redis buffer)."""


__all__ = ["SdkMetricsHook"]
