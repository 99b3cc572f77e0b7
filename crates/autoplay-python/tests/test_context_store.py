"""ContextStore / AsyncContextStore (0.13.0's autoplay_sdk.context.context_store):
get, enrich, reset, lookback and size bounds, product buckets, summarizer wiring,
and both stores fed by the real connector."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import List

import pytest

from autoplay_sdk import (
    ActionsPayload,
    AsyncConnectorClient,
    ConnectorClient,
    InvalidConfigError,
    SdkConfigError,
    SlimAction,
)
from autoplay_sdk.context import AsyncContextStore as ContextAsyncReexport
from autoplay_sdk.context.context_store import AsyncContextStore, ContextStore, actions_bucket_id
from autoplay_sdk.context.summarizer import AsyncSessionSummarizer, SessionSummarizer

from conftest import Connector, action, wait_for


def payload(session: str, *what: str, product: str | None = None, at: float | None = None) -> ActionsPayload:
    return ActionsPayload(
        session_id=session,
        product_id=product,
        forwarded_at=at if at is not None else time.time(),
        actions=[SlimAction(title=w, description=w, canonical_url=f"/{w}") for w in what],
    )


def test_get_and_enrich_have_0130s_text() -> None:
    store = ContextStore()
    assert store.get("s") == ""
    assert store.enrich("s", "How?") == "How?"
    store.add(payload("s", "a", "b"))
    store.on_summary("s", "The user looked around.")
    assert store.get("s") == (
        "Summary: The user looked around.\n\nRecent activity:\n1. a \u2014 /a\n2. b \u2014 /b"
    )
    assert store.enrich("s", "How?") == f"[Session context]\n{store.get('s')}\n\n[Query]\nHow?"
    assert store.get("s", include_actions=False) == "Summary: The user looked around."
    assert store.get("s", include_summary=False, max_actions=1) == "Recent activity:\n1. b \u2014 /b"
    assert store.active_sessions == ["s"]
    store.reset("s")
    assert store.get("s") == "" and store.active_sessions == []


def test_lookback_and_max_actions_defaults_and_overrides() -> None:
    store = ContextStore(lookback_seconds=60, max_actions=2, include_summary=False)
    now = time.time()
    store.add(payload("s", "old", at=now - 120))
    store.add(payload("s", "x", "y", "z", at=now))
    assert store.get("s") == "Recent activity:\n1. y \u2014 /y\n2. z \u2014 /z"
    # per call: no cap, but still the 60 s window ("old" was evicted on add anyway)
    assert store.get("s", max_actions=None).count("\n") == 3
    assert "old" not in store.get("s", lookback_seconds=None, max_actions=None)
    assert store.lookback_seconds == 60 and store.max_actions == 2


def test_size_bounds() -> None:
    store = ContextStore(max_sessions=2, max_stored_actions=3)
    for i in range(10):
        store.add(payload("a", f"a{i}"))
    assert store.get("a").splitlines()[1:] == ["1. a7 \u2014 /a7", "2. a8 \u2014 /a8", "3. a9 \u2014 /a9"]
    store.add(payload("b", "x"))
    store.add(payload("c", "x"))  # evicts a, the least recently used
    assert store.active_sessions == ["b", "c"]


def test_bad_bounds_raise_0130s_errors() -> None:
    for kwargs in ({"lookback_seconds": 0}, {"max_actions": 0}, {"max_sessions": 0}):
        with pytest.raises(ValueError) as info:
            ContextStore(**kwargs)  # type: ignore[arg-type]
        assert isinstance(info.value, (InvalidConfigError, SdkConfigError))


def test_products_are_kept_apart() -> None:
    assert actions_bucket_id("p1", "s") == "p1\x1fs"
    assert actions_bucket_id(None, "s") == "s"
    store = ContextStore()
    store.add(payload("s", "one", product="p1"))
    assert "one" in store.get("s", product_id="p1")
    assert store.get("s", product_id="p2") == ""
    assert "one" in store.get("s")  # the only product's bucket is found
    store.add(payload("s", "two", product="p2"))
    assert store.get("s") == ""  # ambiguous without a product
    store.reset("s", product_id="p1")
    assert store.get("s", product_id="p1") == "" and "two" in store.get("s", product_id="p2")


def test_a_summarizer_feeds_the_store(caplog: pytest.LogCaptureFixture) -> None:
    summarizer = SessionSummarizer(lambda prompt: "summed", threshold=2, on_summary=lambda s, t: None)
    store = ContextStore(summarizer=summarizer)
    assert "replacing" in caplog.text  # 0.13.0 warns when it takes on_summary over
    assert summarizer.on_summary == store.on_summary
    for p in (payload("s", "a"), payload("s", "b")):
        store.add(p)
        summarizer.add(p)
    assert store.get("s").startswith("Summary: summed\n\nRecent activity:\n1. a")


def test_both_stores_fed_by_the_real_connector(connector: Connector) -> None:
    store = ContextStore(max_actions=5)
    client = ConnectorClient(url=connector.url, token=connector.key).on_actions(store.add)
    client.run_in_background()
    try:
        time.sleep(0.3)
        connector.post({"session_id": "live", "actions": [action(i) for i in range(8)]})
        assert wait_for(lambda: "live" in store.active_sessions)
        lines = store.get("live").splitlines()
        assert lines[0] == "Recent activity:" and len(lines) == 6
        assert lines[-1] == "5. Clicked Dashboard 7 \u2014 https://app.example.com/dashboard"
    finally:
        client.stop()

    async def main() -> None:
        async def llm(prompt: str) -> str:
            await asyncio.sleep(0)
            return f"{prompt.count(chr(10)) + 1} actions"

        summarizer = AsyncSessionSummarizer(llm, threshold=3, prompt="{actions}")
        astore = AsyncContextStore(summarizer=summarizer)
        assert ContextAsyncReexport is AsyncContextStore

        async def on_actions(p: ActionsPayload) -> None:
            await astore.add(p)
            await summarizer.add(p)

        aclient = AsyncConnectorClient(connector.url, connector.key).on_actions(on_actions)
        task = aclient.run_in_background()
        await asyncio.sleep(0.3)
        await asyncio.to_thread(connector.post, {"session_id": "as", "actions": [action(i) for i in range(3)]})
        deadline = time.monotonic() + 10
        while "Summary:" not in astore.get("as") and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert astore.get("as").startswith("Summary: 3 actions\n\nRecent activity:\n1. Clicked Dashboard 0")
        aclient.stop()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())


def test_the_store_is_thread_safe() -> None:
    store = ContextStore(max_stored_actions=10_000)

    def feed(k: int) -> None:
        for i in range(500):
            store.add(payload(f"s{k % 2}", f"a{i}"))
            store.get(f"s{k % 2}")

    threads: List[threading.Thread] = [threading.Thread(target=feed, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.get("s0", max_actions=None).splitlines()) == 1 + 1000


def test_the_readme_context_section_runs_and_prints_what_it_shows() -> None:
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### Context store and summarizers", 1)[1].split("\n### ", 1)[0]
    code, shown = re.findall(r"```(?:python|text)\n(.*?)```", section, re.S)[:2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == shown, out.stdout
