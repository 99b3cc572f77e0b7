"""A program written for the published 0.13.0, checked with `mypy --strict` against
this package's stubs: its module paths, its model fields and dataclass use, its
client options and error names."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Dict, List

from autoplay_sdk.async_client import AsyncConnectorClient
from autoplay_sdk.client import ConnectorClient
from autoplay_sdk.core.exceptions import SdkBufferFullError, SdkConfigError, SdkError, SdkUpstreamError
from autoplay_sdk.core.metrics import SdkMetricsHook
from autoplay_sdk.core.models import ActionsPayload, AnyPayload, SlimAction, SummaryPayload

STREAM_URL = "http://127.0.0.1:8080/stream/demo"


class Metrics:
    def record_event_dropped(
        self, *, reason: str, event_type: str, session_id: str | None, product_id: str | None
    ) -> None:
        print(reason, event_type, session_id, product_id)

    def record_queue_depth(self, *, depth: int) -> None:
        print(depth)


def describe(action: SlimAction) -> str:
    index: int = action.index
    kind: str = action.type
    start: float = action.timestamp_start
    end: float = action.timestamp_end
    raw: str = action.raw_url
    conversation: str | None = action.conversation_id
    return f"{index} {kind} {start} {end} {raw} {conversation} {action.to_text()}"


def on_actions(payload: ActionsPayload) -> None:
    product: str = payload.product_id
    forwarded: float = payload.forwarded_at
    conversation: str | None = payload.conversation_id
    lines: List[str] = [describe(a) for a in payload.actions]
    merged: ActionsPayload = ActionsPayload.merge([payload, payload])
    renamed: ActionsPayload = dataclasses.replace(payload, session_id="other")
    as_dict: Dict[str, Any] = dataclasses.asdict(payload)
    payload.email = "user@example.com"
    payload.actions = [dataclasses.replace(a, raw_url="https://app.example.com/x", index=0) for a in payload.actions]
    payload.product_id, payload.forwarded_at = "prod", 1.0
    for action in payload.actions:
        action.raw_url, action.index, action.timestamp_start = "https://app.example.com/y", 1, 0.5
    print(product, forwarded, conversation, lines, merged.count, renamed, as_dict)
    print(payload.to_text(style="indexed"))


async def on_summary(payload: SummaryPayload) -> None:
    replaced: int = payload.replaces
    print(replaced, payload.to_text())


def handle(payload: AnyPayload) -> str:
    return payload.to_text()


def build() -> ConnectorClient:
    metrics: SdkMetricsHook | None = None
    print(metrics)
    client = ConnectorClient(
        STREAM_URL,
        "uk_live_...",
        500,
        10.0,
        None,
        1.0,
        30.0,
        None,
        lambda: print("connected"),
        lambda: print("disconnected"),
        Metrics(),
    )
    return client.on_actions(on_actions).on_summary(on_summary)


def main() -> None:
    a = ActionsPayload("prod", "ps_1", None, None, [SlimAction("Title", "Did", "/u", 0, "click")], 1, 0.0)
    s = SummaryPayload("prod", "ps_1", "Did things.", 1, 0.0)
    print(handle(a), handle(s))
    try:
        build().run()
    except SdkUpstreamError as exc:
        print("upstream", exc)
    except SdkConfigError as exc:
        print("config", exc)
    except (SdkBufferFullError, SdkError) as exc:
        print("sdk", exc)

    async def run_async() -> None:
        async with AsyncConnectorClient(url=STREAM_URL, token="uk_live_...") as client:
            client.on_actions(on_actions)
            await client.run()

    asyncio.run(run_async())


if __name__ == "__main__":
    main()
