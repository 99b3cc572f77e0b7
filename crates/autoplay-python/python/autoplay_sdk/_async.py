"""The asyncio side: ``AsyncConnectorClient``, ``AsyncSessionSummarizer``,
``AsyncRagPipeline``.

``AsyncConnectorClient`` runs the core's async engine on a tokio runtime of the
extension (reader, SSE parser and decoding outside the GIL). Payloads reach the event
loop in batches: the loop's coroutine takes whatever is ready in one call, and only
when nothing is ready does it wait on an asyncio future that the engine completes
(``loop.call_soon_threadsafe``) when the next batch lands. Nothing polls. A coroutine
slower than the stream lets the queue fill (``max_queue_size`` and
``max_queue_bytes``); then the overflow policy decides: ``"block"``, the default,
makes the reader wait (back-pressure onto the socket, nothing lost, as 0.13.0's
client, which reads only between callbacks); ``"drop_newest"`` and ``"drop_oldest"``
keep reading and drop.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import time
import types
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Deque,
    Dict,
    Generator,
    List,
    Optional,
    Set,
    Union,
)

from ._errors import InvalidConfigError
from ._native import (
    ActionsPayload,
    SummaryPayload,
    _AsyncEngine,
    _AsyncRun,
    _SummaryAccumulator,
)
from ._util import wants_argument

logger = logging.getLogger("autoplay_sdk")

_Payload = Union[ActionsPayload, SummaryPayload]


async def _maybe_await(value: Any) -> Any:
    """``value``, awaited first when it is awaitable (sync and async user callables)."""
    if inspect.isawaitable(value):
        return await value
    return value


def _wake(future: "asyncio.Future[None]") -> None:
    # Called on the loop by the engine (call_soon_threadsafe); the waiting coroutine
    # may have been cancelled meanwhile.
    if not future.done():
        future.set_result(None)


async def _next_batch(run: _AsyncRun, loop: asyncio.AbstractEventLoop) -> Optional[List[Any]]:
    """The next batch of items (never empty), or ``None`` at the end of the stream."""
    while True:
        batch = run.take()
        if batch is None or batch:
            return batch
        future: "asyncio.Future[None]" = loop.create_future()
        if run.park(loop, future):
            await future


# Payloads the session workers may hold before the dispatcher waits for room.
_SESSION_BACKLOG = 256
# Payloads of one session a worker handles before it takes the next session.
_SESSION_TURN = 64


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)
    )


class _Hook:
    """A user hook (``on_connect``, ``on_disconnect``, ...), sync or async."""

    def __init__(self, fn: Callable[..., Any], what: str, with_arg: bool) -> None:
        self.fn = fn
        self.what = what
        self.with_arg = with_arg

    async def __call__(self, *args: Any) -> None:
        try:
            result = self.fn(*args) if self.with_arg else self.fn()
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("%s callback raised an exception; the stream goes on", self.what)


# Marks a callback's result that is awaitable but not a coroutine (a future, say):
# it cannot be run a step ahead, so its session counts as busy and the task that
# called the callback awaits it as it is.
_AWAITABLE = object()


@types.coroutine
def _resume(coro: Any, yielded: Any) -> Generator[Any, Any, None]:
    """Awaits the rest of ``coro``, which already ran (``coro.send(None)``) up to the
    point where it yielded ``yielded``: the task awaiting this sees what awaiting
    ``coro`` itself would have shown it from there (the same futures; cancellation
    thrown in where the coroutine waits)."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration:
                return


def _callback_name(item: Any) -> str:
    return "on_actions" if type(item) is ActionsPayload else "on_summary"


