"""AsyncConnectorClient against the real connector: callbacks on the caller's loop,
run_in_background as an asyncio.Task, async with, fatal statuses, slow callbacks."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import List

import pytest

from autoplay_sdk import ActionsPayload, AsyncConnectorClient, FatalStatusError, SdkError

from conftest import Connector


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


def test_cancelling_run_stops_the_client(connector: Connector) -> None:
    async def main() -> None:
        client = AsyncConnectorClient(url=connector.url, token=connector.key)
        task = client.run_in_background()
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
