"""EventBuffer, SessionSummarizer, AsyncSessionSummarizer, RagPipeline, AsyncRagPipeline."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Dict, List, Tuple

import pytest

from autoplay_sdk import (
    ActionsPayload,
    AsyncRagPipeline,
    AsyncSessionSummarizer,
    ConnectorClient,
    EventBuffer,
    RagPipeline,
    SessionSummarizer,
    SlimAction,
    SummaryPayload,
)

from conftest import Connector, wait_for


def actions(session: str, n: int) -> ActionsPayload:
    return ActionsPayload(
        session_id=session,
        actions=[SlimAction(title=f"t{i}", description=f"Did {i}", canonical_url=f"/p{i}") for i in range(n)],
    )


def test_event_buffer() -> None:
    buf = EventBuffer(max_size=3)
    assert buf.max_size == 3 and buf.is_empty and buf.size == 0 and len(buf) == 0
    a1, s1, a2, a3 = actions("a", 1), SummaryPayload(summary="s"), actions("b", 1), actions("c", 1)
    for p in (a1, s1, a2, a3):
        buf.add(p)
    assert len(buf) == 3 and buf.evicted_count == 1  # the oldest (a1) was dropped
    assert buf.peek() == [s1, a2, a3]
    assert buf.peek(1) == [a3]
    assert buf.drain_by_type(actions=False, summaries=True) == [s1]
    assert buf.drain() == [a2, a3]
    assert buf.is_empty
    buf.add({"type": "summary"})
    buf.add({"type": "actions"})
    assert buf.drain_by_type(actions=True, summaries=False) == [{"type": "actions"}]
    buf.clear()
    assert len(buf) == 0
    unbounded = EventBuffer(max_size=0)
    for i in range(5000):
        unbounded.add(i)
    assert len(unbounded) == 5000
    assert EventBuffer().max_size == 1000


def test_event_buffer_as_a_callback_threads() -> None:
    buf = EventBuffer(max_size=0)
    threads = [threading.Thread(target=lambda: [buf.add(actions("x", 1)) for _ in range(500)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(buf.drain()) == 2000


def test_session_summarizer() -> None:
    prompts: List[str] = []
    summaries: List[Tuple[str, str]] = []

    def llm(prompt: str) -> str:
        prompts.append(prompt)
        return " The user did four things. "

    s = SessionSummarizer(llm, threshold=4, prompt="Summarise:\n{actions}", on_summary=lambda sid, text: summaries.append((sid, text)))
    assert s.add(actions("ps_1", 3)) is None
    assert s.pending("ps_1") == 3
    out = s.add(actions("ps_1", 1))
    assert isinstance(out, SummaryPayload)
    assert out.session_id == "ps_1" and out.replaces == 4 and out.summary == "The user did four things."
    assert prompts == ["Summarise:\n1. Did 0 \u2014 /p0\n2. Did 1 \u2014 /p1\n3. Did 2 \u2014 /p2\n4. Did 0 \u2014 /p0"]
    assert summaries == [("ps_1", "The user did four things.")]
    assert s.pending("ps_1") == 0
    with pytest.raises(ValueError):
        SessionSummarizer(llm, prompt="no placeholder")


def test_session_summarizer_llm_error_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def bad(prompt: str) -> str:
        raise RuntimeError("llm down")

    s = SessionSummarizer(bad, threshold=1)
    assert s.add(actions("ps", 1)) is None
    assert "llm down" in caplog.text
    assert s.pending("ps") == 1  # kept for the next try


def test_rag_pipeline() -> None:
    upserts: List[Tuple[str, Any, Dict[str, Any]]] = []
    vec = object()  # any vector type reaches upsert untouched
    p = RagPipeline(embed=lambda text: vec, upsert=lambda i, v, m: upserts.append((i, v, m)))
    batch = actions("ps_1", 2)
    p.on_actions(batch)
    p.on_summary(SummaryPayload(summary="hello", forwarded_at=1700000000.0))
    # 0.13.0's ids and metadata
    assert upserts == [
        (
            f"ps_1:actions:{batch.forwarded_at}",
            vec,
            {"session_id": "ps_1", "type": "ActionsPayload", "forwarded_at": batch.forwarded_at},
        ),
        (
            "unknown:summary:1700000000.0",
            vec,
            {"session_id": "unknown", "type": "SummaryPayload", "forwarded_at": 1700000000.0},
        ),
    ]
    assert p.upserted_count == 2


def test_rag_pipeline_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def embed(text: str) -> List[float]:
        raise ValueError("embed failed")

    p = RagPipeline(embed, lambda i, v, m: None)
    p.on_actions(actions("x", 1))
    assert p.failed_count == 1
    assert "embed failed" in caplog.text


def test_rag_pipeline_with_summarizer() -> None:
    upserts: List[Tuple[str, Any, Dict[str, Any]]] = []
    summarizer = SessionSummarizer(lambda prompt: "summary", threshold=2)
    p = RagPipeline(lambda t: [len(t)], lambda i, v, m: upserts.append((i, v, m)), summarizer=summarizer)
    p.on_actions(actions("s", 1))
    assert upserts == []
    p.on_actions(actions("s", 1))
    assert upserts == [("s:client-summary", [7], {"session_id": "s", "type": "ClientSummary"})]


def test_async_summarizer_and_pipeline() -> None:
    async def main() -> None:
        async def llm(prompt: str) -> str:
            await asyncio.sleep(0)
            return f"{prompt.count(chr(10))} lines"

        got: List[Tuple[str, str]] = []

        async def on_summary(sid: str, text: str) -> None:
            got.append((sid, text))

        s = AsyncSessionSummarizer(llm, threshold=2, prompt="{actions}", on_summary=on_summary)
        # add() queues for the session's worker and returns at once (0.13.0)
        assert await s.add(actions("a", 1)) is None
        assert await s.add(actions("a", 1)) is None
        await s.flush()
        assert got == [("a", "1 lines")]

        upserts: List[Tuple[str, Any, Dict[str, Any]]] = []

        async def embed(text: str) -> List[float]:
            return [1.0]

        async def upsert(i: str, v: Any, m: Dict[str, Any]) -> None:
            upserts.append((i, v, m))

        p = AsyncRagPipeline(embed, upsert)
        await p.on_actions(actions("b", 1))
        await p.on_summary(SummaryPayload(session_id="b", summary="x"))
        assert [m["type"] for _, _, m in upserts] == ["ActionsPayload", "SummaryPayload"]
        summarizer = AsyncSessionSummarizer(llm, threshold=1)
        p2 = AsyncRagPipeline(embed, upsert, summarizer=summarizer)
        await p2.on_actions(actions("c", 1))
        await summarizer.flush()
        assert upserts[-1][0] == "c:client-summary"
        assert upserts[-1][2] == {"session_id": "c", "type": "ClientSummary"}

    asyncio.run(main())


def test_pipeline_and_buffer_wired_into_the_client(connector: Connector) -> None:
    buf = EventBuffer()
    upserts: List[str] = []
    pipeline = RagPipeline(lambda t: [0.0], lambda i, v, m: upserts.append(i))

    def on_actions(p: ActionsPayload) -> None:
        buf.add(p)
        pipeline.on_actions(p)

    client = ConnectorClient(url=connector.url, token=connector.key).on_actions(on_actions)
    client.run_in_background()
    time.sleep(0.2)
    connector.post_batches(20)
    assert wait_for(lambda: len(upserts) == 20)
    assert len(buf.drain()) == 20
    client.stop()