class _BySession:
    """One run's hand-over of payloads to the callbacks with at most ``limit``
    sessions' callbacks in flight at once, each session's one at a time, in order.

    A callback that completes without waiting (a counting ``async def``, say) costs a
    call and nothing else: the dispatching task runs it to its end itself
    (``coro.send(None)``). One that waits keeps its session busy: the task that
    started it stays with it (so ``asyncio.current_task()``, ``asyncio.timeout()``
    and cancellation inside the callback see one task throughout), a new task
    takes over the dispatching, and the session's later payloads queue behind it.
    The task then handles those, at most ``_SESSION_TURN`` in a row before the
    session goes to the back of the line; when a new session arrives while
    ``limit`` are busy, it waits in that line. The dispatcher waits for room before
    more than ``_SESSION_BACKLOG`` payloads are queued or in flight, so
    back-pressure reaches the engine's queue.
    """

    def __init__(
        self,
        client: "AsyncConnectorClient",
        run: _AsyncRun,
        loop: asyncio.AbstractEventLoop,
        limit: int,
    ) -> None:
        self.client = client
        self.run = run
        self.loop = loop
        self.limit = limit
        self.on_actions = client._on_actions
        self.on_summary = client._on_summary
        self.items: Deque[Any] = collections.deque()  # the batch in hand, not dispatched yet
        # Sessions with a callback in flight or payloads waiting, and their waiting ones.
        self.sessions: Dict[str, Deque[_Payload]] = {}
        self.ready: Deque[str] = collections.deque()  # of those, the ones no task serves
        self.active = 0  # sessions a task serves (a callback of theirs in flight)
        self.pending = 0  # payloads queued in `sessions` or in flight
        self.ended = False  # the stream ended: nothing more to dispatch
        self.room: Optional["asyncio.Future[None]"] = None  # the dispatcher waits for room
        self.done: "asyncio.Future[None]" = loop.create_future()
        self.tasks: Set["asyncio.Task[None]"] = set()

    def queued(self) -> int:
        """Payloads received and not yet handed to a callback, or still in one that waits."""
        return len(self.items) + self.pending

    async def until_done(self) -> None:
        """Runs until the stream ended and every callback is done; raises what ended
        the stream. Cancelling it cancels every task of the run."""
        self._spawn_dispatcher()
        try:
            await self.done
        finally:
            for task in list(self.tasks):
                task.cancel()

    def _spawn_dispatcher(self) -> None:
        task = self.loop.create_task(self._dispatcher())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _dispatcher(self) -> None:
        # Whatever ends a task of the run early ends the run (until_done raises it).
        try:
            await self._dispatch()
        except BaseException as exc:
            if not self.done.done():
                if isinstance(exc, asyncio.CancelledError):
                    self.done.cancel()
                else:
                    self.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise

    def _finish_if_idle(self) -> None:
        if self.ended and not self.active and not self.done.done():
            self.done.set_result(None)

    def _handled(self) -> None:
        self.pending -= 1
        room = self.room
        if room is not None and not room.done():
            room.set_result(None)

    async def _dispatch(self) -> None:
        items, sessions, ready = self.items, self.sessions, self.ready
        popleft = items.popleft
        on_actions, on_summary = self.on_actions, self.on_summary
        notice = self.client._notice
        coroutine = types.CoroutineType
        while True:
            while items:
                item = popleft()
                cls = type(item)
                if cls is tuple:
                    await notice(item)
                    continue
                if sessions:
                    key = item.session_id or ""
                    queue = sessions.get(key)
                    if queue is not None or self.active >= self.limit:
                        if self.pending >= _SESSION_BACKLOG:
                            # Back in line; look again once a callback is done.
                            items.appendleft(item)
                            room = self.room = self.loop.create_future()
                            try:
                                await room
                            finally:
                                self.room = None
                            continue
                        if queue is None:
                            queue = sessions[key] = collections.deque()
                            ready.append(key)
                        queue.append(item)
                        self.pending += 1
                        continue
                # Nothing of its session is in flight or waiting and a slot is free.
                fn = on_actions if cls is ActionsPayload else on_summary
                if fn is None:
                    continue
                try:
                    result = fn(item)
                    if result is None:
                        continue
                    if type(result) is coroutine:
                        try:
                            yielded = result.send(None)
                        except StopIteration:
                            continue
                    elif inspect.isawaitable(result):
                        yielded = _AWAITABLE
                    else:
                        continue
                except Exception:
                    logger.exception("%s callback raised an exception; the stream goes on", _callback_name(item))
                    continue
                # The callback waits: this task stays with it and its session.
                key = item.session_id or ""
                sessions[key] = collections.deque()
                self.active += 1
                self.pending += 1
                self._spawn_dispatcher()
                await self._serve(key, item, result, yielded)
                return
            batch = await _next_batch(self.run, self.loop)
            if batch is None:
                self.ended = True
                self._finish_if_idle()
                return
            items.extend(batch)

    async def _serve(self, key: str, item: Any, result: Any, yielded: Any) -> None:
        try:
            if yielded is _AWAITABLE:
                await result
            else:
                await _resume(result, yielded)
        except Exception:
            logger.exception("%s callback raised an exception; the stream goes on", _callback_name(item))
        self._handled()
        on_actions, on_summary = self.on_actions, self.on_summary
        sessions, ready = self.sessions, self.ready
        while True:
            queue = sessions[key]
            turn = _SESSION_TURN
            while queue and turn:
                turn -= 1
                item = queue.popleft()
                fn = on_actions if type(item) is ActionsPayload else on_summary
                if fn is not None:
                    try:
                        result = fn(item)
                        if result is not None and inspect.isawaitable(result):
                            await result
                    except Exception:
                        logger.exception("%s callback raised an exception; the stream goes on", _callback_name(item))
                self._handled()
            if queue:
                ready.append(key)  # its turn is over: to the back of the line
            else:
                del sessions[key]
            if not ready:
                break
            key = ready.popleft()
        self.active -= 1
        self._finish_if_idle()


