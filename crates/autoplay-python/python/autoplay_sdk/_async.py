"""The asyncio side: ``AsyncConnectorClient``, ``AsyncSessionSummarizer``,
``AsyncRagPipeline``.

``AsyncConnectorClient`` runs the same Rust engine as ``ConnectorClient`` (reader,
parser and bounded queue outside the GIL, on their own threads); each payload is then
handed to your coroutine on the event loop that called ``run()``, one at a time, in
order. A slow coroutine only lets the queue fill (``max_queue_size``, then drops);
it never stalls the reader.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
from typing import Any, Awaitable, Callable, Optional, TypeVar, Union

from ._native import ActionsPayload, ConnectorClient, SessionSummarizer, SummaryPayload

logger = logging.getLogger("autoplay_sdk")

_P = TypeVar("_P")
_T = TypeVar("_T")
_MaybeAwaitable = Union[_T, Awaitable[_T]]


async def _maybe_await(value: _MaybeAwaitable[_T]) -> _T:
    if inspect.isawaitable(value):
        return await value
    return value


async def _invoke(fn: Callable[[Any], Any], payload: Any) -> None:
    await _maybe_await(fn(payload))


class AsyncConnectorClient:
    """Async-native client; callbacks are ``async def`` coroutines run on the caller's loop.

    Accepts the options of :class:`ConnectorClient` (``max_queue_size``,
    ``connect_timeout``, ``read_timeout_s``, ``initial_backoff_s``, ...).
    """

    def __init__(self, url: str, token: str = "", max_queue_size: int = 500, **options: Any) -> None:
        self._client = ConnectorClient(url, token, max_queue_size, **options)
        self._on_actions: Optional[Callable[[ActionsPayload], Any]] = None
        self._on_summary: Optional[Callable[[SummaryPayload], Any]] = None
        self._task: Optional[asyncio.Task[None]] = None

    @property
    def url(self) -> str:
        return self._client.url

    def on_actions(self, fn: Callable[[ActionsPayload], Any]) -> "AsyncConnectorClient":
        """Registers an async callback receiving :class:`ActionsPayload`."""
        self._on_actions = fn
        return self

    def on_summary(self, fn: Callable[[SummaryPayload], Any]) -> "AsyncConnectorClient":
        """Registers an async callback receiving :class:`SummaryPayload`."""
        self._on_summary = fn
        return self

    def on_drop(self, fn: Callable[[dict, int], Any]) -> "AsyncConnectorClient":
        """Registers a (sync) ``fn(payload_dict, total_dropped)`` for dropped events."""
        self._client.on_drop(fn)
        return self

    @property
    def dropped_count(self) -> int:
        return self._client.dropped_count

    @property
    def queue_size(self) -> int:
        return self._client.queue_size

    def _bridge(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[[Any], Any], what: str
    ) -> Callable[[Any], None]:
        def call(payload: Any) -> None:
            # Runs on the engine's worker thread, which waits (without the GIL) until
            # the coroutine has finished on the loop: one payload at a time, in order.
            if loop.is_closed():
                return
            try:
                future = asyncio.run_coroutine_threadsafe(_invoke(fn, payload), loop)
            except RuntimeError:
                return
            while True:
                try:
                    future.result(timeout=0.25)
                    return
                except concurrent.futures.TimeoutError:
                    if loop.is_closed() or not loop.is_running():
                        future.cancel()
                        return
                except concurrent.futures.CancelledError:
                    return
                except Exception:
                    logger.exception("%s callback raised an exception; the stream goes on", what)
                    return

        return call

    async def run(self) -> None:
        """Connects and awaits callbacks until :meth:`stop`; raises :class:`SdkError`
        subclasses on a fatal status."""
        loop = asyncio.get_running_loop()
        if self._on_actions is not None:
            self._client.on_actions(self._bridge(loop, self._on_actions, "on_actions"))
        if self._on_summary is not None:
            self._client.on_summary(self._bridge(loop, self._on_summary, "on_summary"))
        done: asyncio.Future[None] = loop.create_future()

        def finish(error: Optional[BaseException]) -> None:
            if done.done():
                return
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

        def target() -> None:
            error: Optional[BaseException] = None
            try:
                self._client.run()
            except BaseException as e:  # handed to the awaiting coroutine
                error = e
            try:
                loop.call_soon_threadsafe(finish, error)
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more

        thread = threading.Thread(target=target, name="autoplay-sdk-async", daemon=True)
        thread.start()
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            self._client.stop()
            raise

    def run_in_background(self) -> "asyncio.Task[None]":
        """Schedules :meth:`run` as a task on the running loop and returns it at once."""
        self._task = asyncio.get_running_loop().create_task(self.run(), name="autoplay-sdk-client")
        return self._task

    def stop(self) -> None:
        """Signals the client to stop; ``run()`` returns once queued events are handled."""
        self._client.stop()

    async def __aenter__(self) -> "AsyncConnectorClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"AsyncConnectorClient(url={self.url!r})"


def _capture_prompt(prompt: str) -> str:
    return prompt


class AsyncSessionSummarizer:
    """:class:`SessionSummarizer` with an async ``llm(prompt)`` and an async
    ``on_summary(session_id, summary)``. The per-session accumulation and the prompt
    are the Rust core's."""

    def __init__(
        self,
        llm: Callable[[str], Awaitable[str]],
        threshold: int = 10,
        prompt: Optional[str] = None,
        on_summary: Optional[Callable[[str, str], Awaitable[None]]] = None,
    ) -> None:
        # The core accumulates and renders the prompt; the identity "llm" hands the
        # rendered prompt back so the real (async) call happens here.
        self._acc = SessionSummarizer(_capture_prompt, threshold=threshold, prompt=prompt)
        self._llm = llm
        self._on_summary = on_summary

    @property
    def threshold(self) -> int:
        return self._acc.threshold

    @property
    def prompt(self) -> str:
        return self._acc.prompt

    @property
    def session_count(self) -> int:
        return self._acc.session_count

    def pending(self, session_id: str) -> int:
        return self._acc.pending(session_id)

    async def _summarise(self, batch: Optional[SummaryPayload]) -> Optional[SummaryPayload]:
        if batch is None:
            return None
        try:
            text = await _maybe_await(self._llm(batch.summary))
        except Exception:
            logger.exception("the summarizer's llm raised; session %s skipped", batch.session_id)
            return None
        summary = SummaryPayload(
            session_id=batch.session_id,
            summary=str(text).strip(),
            replaces=batch.replaces,
            product_id=batch.product_id,
            forwarded_at=batch.forwarded_at,
        )
        if self._on_summary is not None:
            try:
                await _maybe_await(self._on_summary(summary.session_id or "unknown", summary.summary))
            except Exception:
                logger.exception("the summarizer's on_summary raised")
        return summary

    async def add(self, payload: Any) -> Optional[SummaryPayload]:
        """Adds an actions payload; returns the summary when its session reached the threshold."""
        return await self._summarise(self._acc.add(payload))

    async def flush(self, session_id: str) -> Optional[SummaryPayload]:
        """Summarises a session's pending actions now."""
        return await self._summarise(self._acc.flush(session_id))


