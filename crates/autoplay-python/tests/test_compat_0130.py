"""0.13.0's streaming API, one name and behaviour at a time: the payload models as its
dataclasses, its module paths and error names, its `to_text()` lines one switch
away, and the sync client's 0.13.0 options, async callbacks, metrics hook,
`on_disconnect` after failed attempts and `run()` after `stop()`, against the real
connector."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import importlib
import json
import logging
import pickle
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest

import autoplay_sdk
from autoplay_sdk import (
    ActionsPayload,
    AsyncConnectorClient,
    ConnectorClient,
    RetriesExhaustedError,
    SdkUpstreamError,
    SlimAction,
    SummaryPayload,
    set_text_style,
)

from conftest import WIRE_FIXTURES, Connector, SseServer, free_port, wait_for

# ---------------------------------------------------------------------------
# models


def test_constructors_take_0_13s_positional_order() -> None:
    a = SlimAction("Export", "Clicked Export", "/dash", 2, "click", 1.5, 2.5, "/dash?x=1", "s", "u", "e@x", "c")
    assert (a.title, a.description, a.canonical_url, a.index, a.type) == ("Export", "Clicked Export", "/dash", 2, "click")
    assert (a.timestamp_start, a.timestamp_end, a.raw_url) == (1.5, 2.5, "/dash?x=1")
    assert (a.session_id, a.user_id, a.email, a.conversation_id) == ("s", "u", "e@x", "c")
    assert a.event_type == "click"  # one field, two names
    p = ActionsPayload("prod", "s", "u", "e@x", [a], 1, 9.5, "conv")
    assert (p.product_id, p.session_id, p.user_id, p.email, p.count, p.forwarded_at, p.conversation_id) == (
        "prod", "s", "u", "e@x", 1, 9.5, "conv")
    assert p.actions == [a]
    s = SummaryPayload("prod", "s", "Did things.", 4, 9.5)
    assert (s.product_id, s.session_id, s.summary, s.replaces, s.forwarded_at) == ("prod", "s", "Did things.", 4, 9.5)
    # and the same by keyword
    assert ActionsPayload(product_id="prod", session_id="s", user_id="u", email="e@x", actions=[a], count=1,
                          forwarded_at=9.5, conversation_id="conv") == p
    assert SummaryPayload(product_id="prod", session_id="s", summary="Did things.", replaces=4, forwarded_at=9.5) == s
    assert SlimAction(title="T", event_type="click") == SlimAction(title="T", type="click")
    with pytest.raises(ValueError):
        SlimAction(type="click", event_type="pageview")


def test_0_13s_defaults_for_missing_fields() -> None:
    a = SlimAction.from_dict({"title": "T"})
    assert (a.index, a.type, a.timestamp_start, a.timestamp_end, a.raw_url) == (0, "", 0.0, 0.0, "")
    assert (a.session_id, a.user_id, a.email, a.conversation_id) == (None, None, None, None)
    p = ActionsPayload.from_dict({"actions": [{"title": "T"}]})
    assert (p.product_id, p.session_id, p.forwarded_at, p.count, p.conversation_id) == ("", None, 0.0, 1, None)
    s = SummaryPayload.from_dict({"summary": "x"})
    assert (s.product_id, s.session_id, s.replaces, s.forwarded_at) == ("", None, 0, 0.0)
    # what a getter shows is what `==` compares: absent and default are equal
    assert SlimAction(title="T", index=0, raw_url="") == a
    assert ActionsPayload(product_id="", actions=[a], forwarded_at=0.0) == p


def test_dataclass_functions_work_on_the_models() -> None:
    a = SlimAction("Export", "Clicked Export", "/dash", 2, "click")
    p = ActionsPayload("prod", "s", None, None, [a], 1, 9.5)
    s = SummaryPayload("prod", "s", "Did things.", 4, 9.5)
    for obj in (a, p, s):
        assert dataclasses.is_dataclass(obj)
    assert [f.name for f in dataclasses.fields(SlimAction)][:12] == [
        "title", "description", "canonical_url", "index", "type", "timestamp_start", "timestamp_end",
        "raw_url", "session_id", "user_id", "email", "conversation_id"]
    assert [f.name for f in dataclasses.fields(p)][:8] == [
        "product_id", "session_id", "user_id", "email", "actions", "count", "forwarded_at", "conversation_id"]
    assert [f.name for f in dataclasses.fields(s)][:5] == ["product_id", "session_id", "summary", "replaces", "forwarded_at"]

    b = dataclasses.replace(a, title="Import", index=3)
    assert (b.title, b.index, b.description, b.type) == ("Import", 3, "Clicked Export", "click")
    assert a.title == "Export"  # a new object
    assert dataclasses.replace(a) == a and dataclasses.replace(p) == p and dataclasses.replace(s) == s
    q = dataclasses.replace(p, session_id="s2", actions=[a, b])
    assert (q.session_id, q.count, [x.title for x in q.actions]) == ("s2", 2, ["Export", "Import"])

    d = dataclasses.asdict(p)
    assert d["product_id"] == "prod" and d["count"] == 1 and d["forwarded_at"] == 9.5
    assert d["actions"][0]["title"] == "Export" and d["actions"][0]["type"] == "click" and d["actions"][0]["index"] == 2
    assert dataclasses.astuple(s)[:5] == ("prod", "s", "Did things.", 4, 9.5)
    assert copy.copy(p) == p and copy.deepcopy(p) == p and copy.copy(p) is not p
    for obj in (a, dataclasses.replace(p, conversation_id="c"), s):
        assert pickle.loads(pickle.dumps(obj)) == obj
    match s:
        case SummaryPayload(product_id, session_id, summary):
            assert (product_id, session_id, summary) == ("prod", "s", "Did things.")


def test_fields_are_assignable() -> None:
    a = SlimAction(title="T")
    a.title, a.type, a.index, a.raw_url, a.conversation_id = "U", "click", 7, "/r", "c"
    assert (a.title, a.event_type, a.index, a.raw_url, a.conversation_id) == ("U", "click", 7, "/r", "c")
    a.properties = {"k": 1}
    assert a.properties == {"k": 1}
    p = ActionsPayload(session_id="s")
    p.session_id, p.email, p.product_id, p.forwarded_at, p.conversation_id = "s2", "e@x", "prod", 3.0, "c"
    p.actions = [a, {"title": "V"}]
    assert (p.session_id, p.email, p.product_id, p.forwarded_at, p.conversation_id) == ("s2", "e@x", "prod", 3.0, "c")
    assert p.count == 2 and p.actions[1].title == "V"
    assert p.to_dict()["conversation_id"] == "c"
    with pytest.raises(AttributeError):
        p.count = 5  # type: ignore[misc]  # it is len(actions), always
    s = SummaryPayload(summary="x")
    s.summary, s.replaces = "y", 2
    assert (s.summary, s.content, s.replaces) == ("y", "y", 2)
    assert s != SummaryPayload(summary="x") and a != SlimAction(title="T")
    with pytest.raises(TypeError):
        hash(a)  # as a dataclass with eq and no frozen


def test_merge_as_0_13() -> None:
    a = ActionsPayload("prod", "s", None, None, [SlimAction("A", "a", "/a", 5), SlimAction("B", "b", "/b", 6)], 2, 10.0)
    b = ActionsPayload("other", "s", "u", "e@x", [SlimAction("C", "c", "/c", 0)], 1, 12.0, "conv")
    c = ActionsPayload("prod", "s", "u2", None, [], 0, 11.0)
    m = ActionsPayload.merge([a, b, c])
    assert [x.title for x in m.actions] == ["A", "B", "C"]
    assert [x.index for x in m.actions] == [0, 1, 2]  # re-indexed from 0
    assert (m.product_id, m.session_id, m.user_id, m.email, m.conversation_id) == ("prod", "s", "u", "e@x", "conv")
    assert m.forwarded_at == 12.0 and m.count == 3
    with pytest.raises(ValueError):
        ActionsPayload.merge([])


def test_a_payload_level_conversation_id_on_the_wire_arrives_in_python(sse: Any) -> None:
    # 0.13.0 reads `conversation_id` at the top of the actions payload; the core
    # decodes it, so it reaches both clients' payloads, to_dict and pickles.
    canonical = json.loads((WIRE_FIXTURES / "actions-canonical.json").read_text())
    linked = json.dumps(dict(canonical, session_id="ps_linked", conversation_id="conv_42"))
    unlinked = json.dumps(dict(canonical, session_id="ps_unlinked"))
    script = (f"id: 1\nevent: actions\ndata: {linked}\n\n"
              f"id: 2\nevent: actions\ndata: {unlinked}\n\n").encode() + SseServer.HOLD
    server = sse(script)

    got: List[ActionsPayload] = []
    client = ConnectorClient(server.url, token="k")
    client.on_actions(got.append)
    thread = client.run_in_background()
    assert wait_for(lambda: len(got) == 2), got
    client.stop()
    thread.join(5)
    assert [(p.session_id, p.conversation_id) for p in got] == [("ps_linked", "conv_42"), ("ps_unlinked", None)]
    assert got[0].to_dict()["conversation_id"] == "conv_42"
    assert "conversation_id" not in got[1].to_dict()
    assert pickle.loads(pickle.dumps(got[0])) == got[0]
    assert got[0] != got[1] and dataclasses.replace(got[1], conversation_id="conv_42").conversation_id == "conv_42"

    async def main() -> List[Optional[str]]:
        ids: List[Optional[str]] = []
        aclient = AsyncConnectorClient(server.url, token="k")
        async for payload in aclient.events():
            if isinstance(payload, ActionsPayload):
                ids.append(payload.conversation_id)
            if len(ids) == 2:
                break
        return ids

    assert asyncio.run(asyncio.wait_for(main(), 10)) == ["conv_42", None]


def test_to_text_keeps_the_page_lines_with_0_13s_one_switch_away() -> None:
    p = ActionsPayload.from_dict({"session_id": "ps_1", "actions": [
        {"index": 0, "type": "pageview", "title": "Dashboard", "description": "User landed on the Dashboard",
         "canonical_url": "https://app.example.com/dashboard"},
        {"index": 1, "type": "click", "title": "Export", "description": "User clicked Export CSV",
         "canonical_url": "https://app.example.com/dashboard"}]})
    page = ("Session ps_1 \u2014 2 actions\n"
            "1. User landed on the Dashboard \u2014 https://app.example.com/dashboard\n"
            "2. User clicked Export CSV \u2014 https://app.example.com/dashboard")
    indexed = ("Session ps_1 \u2014 2 actions\n"
               "[0] pageview: User landed on the Dashboard \u2014 https://app.example.com/dashboard\n"
               "[1] click: User clicked Export CSV \u2014 https://app.example.com/dashboard")
    assert p.to_text() == page
    assert p.to_text(style="indexed") == indexed
    assert p.actions[1].to_text(style="indexed") == "[1] click: User clicked Export CSV \u2014 https://app.example.com/dashboard"
    try:
        set_text_style("indexed")
        assert p.to_text() == indexed and p.to_text(style="numbered") == page
    finally:
        set_text_style("numbered")
    assert p.to_text() == page
    with pytest.raises(ValueError):
        p.to_text(style="fancy")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# module paths and error names


@pytest.mark.parametrize(
    "module,names",
    [
        ("autoplay_sdk.client", ["ConnectorClient"]),
        ("autoplay_sdk.async_client", ["AsyncConnectorClient"]),
        ("autoplay_sdk.models", ["ActionsPayload", "SummaryPayload", "SlimAction", "AnyPayload"]),
        ("autoplay_sdk.core", ["ActionsPayload", "SummaryPayload", "SlimAction", "AnyPayload", "SdkError",
                               "SdkConfigError", "SdkUpstreamError", "SdkBufferFullError", "SdkMetricsHook"]),
        ("autoplay_sdk.core.models", ["ActionsPayload", "SummaryPayload", "SlimAction", "AnyPayload"]),
        ("autoplay_sdk.core.exceptions", ["SdkError", "SdkConfigError", "SdkUpstreamError", "SdkBufferFullError"]),
        ("autoplay_sdk.core.metrics", ["SdkMetricsHook"]),
        ("autoplay_sdk.metrics", ["SdkMetricsHook"]),
    ],
)
def test_0_13_module_paths_hold_the_same_objects(module: str, names: List[str]) -> None:
    mod = importlib.import_module(module)
    for name in names:
        assert getattr(mod, name) is getattr(autoplay_sdk, name), (module, name)


def test_a_config_error_is_both_spellings() -> None:
    from autoplay_sdk.core.exceptions import SdkConfigError, SdkError
    with pytest.raises(SdkConfigError) as info:
        ConnectorClient("http://127.0.0.1:1/stream/x", max_queue_size=0)
    assert isinstance(info.value, ValueError) and isinstance(info.value, SdkError)


def test_metrics_hook_protocol_is_runtime_checkable() -> None:
    from autoplay_sdk.core.metrics import SdkMetricsHook

    class Full:
        def record_event_dropped(self, *, reason: str, event_type: str, session_id: Optional[str], product_id: Optional[str]) -> None: ...
        def record_summarizer_latency(self, *, session_id: str, elapsed_ms: float, action_count: int) -> None: ...
        def record_redis_operation(self, *, operation: str, elapsed_ms: float, success: bool) -> None: ...
        def record_queue_depth(self, *, depth: int) -> None: ...
        def record_semaphore_timeout(self, *, session_id: Optional[str], product_id: Optional[str]) -> None: ...

    assert isinstance(Full(), SdkMetricsHook)
    assert not isinstance(object(), SdkMetricsHook)


# ---------------------------------------------------------------------------
# the sync client


def test_constructor_takes_0_13s_positional_options(connector: Connector) -> None:
    connected: List[str] = []
    got: List[ActionsPayload] = []
    client = ConnectorClient(connector.url, connector.key, 10, 5.0, None, 0.5, 2.0, 3,
                             lambda: connected.append("up"), None, None).on_actions(got.append)
    thread = client.run_in_background()
    assert wait_for(lambda: connected == ["up"])
    connector.post_actions("ps_pos")
    assert wait_for(lambda: len(got) == 1)
    assert repr(client) == f"ConnectorClient(url={connector.url!r}, running=True, dropped=0)"  # 0.13.0's repr
    client.stop()
    thread.join(5)
    assert got[0].session_id == "ps_pos"
    assert repr(client) == f"ConnectorClient(url={connector.url!r}, running=False, dropped=0)"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_queue_size": 0},
        {"max_queue_size": -1},
        {"connect_timeout": 0},
        {"connect_timeout": -1.0},
        {"read_timeout_s": 0},
        {"initial_backoff_s": 0},
        {"initial_backoff_s": 2.0, "max_backoff_s": 1.0},
        {"max_retries": -1},
    ],
)
def test_bad_values_raise_value_error(kwargs: Dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ConnectorClient("http://127.0.0.1:1/stream/x", **kwargs)


def test_an_async_def_callback_runs_on_the_workers_own_loop(connector: Connector) -> None:
    loops: List[asyncio.AbstractEventLoop] = []
    seen: List[str] = []

    async def on_actions(payload: ActionsPayload) -> None:
        await asyncio.sleep(0.001)
        loops.append(asyncio.get_running_loop())
        seen.append(payload.session_id or "")

    async def on_summary(payload: SummaryPayload) -> None:
        pass

    client = ConnectorClient(url=connector.url, token=connector.key, on_connect=lambda: seen.append("up"))
    client.on_actions(on_actions).on_summary(on_summary)
    thread = client.run_in_background()
    assert wait_for(lambda: seen == ["up"])
    connector.post_batches(20)
    assert wait_for(lambda: len(seen) == 21)
    client.stop()
    thread.join(5)
    assert seen[1:] == [f"ps_{i}" for i in range(20)]  # each coroutine ran to its end, in order
    assert len({id(loop) for loop in loops}) == 1  # one loop for the worker, not one per event
    assert loops[0].is_closed()  # closed when the run ended


def test_an_async_callback_that_raises_is_logged_and_the_stream_goes_on(
    connector: Connector, caplog: pytest.LogCaptureFixture
) -> None:
    seen: List[str] = []

    async def on_actions(payload: ActionsPayload) -> None:
        if payload.session_id == "ps_0":
            raise RuntimeError("boom in a coroutine")
        seen.append(payload.session_id or "")

    client = ConnectorClient(url=connector.url, token=connector.key, on_connect=lambda: seen.append("up"))
    client.on_actions(on_actions)
    with caplog.at_level(logging.ERROR, logger="autoplay_sdk"):
        thread = client.run_in_background()
        assert wait_for(lambda: seen == ["up"])
        connector.post_batches(2)
        assert wait_for(lambda: len(seen) == 2)
        client.stop()
        thread.join(5)
    assert seen == ["up", "ps_1"]
    assert any("boom in a coroutine" in (r.exc_text or "") + str(r.exc_info) for r in caplog.records)


def test_on_disconnect_also_after_failed_attempts() -> None:
    port = free_port()  # nothing listens there: every attempt fails before a stream
    reasons: List[str] = []
    client = ConnectorClient(f"http://127.0.0.1:{port}/stream/x", "k", initial_backoff_s=0.01, max_backoff_s=0.02,
                             max_retries=2, on_disconnect=reasons.append)
    with pytest.raises(RetriesExhaustedError) as info:
        client.run()
    assert isinstance(info.value, SdkUpstreamError)
    # one call per failed attempt, the last (the one that exhausted the retries) too
    assert len(reasons) == info.value.attempts >= 2, reasons
    assert all("request failed" in r for r in reasons), reasons
    # a hook without an argument, as 0.13.0's `() -> None`
    count: List[int] = []
    client = ConnectorClient(f"http://127.0.0.1:{port}/stream/x", "k", initial_backoff_s=0.01, max_backoff_s=0.02,
                             max_retries=1, on_disconnect=lambda: count.append(1))
    with pytest.raises(RetriesExhaustedError) as info:
        client.run()
    assert len(count) == info.value.attempts


def test_on_disconnect_once_when_an_established_stream_ends(connector: Connector) -> None:
    events: List[str] = []
    client = ConnectorClient(url=connector.url, token=connector.key, initial_backoff_s=0.05, max_backoff_s=0.1,
                             on_connect=lambda: events.append("connect"), on_disconnect=lambda: events.append("disconnect"))
    thread = client.run_in_background()
    assert wait_for(lambda: events == ["connect"])
    connector.restart()
    assert wait_for(lambda: events.count("connect") == 2, timeout=15), events
    client.stop()
    thread.join(5)
    # connect, disconnect (the stream ended), [failed attempts while it was down], connect, disconnect (stop)
    assert events[0] == "connect" and events[1] == "disconnect" and events[-1] == "disconnect"
    assert events.count("connect") == 2


def test_run_again_after_stop_reconnects(connector: Connector) -> None:
    connects: List[int] = []
    got: List[str] = []
    client = ConnectorClient(url=connector.url, token=connector.key, on_connect=lambda: connects.append(1))
    client.on_actions(lambda p: got.append(p.session_id or ""))
    for round_ in range(2):
        thread = client.run_in_background()
        assert wait_for(lambda: len(connects) == round_ + 1)
        connector.post_actions(f"ps_round{round_}")
        assert wait_for(lambda: len(got) == round_ + 1)
        client.stop()
        thread.join(5)
        assert not thread.is_alive()
    assert got == ["ps_round0", "ps_round1"]
    # the same with run() on this thread, stopped from a callback
    client = ConnectorClient(url=connector.url, token=connector.key)
    client.on_actions(lambda p: (got.append(p.session_id or ""), client.stop()))
    for round_ in range(2):
        poster = threading.Thread(target=lambda: (time.sleep(0.3), connector.post_actions(f"ps_fg{round_}")))
        poster.start()
        client.run()
        poster.join()
    assert got[2:] == ["ps_fg0", "ps_fg1"]


def test_metrics_hook_is_told_drops_and_queue_depth(connector: Connector) -> None:
    dropped: List[Tuple[str, str, Optional[str], Optional[str]]] = []
    depths: List[int] = []
    seen: List[int] = []

    class Metrics:
        def record_event_dropped(self, *, reason: str, event_type: str, session_id: Optional[str],
                                 product_id: Optional[str]) -> None:
            dropped.append((reason, event_type, session_id, product_id))

        def record_queue_depth(self, *, depth: int) -> None:
            depths.append(depth)
            raise RuntimeError("a broken metrics backend never stops the stream")

    def slow(payload: ActionsPayload) -> None:
        time.sleep(0.01)
        seen.append(1)

    client = ConnectorClient(connector.url, connector.key, 5, metrics=Metrics(), on_connect=lambda: seen.append(0))
    client.on_actions(slow)
    thread = client.run_in_background()
    assert wait_for(lambda: seen == [0])
    connector.post_batches(200)
    assert wait_for(lambda: len(dropped) > 0 and len(seen) - 1 + client.dropped_count >= 200, timeout=20)
    client.stop()
    thread.join(5)
    assert len(dropped) == client.dropped_count > 0
    assert dropped[0][0] == "queue_full" and dropped[0][1] == "actions" and dropped[0][3] == "test"
    assert dropped[0][2] is not None and dropped[0][2].startswith("ps_")
    assert len(depths) == len(seen) - 1  # once per payload handed to the callback
    assert 0 <= max(depths) < 200  # the core counts the batch being handed out whole