class AsyncConnectorClient:
    """Async-native client; callbacks are ``async def`` coroutines (plain functions
    work too) run on the loop that runs :meth:`run` or iterates :meth:`events`.

    The positional order is 0.13.0's (``url, token, connect_timeout,
    session_concurrency, initial_backoff_s, max_backoff_s, max_retries, on_connect,
    on_disconnect, metrics``); the options of :class:`ConnectorClient`
    (``max_queue_size``, ``read_timeout_s``, ``overflow_policy``, ...) are keywords.

    ``session_concurrency`` is how many sessions' callbacks may run at once (4, as in
    0.13.0); each session's payloads are always handled one at a time, in order.
    ``session_concurrency=1`` handles every payload in stream order.

    ``overflow_policy`` defaults to ``"block"`` here (the sync client's default is
    ``"drop_newest"``): a slow coroutine holds the reader back instead of losing
    events, as with 0.13.0.
    """

    def __init__(
        self,
        url: str,
        token: str = "",
        connect_timeout: float = 10.0,
        session_concurrency: int = 4,
        initial_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        max_retries: Optional[int] = None,
        on_connect: Optional[Callable[..., Any]] = None,
        on_disconnect: Optional[Callable[..., Any]] = None,
        metrics: Optional[Any] = None,
        *,
        max_queue_size: int = 500,
        read_timeout_s: Optional[float] = 90.0,
        overflow_policy: str = "block",
        drain_timeout_s: float = 5.0,
        max_event_size: Optional[int] = None,
        headers: Optional[Dict[str, str]] = None,
        last_event_id: Optional[str] = None,
        overflow_grace_s: float = 0.025,
        on_retry: Optional[Callable[[int, float, str], Any]] = None,
        workers: Optional[int] = None,
        max_queue_bytes: int = 16777216,
        max_server_delay_s: float = 600.0,
        backoff_reset_after_s: float = 60.0,
        max_id_len: int = 4096,
    ) -> None:
        if workers is not None:  # ConnectorClient's name for the same thing
            session_concurrency = workers
        if not isinstance(session_concurrency, int) or session_concurrency < 1:
            raise ValueError(f"session_concurrency must be >= 1, got {session_concurrency!r}")
        if connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be > 0, got {connect_timeout!r}")
        if max_retries is not None and max_retries < 0:
            raise ValueError(f"max_retries must be >= 0 or None, got {max_retries!r}")
        self._engine = _AsyncEngine(
            url,
            token,
            max_queue_size=max_queue_size,
            connect_timeout=connect_timeout,
            read_timeout_s=read_timeout_s,
            initial_backoff_s=initial_backoff_s,
            max_backoff_s=max_backoff_s,
            max_retries=max_retries,
            overflow_policy=overflow_policy,
            drain_timeout_s=drain_timeout_s,
            max_event_size=max_event_size,
            headers=headers,
            last_event_id=last_event_id,
            overflow_grace_s=overflow_grace_s,
            on_connect=on_connect is not None,
            on_disconnect=on_disconnect is not None,
            on_retry=on_retry is not None,
            max_queue_bytes=max_queue_bytes,
            max_server_delay_s=max_server_delay_s,
            backoff_reset_after_s=backoff_reset_after_s,
            max_id_len=max_id_len,
        )
        self._session_concurrency = session_concurrency
        self._metrics = metrics
        self._hooks: Dict[str, _Hook] = {}
        for name, fn in (("connect", on_connect), ("disconnect", on_disconnect)):
            if fn is not None:
                self._hooks[name] = _Hook(fn, f"on_{name}", wants_argument(fn))
        if on_retry is not None:
            self._hooks["retry"] = _Hook(on_retry, "on_retry", True)
        self._on_actions: Optional[Callable[[ActionsPayload], Any]] = None
        self._on_summary: Optional[Callable[[SummaryPayload], Any]] = None
        self._on_drop: Optional[Callable[[Dict[str, Any], int], Any]] = None
        self._task: Optional["asyncio.Task[None]"] = None
        # stop() before a task of run_in_background() starts makes it return at
        # once; a run() called after stop() connects again.
        self._stops = 0
        self._held = 0  # in order: payloads of the batch in hand not yet handled
        self._by_session: Optional[_BySession] = None  # by session: the run's dispatch

    @property
    def url(self) -> str:
        return self._engine.url

    def on_actions(self, fn: Callable[[ActionsPayload], Any]) -> "AsyncConnectorClient":
        """Registers an async callback receiving :class:`ActionsPayload`."""
        self._on_actions = fn
        return self

    def on_summary(self, fn: Callable[[SummaryPayload], Any]) -> "AsyncConnectorClient":
        """Registers an async callback receiving :class:`SummaryPayload`."""
        self._on_summary = fn
        return self

    def on_drop(self, fn: Callable[[Dict[str, Any], int], Any]) -> "AsyncConnectorClient":
        """Registers a (sync) ``fn(payload_dict, total_dropped)`` for dropped events,
        called on the loop."""
        self._on_drop = fn
        return self

    @property
    def dropped_count(self) -> int:
        """Events dropped so far because the queue was full."""
        return self._engine.dropped_count

    @property
    def oversized_count(self) -> int:
        """Events skipped because they were larger than ``max_event_size`` (the stream
        goes on after each)."""
        return self._engine.oversized_count

    @property
    def queue_size(self) -> int:
        """Payloads received and not yet handed to a callback."""
        by_session = self._by_session
        queued = by_session.queued() if by_session is not None else self._held
        return self._engine.queue_size + queued

    def _start(self) -> _AsyncRun:
        told = self._on_drop is not None or self._metrics is not None
        return self._engine.start(_wake, self._drops_told if told else None)

    def _drops_told(self, notes: List[Any]) -> None:
        # On the loop, as soon as events dropped: not behind the payloads, since a
        # consumer busy in a callback is exactly when the queue overflows.
        for info, total in notes:
            if self._on_drop is not None:
                try:
                    self._on_drop(info, total)
                except Exception:
                    logger.exception("on_drop callback raised an exception; the stream goes on")
            if self._metrics is not None:
                try:
                    self._metrics.record_event_dropped(
                        reason="queue_full",
                        event_type=info["type"],
                        session_id=info["session_id"],
                        product_id=info["product_id"],
                    )
                except Exception:
                    logger.exception("metrics.record_event_dropped raised an exception")

    async def _notice(self, item: Any) -> None:
        hook = self._hooks.get(item[0])
        if hook is not None:
            await hook(*item[1:])

    async def events(self) -> AsyncIterator[_Payload]:
        """The stream's typed payloads, for ``async for payload in client.events()``.

        Connects when iteration starts; ends after :meth:`stop` (once what was queued
        is handed out) and raises :class:`SdkError` subclasses on a fatal status or
        exhausted retries. Leaving the loop early (``break``) or cancelling it closes
        the connection. Registered callbacks are not called; hooks are.
        """
        loop = asyncio.get_running_loop()
        run = self._start()
        try:
            while True:
                batch = await _next_batch(run, loop)
                if batch is None:
                    return
                for item in batch:
                    if type(item) is tuple:
                        await self._notice(item)
                    else:
                        yield item
        finally:
            run.close()

    async def run(self) -> None:
        """Connects and awaits the callbacks until :meth:`stop` (then returns once the
        queued payloads are handled, up to ``drain_timeout_s``), or until its task is
        cancelled (then returns ``None`` at once, as 0.13.0 does). Raises
        :class:`SdkError` subclasses on a fatal status or exhausted retries."""
        await self._run_unless_stopped(self._stops)

    async def _run_unless_stopped(self, stops: int) -> None:
        if stops != self._stops:
            return  # stop() came between run_in_background() and the task's start
        loop = asyncio.get_running_loop()
        run = self._start()
        try:
            if self._session_concurrency == 1:
                await self._deliver_in_order(run, loop)
            else:
                await self._deliver_by_session(run, loop)
        except asyncio.CancelledError:
            # Cancelling the task is how 0.13.0 users stop it: it ends quietly.
            run.close()
            return None
        finally:
            run.close()
            self._held = 0

    async def _deliver_in_order(self, run: _AsyncRun, loop: asyncio.AbstractEventLoop) -> None:
        on_actions, on_summary = self._on_actions, self._on_summary
        actions_async = on_actions is not None and _is_async(on_actions)
        summary_async = on_summary is not None and _is_async(on_summary)
        while True:
            batch = await _next_batch(run, loop)
            if batch is None:
                return
            self._held = len(batch)
            for item in batch:
                self._held -= 1
                cls = type(item)
                if cls is ActionsPayload:
                    if on_actions is None:
                        continue
                    try:
                        if actions_async:
                            await on_actions(item)
                        else:
                            result = on_actions(item)
                            if result is not None and inspect.isawaitable(result):
                                await result
                    except Exception:
                        logger.exception("on_actions callback raised an exception; the stream goes on")
                elif cls is SummaryPayload:
                    if on_summary is None:
                        continue
                    try:
                        if summary_async:
                            await on_summary(item)
                        else:
                            result = on_summary(item)
                            if result is not None and inspect.isawaitable(result):
                                await result
                    except Exception:
                        logger.exception("on_summary callback raised an exception; the stream goes on")
                else:
                    await self._notice(item)

    async def _deliver_by_session(self, run: _AsyncRun, loop: asyncio.AbstractEventLoop) -> None:
        state = _BySession(self, run, loop, self._session_concurrency)
        self._by_session = state
        try:
            await state.until_done()
        finally:
            self._by_session = None

    def run_in_background(self) -> "asyncio.Task[None]":
        """Schedules :meth:`run` as a task on the running loop and returns it at once."""
        self._task = asyncio.get_running_loop().create_task(
            self._run_unless_stopped(self._stops), name="autoplay-sdk-client"
        )
        return self._task

    def stop(self) -> None:
        """Stops the client: the reader ends, queued payloads are still handled (up to
        ``drain_timeout_s``), then :meth:`run` returns and :meth:`events` ends."""
        self._stops += 1
        self._engine.stop()

    async def __aenter__(self) -> "AsyncConnectorClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"AsyncConnectorClient(url={self.url!r})"


