"""AsyncConnectorClient with a consumer slower than the stream: the default overflow
policy ("block") holds the reader back, bounded by max_queue_size and
max_queue_bytes, and loses nothing (0.13.0's async client, which reads only between
callbacks, loses nothing either)."""

from __future__ import annotations

import asyncio
import time
from typing import List

import pytest

from autoplay_sdk import ActionsPayload, AsyncConnectorClient

from conftest import Connector, action


async def wait_until(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return bool(predicate())


N = 3000


@pytest.mark.parametrize(
    "limits",
    [
        {},  # the defaults: 500 payloads, 16 MiB
        {"max_queue_size": 20},  # bounded by count
        {"max_queue_size": 100_000, "max_queue_bytes": 4096},  # bounded by bytes
    ],
    ids=["defaults", "count-bound", "bytes-bound"],
)
def test_a_slow_async_consumer_loses_nothing(connector: Connector, limits: dict) -> None:  # type: ignore[type-arg]
    async def main() -> None:
        order: List[str] = []
        most_queued = [0]

        async def slow(p: ActionsPayload) -> None:
            # Slower than the stream: the connector posts N payloads in milliseconds.
            most_queued[0] = max(most_queued[0], client.queue_size)
            await asyncio.sleep(0.0005)
            order.append(p.session_id or "")

        # One at a time, so that the stream's order is the callbacks' order (with
        # several sessions at once only each session's own order holds).
        client = AsyncConnectorClient(connector.url, connector.key, session_concurrency=1, **limits)
        client.on_actions(slow)
        task = client.run_in_background()
        await asyncio.sleep(0.3)
        for start in range(0, N, 1000):
            await asyncio.to_thread(
                connector.post,
                [{"session_id": f"s{i}", "actions": [action(i)]} for i in range(start, start + 1000)],
            )
        assert await wait_until(lambda: len(order) >= N or task.done(), timeout=60), len(order)
        assert client.dropped_count == 0
        # Every payload, once, in the stream's order: no gap, no duplicate.
        assert order == [f"s{i}" for i in range(N)]
        # The consumer really was behind, and what was held stayed bounded: the
        # core's queue and its batch, and the batch in hand (the loop polls the
        # core's stream itself: no buffer in between).
        bound = limits.get("max_queue_size", 500)
        assert most_queued[0] > 1
        assert most_queued[0] <= bound + min(32, max(1, bound // 8)) + 256, most_queued[0]
        if "max_queue_bytes" in limits:
            # 4 KiB holds a handful of these payloads, not hundreds
            assert most_queued[0] < 100, most_queued[0]
        client.stop()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())


def test_drop_policies_still_drop_when_asked(connector: Connector) -> None:
    async def main() -> None:
        release = asyncio.Event()
        seen: List[str] = []

        async def stuck(p: ActionsPayload) -> None:
            seen.append(p.session_id or "")
            await release.wait()

        client = AsyncConnectorClient(
            connector.url, connector.key, max_queue_size=10, overflow_policy="drop_newest"
        )
        client.on_actions(stuck)
        task = client.run_in_background()
        await asyncio.sleep(0.3)
        await asyncio.to_thread(connector.post_batches, 1000)
        assert await wait_until(lambda: client.dropped_count > 0)
        release.set()
        assert await wait_until(lambda: len(seen) + client.dropped_count == 1000), (
            len(seen),
            client.dropped_count,
        )
        client.stop()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
