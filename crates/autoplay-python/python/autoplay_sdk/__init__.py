"""Real-time event streaming client for Autoplay connectors, on a Rust core.

A drop-in for the published ``autoplay-sdk``: the same names and behaviour, with the
stream read, parsed and decoded in Rust, outside the GIL.

    from autoplay_sdk import ConnectorClient, ActionsPayload

    def on_actions(payload: ActionsPayload) -> None:
        print(payload.to_text())

    ConnectorClient(url=STREAM_URL, token=API_TOKEN).on_actions(on_actions).run()
"""

from __future__ import annotations

from ._errors import (
    AlreadyRunningError,
    FatalStatusError,
    InvalidConfigError,
    RetriesExhaustedError,
    SdkBufferFullError,
    SdkConfigError,
    SdkError,
    SdkUpstreamError,
)
from ._native import (
    DEFAULT_PROMPT,
    ActionsPayload,
    ConnectorClient,
    EventBuffer,
    RagPipeline,
    SessionSummarizer,
    SlimAction,
    SummaryPayload,
    decode_payload,
    set_text_style,
)
from ._native import __version__ as __version__
from ._async import AsyncConnectorClient, AsyncRagPipeline, AsyncSessionSummarizer
from .core.metrics import SdkMetricsHook
from .core.models import AnyPayload
# context / summarizer / buffer / rag (0.13.0's names)
from .context.context_store import AsyncContextStore, ContextStore

# No NullHandler here: with no logging configured, Python's last-resort handler
# prints WARNING and above to stderr, so connection failures and callback tracebacks
# are seen. Configure `logging` (or the "autoplay_sdk" logger) to route them elsewhere.

__all__ = [
    "DEFAULT_PROMPT",
    "ActionsPayload",
    "AlreadyRunningError",
    "AnyPayload",
    "AsyncConnectorClient",
    "AsyncContextStore",
    "AsyncRagPipeline",
    "AsyncSessionSummarizer",
    "ConnectorClient",
    "ContextStore",
    "EventBuffer",
    "FatalStatusError",
    "InvalidConfigError",
    "RagPipeline",
    "RetriesExhaustedError",
    "SdkBufferFullError",
    "SdkConfigError",
    "SdkError",
    "SdkMetricsHook",
    "SdkUpstreamError",
    "SessionSummarizer",
    "SlimAction",
    "SummaryPayload",
    "decode_payload",
    "set_text_style",
]