# How long a session's summarizer worker idles before it ends (and forgets the
# session's pending actions, bounding memory as 0.13.0 does); the next add() starts
# a new one.
_WORKER_IDLE_TIMEOUT_S = 300.0

# Tells a session's worker to forget the session and end (reset()).
_SESSION_STOP = object()


class AsyncSessionSummarizer:
    """:class:`SessionSummarizer` with an async ``llm(prompt)`` and an async
    ``on_summary(session_id, summary)`` (0.13.0's signature and behaviour).

    ``add()`` queues the payload and returns at once: each session has a worker task
    that handles its payloads one at a time (so a slow LLM never stalls the stream,
    and a session's summaries come in order). The accumulation, the threshold, the
    prompt and keeping a batch after a failed LLM call (for the next try) are the
    Rust core's (``SessionAccumulator``); only the LLM call happens here, on the loop.
    ``await flush()`` waits until every queued payload is handled.

    ``max_queue_size`` bounds each session's queue (``None``: unbounded); a payload
    that finds it full is dropped, logged and told to ``metrics``.
    """

    def __init__(
        self,
        llm: Callable[[str], Awaitable[str]],
        threshold: int = 10,
        prompt: Optional[str] = None,
        on_summary: Optional[Callable[[str, str], Any]] = None,
        format_actions: Optional[Callable[[List[ActionsPayload]], str]] = None,
        max_queue_size: Optional[int] = None,
        metrics: Optional[Any] = None,
        *,
        max_sessions: Optional[int] = None,
    ) -> None:
        if max_queue_size is not None and max_queue_size < 1:
            raise InvalidConfigError(f"max_queue_size must be >= 1 or None, got {max_queue_size!r}")
        self._acc = _SummaryAccumulator(threshold, prompt, format_actions, max_sessions)
        self._llm = llm
        self.on_summary = on_summary
        self._max_queue_size = max_queue_size
        self._metrics = metrics
        self._queues: Dict[str, "asyncio.Queue[Any]"] = {}
        self._workers: Dict[str, "asyncio.Task[None]"] = {}

    @property
    def threshold(self) -> int:
        return self._acc.threshold

    @property
    def prompt(self) -> str:
        return self._acc.prompt_template

    @property
    def max_sessions(self) -> Optional[int]:
        return self._acc.max_sessions

    @property
    def session_count(self) -> int:
        return self._acc.session_count

    def pending(self, session_id: str) -> int:
        """Actions of the session waiting for a summary (queued payloads not counted)."""
        return self._acc.pending(session_id)

    async def add(self, payload: Any) -> None:
        """Queues an actions payload for its session's worker and returns at once.
        Other payloads are ignored."""
        if not isinstance(payload, ActionsPayload):
            return
        session_id = payload.session_id or "unknown"
        queue = self._queues.get(session_id)
        if queue is None:
            queue = asyncio.Queue(maxsize=self._max_queue_size or 0)
            self._queues[session_id] = queue
            task = asyncio.get_running_loop().create_task(
                self._worker(session_id, queue), name=f"summarizer-worker-{session_id}"
            )
            task.add_done_callback(_worker_done)
            self._workers[session_id] = task
        try:
            queue.put_nowait(payload)
        except asyncio.QueueFull:
            logger.warning("summarizer: the session's queue is full; payload of session %s dropped", session_id)
            if self._metrics is not None:
                try:
                    self._metrics.record_event_dropped(
                        reason="queue_full",
                        event_type="actions",
                        session_id=session_id,
                        product_id=payload.product_id,
                    )
                except Exception:
                    logger.exception("metrics.record_event_dropped raised an exception")

    async def _worker(self, session_id: str, queue: "asyncio.Queue[Any]") -> None:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), _WORKER_IDLE_TIMEOUT_S)
            except asyncio.TimeoutError:
                if self._queues.get(session_id) is queue:
                    del self._queues[session_id]
                    self._workers.pop(session_id, None)
                    self._acc.reset(session_id)
                return
            try:
                if item is _SESSION_STOP:
                    if self._queues.get(session_id) is queue:
                        del self._queues[session_id]
                        self._workers.pop(session_id, None)
                    self._acc.reset(session_id)
                    return
                batch = self._acc.push(item)
                if batch is not None:
                    await self._summarise(batch)
            finally:
                queue.task_done()

    async def _summarise(self, batch: Any) -> Optional[SummaryPayload]:
        prompt = self._acc.prompt(batch)
        if prompt is None:  # format_actions raised (logged); the batch is kept
            return None
        started = time.perf_counter()
        try:
            text = await _maybe_await(self._llm(prompt))
        except Exception:
            logger.exception(
                "the summarizer's llm raised; the actions of session %s stay pending for the next try",
                batch.session_id,
            )
            self._acc.conclude(batch, None)
            return None
        if self._metrics is not None:
            try:
                self._metrics.record_summarizer_latency(
                    session_id=batch.session_id,
                    elapsed_ms=(time.perf_counter() - started) * 1000,
                    action_count=batch.action_count,
                )
            except Exception:
                logger.exception("metrics.record_summarizer_latency raised an exception")
        summary = self._acc.conclude(batch, str(text))
        on_summary = self.on_summary
        if summary is not None and on_summary is not None:
            try:
                await _maybe_await(on_summary(summary.session_id or "unknown", summary.summary))
            except Exception:
                logger.exception("the summarizer's on_summary raised")
        return summary

    async def flush(self, session_id: Optional[str] = None) -> Optional[SummaryPayload]:
        """Without a session (0.13.0): waits until every queued payload is handled.
        With one: waits for that session's queue, then summarises its pending actions
        now, below the threshold too, and returns the summary."""
        if session_id is None:
            queues = list(self._queues.values())
            if queues:
                await asyncio.gather(*(asyncio.shield(q.join()) for q in queues))
            return None
        queue = self._queues.get(session_id)
        if queue is not None:
            await asyncio.shield(queue.join())
        batch = self._acc.take(session_id)
        if batch is None:
            return None
        return await self._summarise(batch)

    async def get_context(self, session_id: str) -> str:
        """The session's pending (not yet summarised) actions as text."""
        return self._acc.context(session_id)

    async def reset(self, session_id: str) -> None:
        """Forgets the session's pending actions (after what is queued before it)."""
        queue = self._queues.get(session_id)
        if queue is not None:
            await queue.put(_SESSION_STOP)
        else:
            self._acc.reset(session_id)

    @property
    async def active_sessions(self) -> List[str]:
        """Sessions with actions pending, sorted; an async property (``await``)."""
        return sorted(self._acc.active_sessions())


