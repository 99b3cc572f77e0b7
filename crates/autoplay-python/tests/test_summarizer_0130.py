"""The 0.13.0 surface of SessionSummarizer / AsyncSessionSummarizer, EventBuffer's
on_drop, RagPipeline's ids, and the 0.13.0 module paths."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Dict, List, Tuple

import pytest

from autoplay_sdk import ActionsPayload, AsyncConnectorClient, SdkConfigError, SlimAction, SummaryPayload
from autoplay_sdk.buffer import EventBuffer
from autoplay_sdk.context.summarizer import AsyncSessionSummarizer, SessionSummarizer
from autoplay_sdk.rag import AsyncRagPipeline, RagPipeline
from autoplay_sdk.summarizer import AsyncSessionSummarizer as A2, SessionSummarizer as S2

from conftest import Connector, action


def payload(session: str, n: int, start: int = 0) -> ActionsPayload:
    return ActionsPayload(
        session_id=session,
        actions=[SlimAction(title=f"t{i}", description=f"Did {i}", canonical_url=f"/p{i}") for i in range(start, start + n)],
    )


def test_module_paths_are_0130s() -> None:
    assert S2 is SessionSummarizer and A2 is AsyncSessionSummarizer
    import autoplay_sdk

    assert autoplay_sdk.EventBuffer is EventBuffer and autoplay_sdk.RagPipeline is RagPipeline


def test_sync_surface() -> None:
    summaries: List[Tuple[str, str]] = []
    s = SessionSummarizer(lambda p: "sum", threshold=3)
    assert s.on_summary is None
    s.on_summary = lambda sid, text: summaries.append((sid, text))  # assignable
    s.add(payload("a", 2))
    s.add(payload("b", 1))
    assert s.get_context("a") == "1. Did 0 \u2014 /p0\n2. Did 1 \u2014 /p1"
    assert s.get_context("nobody") == ""
    assert s.active_sessions == ["a", "b"]
    s.reset("b")
    assert s.active_sessions == ["a"]
    out = s.add(payload("a", 1, start=2))
    assert out is not None and out.replaces == 3
    assert summaries == [("a", "sum")]
    with pytest.raises(SdkConfigError):
        SessionSummarizer(lambda p: "", threshold=0)


def test_format_actions_and_max_sessions() -> None:
    prompts: List[str] = []

    def llm(prompt: str) -> str:
        prompts.append(prompt)
        return "ok"

    def fmt(payloads: List[ActionsPayload]) -> str:
        return " | ".join(a.title for p in payloads for a in p.actions)

    s = SessionSummarizer(llm, threshold=2, prompt="<{actions}>", format_actions=fmt, max_sessions=2)
    s.add(payload("a", 1))
    assert s.get_context("a") == "t0"
    s.add(payload("b", 1))
    s.add(payload("c", 1))  # forgets a
    assert s.active_sessions == ["b", "c"] and s.max_sessions == 2
    s.add(payload("b", 1, start=1))
    assert prompts == ["<t0 | t1>"]


def test_the_prompt_is_a_str_format_template_as_in_0130() -> None:
    prompts: List[str] = []

    def llm(prompt: str) -> str:
        prompts.append(prompt)
        return "ok"

    template = 'Answer as {{"summary": "..."}} for {{json}} readers.\n{actions}\nEnd.'
    s = SessionSummarizer(llm, threshold=2, prompt=template)
    s.add(payload("a", 2))
    numbered = "1. Did 0 \u2014 /p0\n2. Did 1 \u2014 /p1"
    assert prompts == ['Answer as {"summary": "..."} for {json} readers.\n' + numbered + "\nEnd."]
    assert prompts[0] == template.format(actions=numbered)

    async def main() -> List[str]:
        got: List[str] = []

        async def allm(prompt: str) -> str:
            got.append(prompt)
            return "ok"

        a = AsyncSessionSummarizer(allm, threshold=2, prompt=template)
        await a.add(payload("a", 2))
        await a.flush()
        return got

    assert asyncio.run(main()) == prompts

    # A template str.format cannot fill fails at construction, saying how to write it.
    for bad in ("{actions} and {json}", "{actions} {", "{actions} {0}"):
        with pytest.raises(ValueError, match=r"doubled"):
            SessionSummarizer(llm, prompt=bad)
        with pytest.raises(ValueError, match=r"doubled"):
            AsyncSessionSummarizer(llm, prompt=bad)  # type: ignore[arg-type]


def test_the_default_prompt_is_0130s() -> None:
    import autoplay_sdk
    import autoplay_sdk.context

    expected = (
        "You are summarising a user's in-app session for a RAG pipeline.\n"
        "Your summary will be embedded and stored in a vector database to provide\n"
        "context for a chatbot or AI assistant.\n\n"
        "Write a concise 2-3 sentence summary of what the user did, focusing on:\n"
        "- Which features or pages they visited\n"
        "- What actions they performed\n"
        "- Any clear intent or goal you can infer\n\n"
        "Actions:\n{actions}\n\nSummary:"
    )
    from autoplay_sdk.context.summarizer import DEFAULT_PROMPT
    from autoplay_sdk.summarizer import DEFAULT_PROMPT as D2

    assert DEFAULT_PROMPT == D2 == autoplay_sdk.DEFAULT_PROMPT == autoplay_sdk.context.DEFAULT_PROMPT == expected
    prompts: List[str] = []
    for given in (None, ""):  # 0.13.0: `prompt or DEFAULT_PROMPT`
        s = SessionSummarizer(lambda p: prompts.append(p) or "ok", threshold=1, prompt=given)
        assert s.prompt == DEFAULT_PROMPT
        s.add(payload("a", 1))
    assert prompts == [DEFAULT_PROMPT.format(actions="1. Did 0 \u2014 /p0")] * 2


def test_sync_llm_failure_keeps_the_batch_for_the_next_try(caplog: pytest.LogCaptureFixture) -> None:
    calls: List[str] = []

    def llm(prompt: str) -> str:
        calls.append(prompt)
        if len(calls) == 1:
            raise RuntimeError("llm down")
        return "back"

    s = SessionSummarizer(llm, threshold=2, prompt="{actions}")
    assert s.add(payload("a", 2)) is None
    assert "llm down" in caplog.text
    assert s.pending("a") == 2
    out = s.add(payload("a", 1, start=2))
    assert out is not None and out.replaces == 3 and out.summary == "back"
    assert calls[1].count("\n") == 2  # all three actions in the retry


def test_sync_flush_without_arguments_summarises_every_session() -> None:
    got: List[str] = []
    s = SessionSummarizer(lambda p: "x", threshold=10, on_summary=lambda sid, t: got.append(sid))
    s.add(payload("a", 1))
    s.add(payload("b", 1))
    assert s.flush() is None
    assert sorted(got) == ["a", "b"] and s.active_sessions == []


def test_async_surface_and_failure_kept() -> None:
    async def main() -> None:
        fail = [True]
        summaries: List[Tuple[str, str]] = []

        async def llm(prompt: str) -> str:
            await asyncio.sleep(0)
            if fail[0]:
                raise RuntimeError("llm down")
            return f"{prompt.count(chr(10)) + 1} actions"

        s = AsyncSessionSummarizer(llm, threshold=2, prompt="{actions}", max_sessions=10)

        async def on_summary(sid: str, text: str) -> None:
            summaries.append((sid, text))

        s.on_summary = on_summary
        await s.add(payload("a", 2))
        await s.flush()
        assert summaries == []
        assert await s.get_context("a") == "1. Did 0 \u2014 /p0\n2. Did 1 \u2014 /p1"  # kept
        assert await s.active_sessions == ["a"]
        fail[0] = False
        await s.add(payload("a", 1, start=2))
        await s.flush()
        assert summaries == [("a", "3 actions")]
        await s.add(payload("b", 1))
        await s.reset("b")
        await s.flush()
        assert await s.active_sessions == []
        # flush(session_id): summarise now, below the threshold
        await s.add(payload("c", 1))
        out = await s.flush("c")
        assert out is not None and out.replaces == 1

    asyncio.run(main())


def test_async_add_does_not_wait_for_the_llm_and_keeps_session_order() -> None:
    async def main() -> None:
        release = asyncio.Event()
        got: List[str] = []

        async def llm(prompt: str) -> str:
            await release.wait()
            return prompt.splitlines()[0]

        s = AsyncSessionSummarizer(llm, threshold=1, prompt="{actions}")
        s.on_summary = lambda sid, text: got.append(text)
        t0 = time.monotonic()
        for i in range(3):
            await s.add(payload("a", 1, start=i))
        assert time.monotonic() - t0 < 0.5  # add() returned while the llm waits
        release.set()
        await s.flush()
        assert got == ["1. Did 0 \u2014 /p0", "1. Did 1 \u2014 /p1", "1. Did 2 \u2014 /p2"]

    asyncio.run(main())


def test_async_summarizer_behind_the_real_connector(connector: Connector) -> None:
    async def main() -> None:
        got: List[Tuple[str, str]] = []

        async def llm(prompt: str) -> str:
            await asyncio.sleep(0.01)
            return f"{prompt.count(chr(10)) + 1}"

        async def on_summary(sid: str, text: str) -> None:
            got.append((sid, text))

        s = AsyncSessionSummarizer(llm, threshold=4, prompt="{actions}", on_summary=on_summary)
        client = AsyncConnectorClient(connector.url, connector.key).on_actions(s.add)
        task = client.run_in_background()
        await asyncio.sleep(0.3)
        await asyncio.to_thread(
            connector.post, [{"session_id": f"s{i % 3}", "actions": [action(i)]} for i in range(24)]
        )
        deadline = time.monotonic() + 10
        while len(got) < 6 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await s.flush()
        assert sorted(got) == sorted([(f"s{k}", "4") for k in range(3)] * 2)
        client.stop()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())


def test_event_buffer_on_drop_gets_the_dropped_payload(caplog: pytest.LogCaptureFixture) -> None:
    dropped: List[Any] = []
    buf = EventBuffer(max_size=2, on_drop=dropped.append)
    ps = [payload(f"s{i}", 1) for i in range(4)]
    for p in ps:
        buf.add(p)
    assert dropped == [ps[0], ps[1]]
    assert buf.drain() == ps[2:]

    def bad(p: Any) -> None:
        raise RuntimeError("hook broke")

    buf2 = EventBuffer(max_size=1, on_drop=bad)
    buf2.add(ps[0])
    buf2.add(ps[1])  # the raising hook is logged, the add goes on
    assert "hook broke" in caplog.text and buf2.drain() == [ps[1]]
    with pytest.raises(ValueError):
        EventBuffer(max_size=-1)


def test_rag_pipeline_with_a_summarizer_upserts_client_summaries(caplog: pytest.LogCaptureFixture) -> None:
    upserts: List[Tuple[str, Dict[str, Any]]] = []
    texts: List[str] = []

    def embed(text: str) -> List[float]:
        texts.append(text)
        return [0.0]

    s = SessionSummarizer(lambda p: "rolled", threshold=1, on_summary=lambda sid, t: None)
    p = RagPipeline(embed, lambda i, v, m: upserts.append((i, m)), summarizer=s)
    # as 0.13.0: the pipeline takes the summarizer's on_summary over, and says so
    assert "replacing" in caplog.text and s.on_summary is not None
    p.on_actions(payload("a", 1))
    s.add(payload("b", 1))  # a summary made outside the pipeline is upserted too
    p.on_summary(SummaryPayload(session_id="a", summary="server", forwarded_at=12.5))
    assert upserts == [
        ("a:client-summary", {"session_id": "a", "type": "ClientSummary"}),
        ("b:client-summary", {"session_id": "b", "type": "ClientSummary"}),
        ("a:summary:12.5", {"session_id": "a", "type": "SummaryPayload", "forwarded_at": 12.5}),
    ]
    assert texts[:2] == ["rolled", "rolled"]  # the summary's text is embedded

    async def main() -> None:
        got: List[str] = []

        async def upsert(i: str, v: Any, m: Dict[str, Any]) -> None:
            got.append(i)

        ap = AsyncRagPipeline(lambda t: [0.0], upsert)
        await ap.on_actions(ActionsPayload(session_id=None, forwarded_at=3.0, actions=[]))
        assert got == ["unknown:actions:3.0"]

    asyncio.run(main())
