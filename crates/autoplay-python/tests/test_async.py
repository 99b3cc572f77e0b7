"""AsyncConnectorClient against the real connector: callbacks on the caller's loop,
run_in_background as an asyncio.Task, async with, fatal statuses, slow callbacks,
`async for` over events(), cancellation, hooks, session_concurrency, stop()."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Dict, List, Tuple

import pytest

from autoplay_sdk import (
    ActionsPayload,
    AlreadyRunningError,
    AsyncConnectorClient,
    FatalStatusError,
    InvalidConfigError,
    SdkError,
    SummaryPayload,
)

from conftest import Connector, action


async def wait_until(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return bool(predicate())


def test_callbacks_run_on_the_callers_loop(connector: Connector) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        got: List[str] = []
        threads: List[int] = []
        loops: List[asyncio.AbstractEventLoop] = []

        async def on_actions(p: ActionsPayload) -> None:
            loops.append(asyncio.get_running_loop())
            threads.append(threading.get_ident())
            await asyncio.sleep(0)
            got.append(p.session_id or "")

        async with AsyncConnectorClient(url=connector.url, token=connector.key) as client:
            client.on_actions(on_actions)
            task = client.run_in_background()
            assert isinstance(task, asyncio.Task)
            await asyncio.sleep(0.3)
            for i in range(10):
                await asyncio.to_thread(connector.post_actions, f"a{i}")
            assert await wait_until(lambda: len(got) == 10)
        await asyncio.wait_for(task, 5)
        assert got == [f"a{i}" for i in range(10)]
        assert set(threads) == {threading.get_ident()}
        assert all(l is loop for l in loops)

    asyncio.run(main())


def test_slow_async_callback_does_not_stall_the_reader(connector: Connector) -> None:
    async def main() -> None:
        got: List[str] = []

        async def slow(p: ActionsPayload) -> None:
            await asyncio.sleep(0.05)
            got.append(p.session_id or "")

        client = AsyncConnectorClient(url=connector.url, token=connector.key, max_queue_size=1000)
        client.on_actions(slow)
        task = client.run_in_background()
        await asyncio.sleep(0.3)
        start = time.monotonic()
        await asyncio.to_thread(connector.post_batches, 100)
        # the reader took everything in at once: it is queued, not dropped or stalled
        assert await wait_until(lambda: client.queue_size + len(got) >= 99, timeout=2)
        assert time.monotonic() - start < 2
        assert client.dropped_count == 0
        # the loop stays responsive meanwhile
        t0 = time.monotonic()
        await asyncio.sleep(0.01)
        assert time.monotonic() - t0 < 0.2
        client.stop()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())


def test_async_fatal_status(connector: Connector) -> None:
    async def main() -> None:
        client = AsyncConnectorClient(url=connector.url, token="nope")
        with pytest.raises(FatalStatusError) as info:
            await client.run()
        assert isinstance(info.value, SdkError)
        assert info.value.status_code == 401

    asyncio.run(main())


def test_async_raising_callback_goes_on(connector: Connector, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        got: List[str] = []

        async def cb(p: ActionsPayload) -> None:
            if p.session_id == "boom":
                raise RuntimeError("async kaboom")
            got.append(p.session_id or "")

        client = AsyncConnectorClient(url=connector.url, token=connector.key).on_actions(cb)
        task = client.run_in_background()
        await asyncio.sleep(0.3)
        await asyncio.to_thread(connector.post_actions, "boom")
        await asyncio.to_thread(connector.post_actions, "ok")
        assert await wait_until(lambda: got == ["ok"])
        client.stop()
        await task

    asyncio.run(main())
    assert "async kaboom" in caplog.text


def subscribers(connector: Connector) -> int:
    """Clients the connector is streaming to right now (from its /metrics)."""
    import urllib.request

    base = connector.url.split("/stream/")[0]
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith("autoplay_live_subscribers "):
            return int(float(line.split()[-1]))
    raise AssertionError(f"no subscriber gauge in /metrics:\n{text}")


def test_cancelling_run_returns_none_and_disconnects(connector: Connector) -> None:
    async def main() -> None:
        connected = asyncio.Event()
        client = AsyncConnectorClient(url=connector.url, token=connector.key, on_connect=connected.set)
        task = client.run_in_background()
        await asyncio.wait_for(connected.wait(), 10)
        assert await wait_until(lambda: subscribers(connector) == 1)
        task.cancel()
        assert await asyncio.wait_for(task, 5) is None  # as 0.13.0: no CancelledError
        assert await wait_until(lambda: subscribers(connector) == 0, timeout=5)
        # the client can run again afterwards
        connected.clear()
        task = client.run_in_background()
        await asyncio.wait_for(connected.wait(), 10)
        client.stop()
        assert await asyncio.wait_for(task, 5) is None

    asyncio.run(main())


def test_async_for_over_events(summarising_connector: Connector) -> None:
    c = summarising_connector  # a summary after every 3 actions of a session

    async def main() -> None:
        client = AsyncConnectorClient(url=c.url, token=c.key)
        got: List[Tuple[str, Any]] = []

        async def post() -> None:
            await asyncio.sleep(0.3)
            for i in range(5):
                await asyncio.to_thread(c.post_actions, f"e{i}")
            await asyncio.to_thread(c.post_actions, "sum", 3)

        poster = asyncio.create_task(post())
        async for payload in client.events():
            if isinstance(payload, ActionsPayload):
                got.append(("actions", payload.session_id))
            else:
                assert isinstance(payload, SummaryPayload)
                got.append(("summary", payload.session_id))
                break  # leaving the loop closes the connection
        await poster
        assert got[:5] == [("actions", f"e{i}") for i in range(5)]
        assert got[5:] == [("actions", "sum"), ("summary", "sum")]
        assert await wait_until(lambda: subscribers(c) == 0, timeout=5)

    asyncio.run(main())


def test_events_end_after_stop_and_raise_fatal_statuses(connector: Connector) -> None:
    async def main() -> None:
        connected = asyncio.Event()
        client = AsyncConnectorClient(url=connector.url, token=connector.key, on_connect=connected.set)
        seen: List[str] = []

        async def post_then_stop() -> None:
            # Post once subscribed (events posted before are not the stream's), then
            # stop once every event was received (handed out, or queued in the
            # client): the connector's 200 does not mean the stream has carried them.
            await asyncio.wait_for(connected.wait(), 10)
            await asyncio.to_thread(connector.post_batches, 50)
            assert await wait_until(lambda: len(seen) + client.queue_size >= 50)
            client.stop()

        stopper = asyncio.create_task(post_then_stop())
        async for p in client.events():
            seen.append(p.session_id or "")
        await stopper
        # stop() lets what was already received through before the stream ends
        assert seen == [f"ps_{i}" for i in range(50)]

        bad = AsyncConnectorClient(url=connector.url, token="nope")
        with pytest.raises(FatalStatusError) as info:
            async for _ in bad.events():
                pass
        assert info.value.status_code == 401

    asyncio.run(main())


def test_callbacks_in_order_and_no_drops_with_a_counting_async_callback(connector: Connector) -> None:
    n = 5000

    async def main() -> None:
        order: List[str] = []
        summaries: List[SummaryPayload] = []

        async def count(p: ActionsPayload) -> None:
            order.append(p.session_id or "")

        async def on_summary(p: SummaryPayload) -> None:
            summaries.append(p)

        client = AsyncConnectorClient(url=connector.url, token=connector.key)
        client.on_actions(count).on_summary(on_summary)
        task = client.run_in_background()
        await asyncio.sleep(0.3)
        for start in range(0, n, 1000):
            await asyncio.to_thread(
                connector.post,
                [{"session_id": f"s{i}", "actions": [action(i)]} for i in range(start, start + 1000)],
            )
        assert await wait_until(lambda: len(order) == n, timeout=30), len(order)
        assert order == [f"s{i}" for i in range(n)]
        assert client.dropped_count == 0
        client.stop()
        await asyncio.wait_for(task, 10)
        assert summaries == []

    asyncio.run(main())


def test_async_on_connect_and_on_disconnect_are_awaited(connector: Connector) -> None:
    async def main() -> None:
        log: List[str] = []

        async def on_connect() -> None:  # 0.13.0's form: no argument
            await asyncio.sleep(0.01)
            log.append("connect")

        async def on_disconnect(reason: str) -> None:  # ours: with the reason
            await asyncio.sleep(0.01)
            log.append("disconnect")

        async def on_actions(p: ActionsPayload) -> None:
            log.append(f"actions {p.session_id}")

        client = AsyncConnectorClient(
            connector.url, connector.key, on_connect=on_connect, on_disconnect=on_disconnect,
            initial_backoff_s=0.05, max_backoff_s=0.1,
        ).on_actions(on_actions)
        task = client.run_in_background()
        assert await wait_until(lambda: log == ["connect"])
        await asyncio.to_thread(connector.post_actions, "one")
        assert await wait_until(lambda: log == ["connect", "actions one"])
        await asyncio.to_thread(connector.restart)
        assert await wait_until(lambda: log[2:] == ["disconnect", "connect"]), log
        await asyncio.to_thread(connector.post_actions, "two")
        assert await wait_until(lambda: log[-1] == "actions two"), log
        client.stop()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())


def test_sync_hooks_are_called_on_the_loop(connector: Connector) -> None:
    async def main() -> None:
        threads: List[int] = []
        client = AsyncConnectorClient(
            connector.url, connector.key, on_connect=lambda url: threads.append(threading.get_ident())
        )
        task = client.run_in_background()
        assert await wait_until(lambda: len(threads) == 1)
        assert threads == [threading.get_ident()]
        client.stop()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())


def test_session_concurrency_bounds_parallel_sessions_and_keeps_their_order(connector: Connector) -> None:
    sessions, per_session = 8, 6

    async def main() -> None:
        active: Dict[str, int] = {}
        peak = [0]
        by_session: Dict[str, List[int]] = {}
        busy_same_session = [0]

        async def on_actions(p: ActionsPayload) -> None:
            sid = p.session_id or ""
            if active.get(sid):
                busy_same_session[0] += 1
            active[sid] = active.get(sid, 0) + 1
            peak[0] = max(peak[0], sum(1 for v in active.values() if v))
            await asyncio.sleep(0.02)
            by_session.setdefault(sid, []).append(int(p.actions[0].title.split()[-1]))
            active[sid] -= 1

        client = AsyncConnectorClient(connector.url, connector.key, session_concurrency=3)
        client.on_actions(on_actions)
        task = client.run_in_background()
        await asyncio.sleep(0.3)
        body = [
            {"session_id": f"s{s}", "actions": [action(k, "step")]}
            for k in range(per_session)
            for s in range(sessions)
        ]
        started = time.monotonic()
        await asyncio.to_thread(connector.post, body)
        total = sessions * per_session
        assert await wait_until(lambda: sum(len(v) for v in by_session.values()) == total, timeout=20)
        elapsed = time.monotonic() - started
        client.stop()
        await asyncio.wait_for(task, 10)
        assert peak[0] == 3  # parallel, and never more than 3 sessions at once
        assert busy_same_session[0] == 0  # a session never ran twice at once
        assert all(v == list(range(per_session)) for v in by_session.values()), by_session
        assert set(by_session) == {f"s{s}" for s in range(sessions)}
        assert elapsed < total * 0.02 * 0.8  # faster than one at a time

    asyncio.run(main())


async def run_interleaved(
    connector: Connector, on_actions: Any, by_session: Dict[str, List[int]], sessions: int, per_session: int
) -> Tuple[AsyncConnectorClient, "asyncio.Task[None]"]:
    """Starts a client with `on_actions`, posts `per_session` actions of each of
    `sessions` sessions interleaved (s0 k0, s1 k0, ...), and returns the client and
    its task once `on_actions` recorded all of them in `by_session`."""
    connected = asyncio.Event()

    async def on_connect() -> None:
        connected.set()

    client = AsyncConnectorClient(connector.url, connector.key, on_connect=on_connect)
    client.on_actions(on_actions)
    task = client.run_in_background()
    await asyncio.wait_for(connected.wait(), 10)
    body = [
        {"session_id": f"s{s}", "actions": [action(k, "step")]}
        for k in range(per_session)
        for s in range(sessions)
    ]
    await asyncio.to_thread(connector.post, body)
    total = sessions * per_session
    assert await wait_until(lambda: sum(len(v) for v in by_session.values()) == total, timeout=20)
    return client, task


def test_by_default_four_sessions_run_at_once_each_in_order(connector: Connector) -> None:
    # 0.13.0's default session_concurrency is 4. Each first callback of a session
    # waits until four sessions are inside a callback together: with fewer slots the
    # run could never get there and the wait times out.
    sessions, per_session = 6, 3

    async def main() -> None:
        active: Dict[str, int] = {}
        peak = [0]
        four_at_once = asyncio.Event()
        by_session: Dict[str, List[int]] = {}

        async def on_actions(p: ActionsPayload) -> None:
            sid = p.session_id or ""
            assert not active.get(sid), "a session ran twice at once"
            active[sid] = 1
            running = sum(active.values())
            peak[0] = max(peak[0], running)
            if running == 4:
                four_at_once.set()
            if sid not in by_session:
                await asyncio.wait_for(four_at_once.wait(), 10)
            await asyncio.sleep(0)  # let the other sessions' tasks interleave
            by_session.setdefault(sid, []).append(int(p.actions[0].title.split()[-1]))
            active[sid] = 0

        client, task = await run_interleaved(connector, on_actions, by_session, sessions, per_session)
        client.stop()
        await asyncio.wait_for(task, 10)
        assert four_at_once.is_set() and peak[0] == 4, peak
        assert by_session == {f"s{s}": list(range(per_session)) for s in range(sessions)}, by_session

    asyncio.run(main())


def test_a_callback_that_waits_stays_in_one_task_and_keeps_its_sessions_order(connector: Connector) -> None:
    # A callback runs in the dispatching task until it first waits; from there that
    # task stays with it (another takes over the dispatching), so current_task(), a
    # timeout inside the callback and its cancellation all see one task, and the
    # payloads that complete at once keep their session's order with those that wait.
    sessions, per_session = 6, 5

    async def main() -> None:
        same_task: List[bool] = []
        timed_out: List[str] = []
        by_session: Dict[str, List[int]] = {}

        async def on_actions(p: ActionsPayload) -> None:
            k = int(p.actions[0].title.split()[-1])
            sid = p.session_id or ""
            if k % 2 == 0:  # every other payload waits, the rest complete at once
                task = asyncio.current_task()
                try:
                    if hasattr(asyncio, "timeout"):  # 3.11+: bound to the current task
                        async with asyncio.timeout(0.01):
                            await asyncio.sleep(1)
                    else:
                        await asyncio.wait_for(asyncio.sleep(1), 0.01)
                except asyncio.TimeoutError:
                    timed_out.append(sid)
                same_task.append(asyncio.current_task() is task)
            by_session.setdefault(sid, []).append(k)

        client, task = await run_interleaved(connector, on_actions, by_session, sessions, per_session)
        assert not task.done()
        client.stop()
        assert await asyncio.wait_for(task, 10) is None
        assert not task.cancelled()
        assert by_session == {f"s{s}": list(range(per_session)) for s in range(sessions)}, by_session
        waited = sessions * len(range(0, per_session, 2))
        assert len(same_task) == waited and all(same_task)
        assert len(timed_out) == waited

    asyncio.run(main())


def test_stop_drains_what_was_received(connector: Connector) -> None:
    async def main() -> None:
        got: List[str] = []

        async def slow(p: ActionsPayload) -> None:
            await asyncio.sleep(0.002)
            got.append(p.session_id or "")

        client = AsyncConnectorClient(url=connector.url, token=connector.key).on_actions(slow)
        task = client.run_in_background()
        await asyncio.sleep(0.3)
        await asyncio.to_thread(connector.post_batches, 200)
        assert await wait_until(lambda: client.queue_size + len(got) == 200, timeout=5)
        client.stop()
        await asyncio.wait_for(task, 10)
        assert got == [f"ps_{i}" for i in range(200)]
        assert await wait_until(lambda: subscribers(connector) == 0, timeout=5)

    asyncio.run(main())


def test_stop_before_a_scheduled_run_starts(connector: Connector) -> None:
    async def main() -> None:
        async with AsyncConnectorClient(url=connector.url, token=connector.key) as client:
            task = client.run_in_background()
        # __aexit__ stopped the client before the task ran: it ends at once
        assert await asyncio.wait_for(task, 2) is None

    asyncio.run(main())


def test_run_twice_at_once_raises(connector: Connector) -> None:
    async def main() -> None:
        client = AsyncConnectorClient(url=connector.url, token=connector.key)
        task = client.run_in_background()
        await asyncio.sleep(0.1)
        with pytest.raises(AlreadyRunningError):
            await client.run()
        client.stop()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())


def test_bad_options_raise_value_error() -> None:
    with pytest.raises(ValueError):
        AsyncConnectorClient("http://127.0.0.1:1/stream/p", "k", session_concurrency=0)
    with pytest.raises(ValueError):
        AsyncConnectorClient("http://127.0.0.1:1/stream/p", "k", connect_timeout=0)
    with pytest.raises(InvalidConfigError):
        AsyncConnectorClient("ftp://x/stream/p", "k")
    with pytest.raises(InvalidConfigError):
        AsyncConnectorClient("http://127.0.0.1:1/stream/p", "k", overflow_policy="sideways")


def test_on_drop_is_told_on_the_loop(connector: Connector) -> None:
    async def main() -> None:
        drops: List[Tuple[Dict[str, Any], int, int]] = []
        release = asyncio.Event()

        async def stuck(p: ActionsPayload) -> None:
            await release.wait()

        client = AsyncConnectorClient(
            url=connector.url, token=connector.key, max_queue_size=10, overflow_policy="drop_newest"
        )
        client.on_actions(stuck).on_drop(lambda info, total: drops.append((info, total, threading.get_ident())))
        task = client.run_in_background()
        await asyncio.sleep(0.3)
        await asyncio.to_thread(connector.post_batches, 1000)
        assert await wait_until(lambda: client.dropped_count > 0 and len(drops) > 0)
        info, total, thread = drops[0]
        assert info["type"] == "actions" and total >= 1
        assert thread == threading.get_ident()
        release.set()
        client.stop()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())


EXIT_SCRIPTS = {
    # asyncio.run() ends with the client still running: it cancels run()'s task.
    "task left running": """
