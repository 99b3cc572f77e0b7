"""``ContextStore`` and ``AsyncContextStore`` (0.13.0's
``autoplay_sdk.context.context_store``): a session's recent actions and its latest
summary as prompt context, ``enrich(session_id, query)`` being the main entry point::

    store = ContextStore(summarizer=summarizer, lookback_seconds=300, max_actions=20)
    client.on_actions(store.add)
    enriched = store.enrich(session_id, user_message)

The storage, the bounds and the text are the Rust core's (``autoplay_sdk::context_store``);
these classes keep 0.13.0's signatures. Memory is bounded: ``lookback_seconds`` evicts
old payloads on each ``add``, ``max_sessions`` forgets the least recently used
session, and at most ``max_stored_actions`` actions (default 1000) are kept per
session.
"""

from __future__ import annotations

import logging
from typing import Any, List, Optional, Tuple

from .._native import _ContextStore

logger = logging.getLogger("autoplay_sdk")

_SENTINEL: Any = object()  # "not given": the store's default applies


def actions_bucket_id(product_id: Optional[str], session_id: Optional[str]) -> str:
    """The key a product's session is stored under: ``"{product_id}\\x1f{session_id}"``,
    or the session id alone without a product (0.13.0's)."""
    sid = (session_id or "unknown").strip()
    pid = (product_id or "").strip()
    return f"{pid}\x1f{sid}" if pid else sid


def _override(value: Any) -> Optional[Tuple[Any]]:
    return None if value is _SENTINEL else (value,)


def _flag(value: Any) -> Optional[bool]:
    return None if value is _SENTINEL else bool(value)


class _ContextStoreBase:
    def __init__(
        self,
        summarizer: Any,
        *,
        include_summary: bool,
        include_actions: bool,
        lookback_seconds: Optional[float],
        max_actions: Optional[int],
        max_sessions: Optional[int],
        max_stored_actions: int,
    ) -> None:
        self._store = _ContextStore(
            include_summary=include_summary,
            include_actions=include_actions,
            lookback_seconds=lookback_seconds,
            max_actions=max_actions,
            max_sessions=max_sessions,
            max_stored_actions=max_stored_actions,
        )
        if summarizer is not None:
            if getattr(summarizer, "on_summary", None) is not None:
                logger.warning(
                    "%s: replacing the summarizer's on_summary; the previous callback is no longer called",
                    type(self).__name__,
                )
            summarizer.on_summary = self.on_summary

    def on_summary(self, session_id: str, summary_text: str) -> Any:  # overridden
        self._store.set_summary(session_id, summary_text)

    def get(
        self,
        session_id: str,
        *,
        product_id: Optional[str] = None,
        include_summary: Any = _SENTINEL,
        include_actions: Any = _SENTINEL,
        lookback_seconds: Any = _SENTINEL,
        max_actions: Any = _SENTINEL,
    ) -> str:
        """The session's context (``Summary: ...`` and ``Recent activity:`` with the
        numbered actions), or ``""``. Keywords override the store's defaults."""
        return self._store.get(
            session_id,
            product_id,
            _flag(include_summary),
            _flag(include_actions),
            _override(lookback_seconds),
            _override(max_actions),
        )

    def enrich(
        self,
        session_id: str,
        query: str,
        *,
        product_id: Optional[str] = None,
        include_summary: Any = _SENTINEL,
        include_actions: Any = _SENTINEL,
        lookback_seconds: Any = _SENTINEL,
        max_actions: Any = _SENTINEL,
    ) -> str:
        """``[Session context]\\n<context>\\n\\n[Query]\\n<query>``, or the query unchanged
        when the session has no context. Synchronous in both classes (memory only)."""
        return self._store.enrich(
            session_id,
            query,
            product_id,
            _flag(include_summary),
            _flag(include_actions),
            _override(lookback_seconds),
            _override(max_actions),
        )

    def reset(self, session_id: str, *, product_id: Optional[str] = None) -> None:
        """Forgets the session's summary and actions."""
        self._store.reset(session_id, product_id)

    @property
    def active_sessions(self) -> List[str]:
        """Sessions with stored actions or a summary, sorted."""
        return self._store.active_sessions

    @property
    def lookback_seconds(self) -> Optional[float]:
        return self._store.lookback_seconds

    @property
    def max_actions(self) -> Optional[int]:
        return self._store.max_actions

    @property
    def max_sessions(self) -> Optional[int]:
        return self._store.max_sessions


class ContextStore(_ContextStoreBase):
    """Thread-safe per-session context for query-time RAG enrichment; wire ``add`` as
    ``on_actions``. Given a ``summarizer``, the store becomes its ``on_summary``."""

    def __init__(
        self,
        summarizer: Any = None,
        *,
        include_summary: bool = True,
        include_actions: bool = True,
        lookback_seconds: Optional[float] = None,
        max_actions: Optional[int] = None,
        max_sessions: Optional[int] = None,
        max_stored_actions: int = 1000,
    ) -> None:
        super().__init__(
            summarizer,
            include_summary=include_summary,
            include_actions=include_actions,
            lookback_seconds=lookback_seconds,
            max_actions=max_actions,
            max_sessions=max_sessions,
            max_stored_actions=max_stored_actions,
        )

    def add(self, payload: Any) -> None:
        """Stores an actions payload for its session (wire it as ``on_actions``)."""
        self._store.add(payload)

    def on_summary(self, session_id: str, summary_text: str) -> None:
        """Stores the latest summary of a session (the summarizer's ``on_summary``)."""
        self._store.set_summary(session_id, summary_text)


class AsyncContextStore(_ContextStoreBase):
    """:class:`ContextStore` for ``AsyncConnectorClient``: ``add`` and ``on_summary``
    are coroutines; ``get`` and ``enrich`` stay synchronous (memory only, a lock held
    for microseconds)."""

    def __init__(
        self,
        summarizer: Any = None,
        *,
        include_summary: bool = True,
        include_actions: bool = True,
        lookback_seconds: Optional[float] = None,
        max_actions: Optional[int] = None,
        max_sessions: Optional[int] = None,
        max_stored_actions: int = 1000,
    ) -> None:
        super().__init__(
            summarizer,
            include_summary=include_summary,
            include_actions=include_actions,
            lookback_seconds=lookback_seconds,
            max_actions=max_actions,
            max_sessions=max_sessions,
            max_stored_actions=max_stored_actions,
        )

    async def add(self, payload: Any) -> None:
        """Stores an actions payload for its session (wire it as ``on_actions``)."""
        self._store.add(payload)

    async def on_summary(self, session_id: str, summary_text: str) -> None:
        """Stores the latest summary of a session (the summarizer's ``on_summary``)."""
        self._store.set_summary(session_id, summary_text)


__all__ = ["AsyncContextStore", "ContextStore", "actions_bucket_id"]