def _worker_done(task: "asyncio.Task[None]") -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("summarizer: a session worker raised", exc_info=task.exception())


def _vector_id(session_id: str, kind: str, forwarded_at: Optional[float]) -> str:
    # 0.13.0's ids: `{session}:{actions|summary}:{forwarded_at}` with Python's float repr.
    return f"{session_id}:{kind}:{forwarded_at}"


class AsyncRagPipeline:
    """:class:`RagPipeline` with async ``embed(text)`` and ``upsert(id, vector,
    metadata)``; 0.13.0's ids and metadata. With a ``summarizer``, actions go to it
    and each summary it makes is upserted as ``{session_id}:client-summary``
    (``type`` ``"ClientSummary"``); the pipeline becomes its ``on_summary``."""

    def __init__(
        self,
        embed: Callable[[str], Awaitable[Any]],
        upsert: Callable[[str, Any, Dict[str, Any]], Awaitable[Any]],
        summarizer: Optional[AsyncSessionSummarizer] = None,
    ) -> None:
        if not callable(embed):
            raise InvalidConfigError(f"embed must be callable, got {type(embed)!r}")
        if not callable(upsert):
            raise InvalidConfigError(f"upsert must be callable, got {type(upsert)!r}")
        self._embed = embed
        self._upsert = upsert
        self.summarizer = summarizer
        self.upserted_count = 0
        self.failed_count = 0
        if summarizer is not None:
            if summarizer.on_summary is not None:
                logger.warning(
                    "AsyncRagPipeline: replacing the summarizer's on_summary; the previous callback is no longer called"
                )
            summarizer.on_summary = self._upsert_summary

    async def _store(self, vector_id: str, text: str, metadata: Dict[str, Any]) -> None:
        try:
            vector = await _maybe_await(self._embed(text))
            await _maybe_await(self._upsert(vector_id, vector, metadata))
        except Exception:
            self.failed_count += 1
            logger.exception("RAG pipeline step failed for id %s; payload skipped", vector_id)
            return
        self.upserted_count += 1

    async def _embed_and_upsert(self, payload: Union[ActionsPayload, SummaryPayload]) -> None:
        session_id = payload.session_id or "unknown"
        kind = "actions" if isinstance(payload, ActionsPayload) else "summary"
        metadata = {
            "session_id": session_id,
            "type": type(payload).__name__,
            "forwarded_at": payload.forwarded_at,
        }
        await self._store(_vector_id(session_id, kind, payload.forwarded_at), payload.to_text(), metadata)

    async def _upsert_summary(self, session_id: str, summary: str) -> None:
        await self._store(
            f"{session_id}:client-summary", summary, {"session_id": session_id, "type": "ClientSummary"}
        )

    async def on_actions(self, payload: ActionsPayload) -> None:
        """Handles an actions batch (wire it as ``on_actions``)."""
        if self.summarizer is not None:
            await self.summarizer.add(payload)
        else:
            await self._embed_and_upsert(payload)

    async def on_summary(self, payload: SummaryPayload) -> None:
        """Handles a server-side summary (wire it as ``on_summary``)."""
        await self._embed_and_upsert(payload)