class AsyncRagPipeline:
    """:class:`RagPipeline` with async ``embed(text)`` and ``upsert(id, vector, metadata)``."""

    def __init__(
        self,
        embed: Callable[[str], Awaitable[Any]],
        upsert: Callable[[str, Any, dict], Awaitable[Any]],
        summarizer: Optional[AsyncSessionSummarizer] = None,
    ) -> None:
        self._embed = embed
        self._upsert = upsert
        self.summarizer = summarizer
        self.upserted_count = 0
        self.failed_count = 0

    async def _store(self, payload: Union[ActionsPayload, SummaryPayload]) -> None:
        session_id = payload.session_id
        try:
            vector = await _maybe_await(self._embed(payload.to_text()))
            await _maybe_await(
                self._upsert(
                    session_id or "unknown",
                    vector,
                    {"session_id": session_id, "type": type(payload).__name__},
                )
            )
        except Exception:
            self.failed_count += 1
            logger.exception("RAG pipeline step failed for session %s; payload skipped", session_id)
            return
        self.upserted_count += 1

    async def on_actions(self, payload: ActionsPayload) -> None:
        """Handles an actions batch (wire it as ``on_actions``)."""
        if self.summarizer is not None:
            summary = await self.summarizer.add(payload)
            if summary is not None:
                await self._store(summary)
        else:
            await self._store(payload)

    async def on_summary(self, payload: SummaryPayload) -> None:
        """Handles a summary (wire it as ``on_summary``)."""
        await self._store(payload)
