"""ConnectorClient against the real connector: delivery, fatal statuses, reconnect,
drops, back-pressure, callbacks that raise, logging, stop/with/background."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any, List, Tuple

import pytest

from autoplay_sdk import (
    ActionsPayload,
    ConnectorClient,
    FatalStatusError,
    InvalidConfigError,
    RetriesExhaustedError,
    SdkError,
    SummaryPayload,
)

from conftest import Connector, wait_for


def test_delivers_typed_payloads_in_order(connector: Connector) -> None:
    got: List[ActionsPayload] = []
    client = ConnectorClient(url=connector.url, token=connector.key).on_actions(got.append)
    thread = client.run_in_background()
    assert isinstance(thread, threading.Thread) and thread.daemon
    time.sleep(0.2)
    for i in range(5):
        connector.post_actions(f"ps_{i}", n=2)
    assert wait_for(lambda: len(got) == 5)
    assert [p.session_id for p in got] == [f"ps_{i}" for i in range(5)]
    assert got[0].count == 2 and got[0].actions[1].title == "Dashboard 1"
    assert got[0].product_id == "test"
    client.stop()
    thread.join(5)
    assert not thread.is_alive()


def test_summaries_from_the_connector(summarising_connector: Connector) -> None:
    c = summarising_connector
    summaries: List[SummaryPayload] = []
    client = ConnectorClient(url=c.url, token=c.key).on_summary(summaries.append)
    with client:
        client.run_in_background()
        time.sleep(0.2)
        c.post_actions("ps_sum", n=3)
        assert wait_for(lambda: len(summaries) >= 1)
    assert summaries[0].session_id == "ps_sum"
    assert summaries[0].replaces == 3
    assert summaries[0].to_text() == summaries[0].summary != ""


@pytest.mark.parametrize(
    "mutate,status",
    [(lambda c: (c.url, "wrong_key"), 401), (lambda c: (c.url.replace("/test", "/nope"), c.key), 404)],
)
def test_fatal_status_raises_at_once(connector: Connector, mutate: Any, status: int) -> None:
    url, token = mutate(connector)
    client = ConnectorClient(url=url, token=token)
    start = time.monotonic()
    with pytest.raises(FatalStatusError) as info:
        client.run()
    assert time.monotonic() - start < 2
    assert isinstance(info.value, SdkError)
    assert info.value.status_code == status
    assert str(status) in str(info.value)


def test_invalid_options_raise_value_errors() -> None:
    with pytest.raises(InvalidConfigError):
        ConnectorClient("not a url")
    with pytest.raises(ValueError):
        ConnectorClient("http://127.0.0.1:1/stream/x", max_queue_size=0)
    with pytest.raises(ValueError):
        ConnectorClient("http://127.0.0.1:1/stream/x", overflow_policy="sometimes")


def test_reconnects_across_a_connector_restart(connector: Connector) -> None:
    got: List[str] = []
    connects: List[str] = []
    disconnects: List[str] = []
    client = ConnectorClient(
        url=connector.url,
        token=connector.key,
        initial_backoff_s=0.05,
        max_backoff_s=0.2,
        on_connect=connects.append,
        on_disconnect=disconnects.append,
    ).on_actions(lambda p: got.append(p.session_id))
    client.run_in_background()
    assert wait_for(lambda: len(connects) == 1)
    connector.post_actions("before")
    assert wait_for(lambda: got == ["before"])
    connector.restart()
    assert wait_for(lambda: len(connects) == 2), "did not reconnect"
    connector.post_actions("after")
    assert wait_for(lambda: got == ["before", "after"])
    assert len(disconnects) >= 1
    client.stop()


def test_on_retry_reports_attempt_delay_and_reason() -> None:
    # A port nobody listens on: every attempt fails to connect.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    retries: List[Tuple[int, float, str]] = []
    client = ConnectorClient(
        url=f"http://127.0.0.1:{port}/stream/acme",
        token="k",
        initial_backoff_s=0.01,
        max_backoff_s=0.05,
        max_retries=2,
        on_retry=lambda attempt, delay_s, reason: retries.append((attempt, delay_s, reason)),
    )
    with pytest.raises(RetriesExhaustedError):
        client.run()
    assert [attempt for attempt, _, _ in retries] == [1, 2]
    assert all(0 <= delay <= 0.05 for _, delay, _ in retries), retries
    assert all("Connection refused" in reason or "connect" in reason for _, _, reason in retries), retries


def test_on_retry_must_be_callable() -> None:
    with pytest.raises(InvalidConfigError, match="on_retry must be callable"):
        ConnectorClient(url="http://127.0.0.1:9/stream/acme", on_retry=42)


def test_drops_under_a_slow_callback(connector: Connector) -> None:
    handled: List[str] = []
    drops: List[Tuple[dict, int]] = []

    def slow(payload: ActionsPayload) -> None:
        time.sleep(0.02)
        handled.append(payload.session_id or "")

    client = (
        ConnectorClient(url=connector.url, token=connector.key, max_queue_size=10)
        .on_actions(slow)
        .on_drop(lambda payload, total: drops.append((payload, total)))
    )
    client.run_in_background()
    time.sleep(0.2)
    connector.post_batches(200)
    assert wait_for(lambda: len(handled) + client.dropped_count == 200, timeout=20)
    assert client.dropped_count > 0
    assert wait_for(lambda: len(drops) == client.dropped_count)
    assert drops[0][0]["type"] == "actions"
    assert drops[-1][1] == client.dropped_count
    assert [total for _, total in drops] == sorted(total for _, total in drops)
    assert client.queue_size <= 10
    client.stop()


def test_block_policy_loses_nothing(connector: Connector) -> None:
    handled: List[str] = []

    def slow(payload: ActionsPayload) -> None:
        time.sleep(0.002)
        handled.append(payload.session_id or "")

    client = ConnectorClient(
        url=connector.url, token=connector.key, max_queue_size=5, overflow_policy="block"
    ).on_actions(slow)
    client.run_in_background()
    time.sleep(0.2)
    connector.post_batches(300)
    assert wait_for(lambda: len(handled) == 300, timeout=20)
    assert client.dropped_count == 0
    assert handled == [f"ps_{i}" for i in range(300)]
    client.stop()


def test_workers_keep_sessions_in_order(connector: Connector) -> None:
    seen: List[Tuple[str, str]] = []
    lock = threading.Lock()

    def cb(p: ActionsPayload) -> None:
        time.sleep(0.001)
        with lock:
            seen.append((p.session_id or "", p.actions[0].title))

    client = ConnectorClient(url=connector.url, token=connector.key, workers=4,
                             overflow_policy="block").on_actions(cb)
    client.run_in_background()
    time.sleep(0.2)
    for i in range(20):
        connector.post([{"session_id": f"s{j}", "actions": [{"title": f"t{i}"}]} for j in range(4)])
    assert wait_for(lambda: len(seen) == 80, timeout=20)
    for j in range(4):
        assert [t for s, t in seen if s == f"s{j}"] == [f"t{i}" for i in range(20)]
    client.stop()


def test_raising_callback_is_logged_and_the_stream_goes_on(
    connector: Connector, caplog: pytest.LogCaptureFixture
) -> None:
    got: List[str] = []

    def flaky(payload: ActionsPayload) -> None:
        if payload.session_id == "boom":
            raise ValueError("kaboom")
        got.append(payload.session_id or "")

    caplog.set_level(logging.INFO, logger="autoplay_sdk")
    client = ConnectorClient(url=connector.url, token=connector.key).on_actions(flaky)
    client.run_in_background()
    time.sleep(0.2)
    connector.post_actions("boom")
    connector.post_actions("fine")
    assert wait_for(lambda: got == ["fine"])
    client.stop()
    errors = [r for r in caplog.records if r.name == "autoplay_sdk" and r.levelno == logging.ERROR]
    assert errors, caplog.text
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is ValueError
    assert "kaboom" in caplog.text and "Traceback" in caplog.text
    # the core's own records come through Python logging too
    assert any("connected" in r.getMessage() for r in caplog.records if r.name == "autoplay_sdk")


def test_stop_inside_a_callback_and_run_returns(connector: Connector) -> None:
    got: List[str] = []
    client = ConnectorClient(url=connector.url, token=connector.key)

    def cb(p: ActionsPayload) -> None:
        got.append(p.session_id or "")
        client.stop()

    client.on_actions(cb)
    t = threading.Timer(0.3, lambda: connector.post_actions("only"))
    t.start()
    start = time.monotonic()
    client.run()  # returns after stop() inside the callback
    assert got == ["only"]
    assert time.monotonic() - start < 5


def test_stop_returns_once_the_queued_events_are_handled(connector: Connector) -> None:
    handled: List[str] = []
    started = threading.Event()

    def slow(p: ActionsPayload) -> None:
        started.set()
        time.sleep(0.02)
        handled.append(p.session_id or "")

    connected = threading.Event()
    client = ConnectorClient(url=connector.url, token=connector.key, on_connect=connected.set)
    thread = client.on_actions(slow).run_in_background()
    assert connected.wait(10)
    connector.post_batches(40)
    assert started.wait(10)
    # All read and queued (stop() ends the reader: what is still on the wire stays there).
    assert wait_for(lambda: client.queue_size + len(handled) >= 39)
    client.stop()
    # Everything queued was handled before stop() returned, and the run is over.
    assert len(handled) == 40
    thread.join(1)
    assert not thread.is_alive()


def test_stop_is_bounded_by_the_drain_timeout(connector: Connector) -> None:
    handled: List[str] = []
    started = threading.Event()

    def slow(p: ActionsPayload) -> None:
        started.set()
        time.sleep(0.05)
        handled.append(p.session_id or "")

    connected = threading.Event()
    client = ConnectorClient(url=connector.url, token=connector.key, drain_timeout_s=0.2,
                             on_connect=connected.set)
    thread = client.on_actions(slow).run_in_background()
    assert connected.wait(10)
    connector.post_batches(60)
    assert started.wait(10)
    assert wait_for(lambda: client.queue_size + len(handled) >= 50)
    begun = time.monotonic()
    client.stop()
    assert time.monotonic() - begun < 1.0
    assert len(handled) < 60
    thread.join(1)
    assert not thread.is_alive()


def test_stop_from_a_hook_on_the_reader_thread_does_not_wait_for_itself(
    connector: Connector,
) -> None:
    client: ConnectorClient

    def on_connect() -> None:
        client.stop()

    client = ConnectorClient(url=connector.url, token=connector.key, on_connect=on_connect)
    begun = time.monotonic()
    client.run()
    assert time.monotonic() - begun < 2


def test_stop_before_run_in_background_thread_starts(connector: Connector) -> None:
    with ConnectorClient(url=connector.url, token=connector.key) as client:
        thread = client.run_in_background()
    thread.join(3)
    assert not thread.is_alive()


def test_gil_is_free_while_streaming(connector: Connector) -> None:
    """The reader and parser do not hold the GIL: Python threads keep running at speed."""
    count = [0]
    client = ConnectorClient(url=connector.url, token=connector.key).on_actions(lambda p: None)
    client.run_in_background()
    time.sleep(0.2)
    stop = time.monotonic() + 0.5
    connector.post_batches(500)
    while time.monotonic() < stop:
        count[0] += 1
    assert count[0] > 10_000
    client.stop()


def test_debug_logging_reaches_python(connector: Connector, caplog: pytest.LogCaptureFixture) -> None:
    """The page's `logging.getLogger("autoplay_sdk").setLevel(logging.DEBUG)` works."""
    logging.getLogger("autoplay_sdk").setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG, logger="autoplay_sdk"):
            connects: List[str] = []
            client = ConnectorClient(url=connector.url, token=connector.key, on_connect=connects.append)
            client.run_in_background()
            assert wait_for(lambda: len(connects) == 1)
            client.stop()
            time.sleep(0.2)
        debug = [r for r in caplog.records if r.name == "autoplay_sdk" and r.levelno == logging.DEBUG]
        assert any("connecting" in r.getMessage() for r in debug), caplog.text
        assert connector.key not in caplog.text  # the token is never logged
    finally:
        logging.getLogger("autoplay_sdk").setLevel(logging.NOTSET)
