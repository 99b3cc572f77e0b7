"""The engine's limits as keyword arguments of both clients (`max_queue_bytes`,
`max_server_delay_s`, `backoff_reset_after_s`, `max_id_len`) and `oversized_count`,
against a raw SSE server on 127.0.0.1 written here (for streams the connector never
sends: an oversized event, a long id, a huge `retry:`) and the real connector."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest

from autoplay_sdk import (
    ActionsPayload,
    AsyncConnectorClient,
    ConnectorClient,
    InvalidConfigError,
)

from conftest import WIRE_FIXTURES, Connector, SseServer, wait_for

CANONICAL: Dict[str, Any] = json.loads((WIRE_FIXTURES / "actions-canonical.json").read_text())


def frame(session_id: str, event_id: Optional[str] = None) -> bytes:
    """One actions event as the connector frames it."""
    data = json.dumps(dict(CANONICAL, session_id=session_id))
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: actions\ndata: {data}\n\n".encode()


def oversized_then_normal() -> bytes:
    # 64 KiB of data in one event, over max_event_size=4096, then five normal events.
    big = b"id: big\nevent: actions\ndata: " + b"x" * 65536 + b"\n\n"
    return big + b"".join(frame(f"ps_{i}", str(i)) for i in range(5)) + SseServer.HOLD


def test_an_oversized_event_is_skipped_counted_and_the_rest_delivered(sse: Any) -> None:
    server = sse(oversized_then_normal())
    got: List[str] = []
    client = ConnectorClient(server.url, token="k", max_event_size=4096)
    client.on_actions(lambda p: got.append(p.session_id or ""))
    assert client.oversized_count == 0
    thread = client.run_in_background()
    assert wait_for(lambda: len(got) == 5), got
    assert got == [f"ps_{i}" for i in range(5)]
    assert client.oversized_count == 1
    assert len(server.requests) == 1, "the oversized event did not cost the connection"
    client.stop()
    thread.join(5)
    assert client.oversized_count == 1, "the count of the last run stays readable"


def test_the_async_client_counts_oversized_events_too(sse: Any) -> None:
    server = sse(oversized_then_normal())

    async def main() -> Tuple[List[str], int]:
        client = AsyncConnectorClient(server.url, "k", max_event_size=4096)
        got: List[str] = []
        async for payload in client.events():
            got.append(payload.session_id or "")
            if len(got) == 5:
                break
        return got, client.oversized_count

    got, oversized = asyncio.run(asyncio.wait_for(main(), 10))
    assert got == [f"ps_{i}" for i in range(5)]
    assert oversized == 1
    assert len(server.requests) == 1


def last_event_id_after_a_long_id(sse: Any, **options: Any) -> Optional[str]:
    """The Last-Event-ID of the reconnection after a stream whose last id is 100 bytes."""
    long_id = "L" * 100
    server = sse(frame("ps_a", "1") + frame("ps_b", long_id), SseServer.HOLD)
    got: List[str] = []
    client = ConnectorClient(server.url, token="k", initial_backoff_s=0.01, **options)
    client.on_actions(lambda p: got.append(p.session_id or ""))
    thread = client.run_in_background()
    assert wait_for(lambda: len(server.requests) >= 2)
    client.stop()
    thread.join(5)
    assert got == ["ps_a", "ps_b"], "an event whose id is ignored is still delivered"
    return server.requests[1].get("last-event-id")


def test_max_id_len_ignores_longer_ids(sse: Any) -> None:
    assert last_event_id_after_a_long_id(sse) == "L" * 100  # the default bound: 4096
    assert last_event_id_after_a_long_id(sse, max_id_len=10) == "1"


def test_max_server_delay_caps_the_servers_retry(sse: Any) -> None:
    # The server asks for a 60 s reconnection time, then drops the stream.
    server = sse(b"retry: 60000\n\n" + frame("ps_a", "1"), SseServer.HOLD)
    delays: List[float] = []
    client = ConnectorClient(
        server.url, token="k", initial_backoff_s=0.01, max_server_delay_s=0.2,
        on_retry=lambda attempt, delay_s, reason: delays.append(delay_s),
    )
    thread = client.run_in_background()
    started = time.monotonic()
    assert wait_for(lambda: len(server.requests) >= 2, timeout=10)
    elapsed = time.monotonic() - started
    client.stop()
    thread.join(5)
    assert len(delays) == 1
    # The capped retry is the minimum; jitter only adds, up to half of it.
    assert 0.199 <= delays[0] <= 0.301, delays
    assert elapsed < 5


def retry_delays(sse: Any, **options: Any) -> List[float]:
    """The first six reconnection delays against a server that sends one event per
    connection and drops it."""
    server = sse(frame("ps_a"))
    delays: List[float] = []
    client = ConnectorClient(
        server.url, token="k", initial_backoff_s=0.01, max_backoff_s=10.0,
        on_retry=lambda attempt, delay_s, reason: delays.append(delay_s), **options,
    )
    thread = client.run_in_background()
    assert wait_for(lambda: len(delays) >= 6, timeout=20)
    client.stop()
    thread.join(5)
    return delays[:6]


def test_backoff_reset_after_decides_when_the_backoff_starts_again(sse: Any) -> None:
    # By default (60 s) a stream that drops at once does not reset the backoff: it grows.
    growing = retry_delays(sse)
    assert growing[5] >= 0.0099 * 2**5, growing
    # backoff_reset_after_s=0: every established stream resets it to the base.
    flat = retry_delays(sse, backoff_reset_after_s=0.0)
    assert all(0.0099 <= d <= 0.0151 for d in flat), flat


def test_max_queue_bytes_bounds_the_queue_by_bytes(connector: Connector) -> None:
    # A callback held on its first payload: with room for one event's bytes, the
    # others are dropped; by count alone (500) they would all be queued.
    def held(**options: Any) -> Tuple[int, int]:
        release = threading.Event()
        got: List[str] = []

        def on_actions(p: ActionsPayload) -> None:
            got.append(p.session_id or "")
            release.wait(10)

        client = ConnectorClient(connector.url, token=connector.key, overflow_grace_s=0.0, **options)
        client.on_actions(on_actions)
        client_thread = client.run_in_background()
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            connector.post_actions("ps_first")
            time.sleep(0.1)
        assert got, "the first payload arrived"
        connector.post_batches(20)
        time.sleep(0.5)
        dropped = client.dropped_count
        release.set()
        client.stop()
        client_thread.join(10)
        return dropped, len(got)

    dropped, handled = held()
    assert dropped == 0 and handled >= 21, (dropped, handled)
    dropped, handled = held(max_queue_bytes=1)
    assert dropped >= 15 and dropped + handled >= 21, (dropped, handled)


@pytest.mark.parametrize("make", [
    lambda **kw: ConnectorClient("http://127.0.0.1:1/stream/x", **kw),
    lambda **kw: AsyncConnectorClient("http://127.0.0.1:1/stream/x", "k", **kw),
], ids=["sync", "async"])
def test_bad_limits_raise_value_errors_with_the_cores_message(make: Any) -> None:
    for kwargs, message in [
        ({"max_queue_bytes": 0}, "max_queue_bytes must be at least 1 byte"),
        ({"max_queue_bytes": -5}, "max_queue_bytes must be at least 1 byte"),
        ({"max_id_len": 0}, "max_id_len must be at least 1 byte"),
        ({"max_id_len": -1}, "max_id_len must be at least 1 byte"),
        ({"max_server_delay_s": 0.0}, "max_server_delay must be greater than zero"),
        ({"max_server_delay_s": -1.0}, "max_server_delay_s must be a non-negative number of seconds"),
        ({"backoff_reset_after_s": -1.0}, "backoff_reset_after_s must be a non-negative number of seconds"),
        ({"max_server_delay_s": float("nan")}, "max_server_delay_s must be a non-negative number of seconds"),
    ]:
        with pytest.raises(ValueError, match=message) as e:
            make(**kwargs)
        assert isinstance(e.value, InvalidConfigError), kwargs
    make(max_queue_bytes=1, max_id_len=1, max_server_delay_s=0.001, backoff_reset_after_s=0.0)
