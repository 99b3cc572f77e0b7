"""A 0.13.0-style program using the context, summarizer, buffer and rag modules;
`mypy --strict` must pass on it against our stubs and modules."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List

from autoplay_sdk import ActionsPayload, AsyncConnectorClient, ConnectorClient, SummaryPayload
from autoplay_sdk.buffer import EventBuffer
from autoplay_sdk.context.context_store import AsyncContextStore, ContextStore
from autoplay_sdk.context.summarizer import AsyncSessionSummarizer, SessionSummarizer
from autoplay_sdk.rag import RagPipeline


def my_llm(prompt: str) -> str:
    return prompt[:10]


async def my_async_llm(prompt: str) -> str:
    return prompt[:10]


def fmt(payloads: List[ActionsPayload]) -> str:
    return "\n".join(a.description for p in payloads for a in p.actions)


def dropped(payload: Any) -> None:
    print("dropped", payload)


def sync_app(url: str, token: str) -> str:
    summarizer = SessionSummarizer(llm=my_llm, threshold=10, format_actions=fmt, max_sessions=1000)
    store = ContextStore(summarizer=summarizer, lookback_seconds=300, max_actions=20)
    buffer = EventBuffer(max_size=100, on_drop=dropped)
    pipeline = RagPipeline(embed=lambda text: [0.0], upsert=lambda i, v, m: None)
    client = ConnectorClient(url=url, token=token)
    client.on_actions(store.add)
    client.on_summary(buffer.add)
    client.on_summary(pipeline.on_summary)
    context: str = summarizer.get_context("s")
    sessions: List[str] = summarizer.active_sessions + store.active_sessions
    summarizer.reset("s")
    summary: SummaryPayload | None = summarizer.flush("s")
    print(context, sessions, summary)
    return store.enrich("s", "How do I export?", max_actions=5, lookback_seconds=None)


async def async_app(url: str, token: str) -> str:
    summarizer = AsyncSessionSummarizer(llm=my_async_llm, threshold=10, max_queue_size=100)
    store = AsyncContextStore(summarizer=summarizer)
    client = AsyncConnectorClient(url=url, token=token)
    client.on_actions(store.add)
    task = client.run_in_background()
    await summarizer.add(ActionsPayload(session_id="s", actions=[]))
    await summarizer.flush()
    sessions: List[str] = await summarizer.active_sessions
    text: str = await summarizer.get_context("s")
    meta: Dict[str, Any] = {"n": len(sessions), "text": text}
    print(meta)
    task.cancel()
    return store.enrich("s", "query", include_summary=False)


if __name__ == "__main__":
    print(sync_app("http://127.0.0.1:1/stream/p", "k"))
    print(asyncio.run(async_app("http://127.0.0.1:1/stream/p", "k")))