async def main():
    client = AsyncConnectorClient(URL, KEY).on_actions(slow)
    client.run_in_background()
    await asyncio.sleep(0.5)
asyncio.run(main())
""",
    # An events() iteration abandoned mid-stream.
    "events() abandoned": """
async def main():
    async for p in AsyncConnectorClient(URL, KEY).events():
        await slow(p)
        if seen[0] >= 5:
            return
asyncio.run(main())
""",
    # The loop runs on a daemon thread the interpreter leaves behind at exit, while
    # payloads still arrive: nothing may call into the dying interpreter.
    "loop on a daemon thread": """
def loop_thread():
    async def main():
        await AsyncConnectorClient(URL, KEY).on_actions(slow).run()
    asyncio.run(main())
threading.Thread(target=loop_thread, daemon=True).start()
time.sleep(1.0)
print("exiting", flush=True)
""",
}

EXIT_PRELUDE = """
import asyncio, logging, threading, time
from autoplay_sdk import AsyncConnectorClient
# The slow callback makes the queue overflow, which is logged at WARNING: expected
# here, and it would hide what this test looks for (any other line on stderr).
logging.getLogger("autoplay_sdk").setLevel(logging.ERROR)
URL, KEY = {url!r}, {key!r}
seen = [0]
async def slow(p):
    seen[0] += 1
    await asyncio.sleep(0.02)   # slower than the traffic
"""


@pytest.mark.parametrize("shape", sorted(EXIT_SCRIPTS))
def test_exit_while_streaming_is_clean(connector: Connector, shape: str) -> None:
    import subprocess
    import sys

    code = EXIT_PRELUDE.format(url=connector.url, key=connector.key) + EXIT_SCRIPTS[shape]
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            connector.post_batches(50)
            time.sleep(0.02)

    poster = threading.Thread(target=traffic, daemon=True)
    poster.start()
    try:
        for _ in range(5):
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
            assert proc.returncode == 0, (proc.returncode, proc.stderr)
            assert proc.stderr == "", proc.stderr
    finally:
        stop.set()
        poster.join(5)
