"""A user's program, checked with `mypy --strict` against the package's stubs."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Dict, List, Optional

from autoplay_sdk import (
    ActionsPayload,
    AnyPayload,
    AsyncConnectorClient,
    AsyncRagPipeline,
    ConnectorClient,
    EventBuffer,
    FatalStatusError,
    RagPipeline,
    SdkError,
    SessionSummarizer,
    SlimAction,
    SummaryPayload,
)

STREAM_URL = "http://127.0.0.1:8080/stream/demo"
API_TOKEN = "ak_..."


def on_actions(payload: ActionsPayload) -> None:
    session: Optional[str] = payload.session_id
    email: Optional[str] = payload.email
    count: int = payload.count
    for action in payload.actions:
        title: str = action.title
        description: str = action.description
        url: str = action.canonical_url
        print(session, email, count, title, description, url)
    text: str = payload.to_text()
    print(text)


def on_summary(payload: SummaryPayload) -> None:
    replaces: int = payload.replaces
    print(payload.session_id, replaces, payload.to_text())


def on_drop(payload: Dict[str, Any], total_dropped: int) -> None:
    print(f"dropped {payload['type']} total={total_dropped}")


def describe(payload: AnyPayload) -> str:
    return payload.to_text()


def blocking() -> None:
    client = ConnectorClient(url=STREAM_URL, token=API_TOKEN, max_queue_size=1000)
    client.on_actions(on_actions).on_summary(on_summary).on_drop(on_drop)
    thread: threading.Thread = client.run_in_background()
    dropped: int = client.dropped_count
    queued: int = client.queue_size
    oversized: int = client.oversized_count
    print(dropped, queued, oversized, thread.name)
    client.stop()
    bounded = ConnectorClient(
        STREAM_URL,
        max_queue_bytes=8 * 1024 * 1024,
        max_server_delay_s=120.0,
        backoff_reset_after_s=30.0,
        max_id_len=256,
    )
    print(bounded.oversized_count)
    with ConnectorClient(url=STREAM_URL, token=API_TOKEN, read_timeout_s=60.0, max_retries=3) as c:
        c.on_actions(on_actions).run_in_background()
    try:
        ConnectorClient(STREAM_URL).run()
    except FatalStatusError as e:
        code: Optional[int] = e.status_code
        print(code)
    except SdkError:
        pass


async def async_main() -> None:
    async def handle(payload: ActionsPayload) -> None:
        print(payload.to_text())

    async with AsyncConnectorClient(url=STREAM_URL, token=API_TOKEN) as client:
        client.on_actions(handle)
        task: "asyncio.Task[None]" = client.run_in_background()
        client.stop()
        await task

    async def on_connect() -> None:
        print("connected")

    streaming = AsyncConnectorClient(
        STREAM_URL, API_TOKEN, 10.0, 4, on_connect=on_connect,
        max_queue_bytes=1 << 20, max_server_delay_s=5.0, backoff_reset_after_s=10.0, max_id_len=64,
    )
    async for item in streaming.events():
        if isinstance(item, ActionsPayload):
            print(item.count)
        else:
            print(item.summary)
        break
    dropped: int = streaming.dropped_count
    skipped: int = streaming.oversized_count
    print(dropped, skipped, streaming.queue_size)


def helpers() -> None:
    buffer = EventBuffer(max_size=100)
    buffer.add(ActionsPayload(session_id="s", actions=[SlimAction(title="x")]))
    conversation: Optional[str] = SlimAction(title="x", conversation_id="c").conversation_id
    print(conversation)
    # The setters take more than the getters give: None (unset), dicts, mappings.
    edited = ActionsPayload(session_id="s")
    edited.actions = [SlimAction(title="x"), {"title": "y"}]
    edited.product_id, edited.forwarded_at = None, None
    first = edited.actions[0]
    first.raw_url, first.index, first.timestamp_start, first.timestamp_end = None, None, None, None
    first.properties = {"plan": "pro"}
    first.properties = None
    raw: str = first.raw_url
    product: str = edited.product_id
    print(raw, product, first.index + 1, first.properties.get("plan"), edited.forwarded_at + 1.0)
    summary = SummaryPayload(summary="s")
    summary.product_id, summary.forwarded_at = None, None
    drained: List[Any] = buffer.drain()
    print(drained, buffer.size, buffer.is_empty)
    summarizer = SessionSummarizer(lambda prompt: "summary", threshold=5)
    pipeline = RagPipeline(lambda text: [0.0], lambda i, v, m: None, summarizer=summarizer)
    pipeline.on_actions(ActionsPayload.from_dict({"actions": []}))

    async def embed(text: str) -> List[float]:
        return [0.0]

    async def upsert(i: str, v: Any, m: Dict[str, Any]) -> None:
        return None

    AsyncRagPipeline(embed, upsert)


if __name__ == "__main__":
    blocking()
    asyncio.run(async_main())
    helpers()
