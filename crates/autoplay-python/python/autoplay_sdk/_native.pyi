"""Type stubs of the Rust extension module (the Rust core's Python face)."""

import threading
from types import TracebackType
from typing import Any, Callable, Dict, List, Mapping, Optional, Type, Union, final

from typing_extensions import Self

__version__: str

class SlimAction:
    """One UI action: a page view, a click, an input, a submit, or a custom event."""

    def __init__(
        self,
        title: str = "",
        description: str = "",
        canonical_url: str = "",
        event_type: str = "",
        ts: Optional[str] = None,
        properties: Optional[Mapping[str, Any]] = None,
        raw_url: Optional[str] = None,
        index: Optional[int] = None,
        timestamp_start: Optional[float] = None,
        timestamp_end: Optional[float] = None,
        session_id: Optional[str] = None,
        user_id: Optional[str] = None,
        email: Optional[str] = None,
        conversation_id: Optional[str] = None,
    ) -> None: ...
    @property
    def title(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def canonical_url(self) -> str: ...
    @property
    def event_type(self) -> str: ...
    @property
    def ts(self) -> Optional[str]: ...
    @property
    def raw_url(self) -> Optional[str]: ...
    @property
    def properties(self) -> Dict[str, Any]: ...
    @property
    def index(self) -> Optional[int]: ...
    @property
    def timestamp_start(self) -> Optional[float]: ...
    @property
    def timestamp_end(self) -> Optional[float]: ...
    @property
    def session_id(self) -> Optional[str]: ...
    @property
    def user_id(self) -> Optional[str]: ...
    @property
    def email(self) -> Optional[str]: ...
    @property
    def conversation_id(self) -> Optional[str]: ...
    def to_text(self) -> str:
        """`<description> — <canonical_url>` (the title when the description is empty)."""
    def to_dict(self) -> Dict[str, Any]: ...
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SlimAction": ...
    def __eq__(self, other: object) -> bool: ...

class ActionsPayload:
    """A batch of UI actions from one session."""

    def __init__(
        self,
        session_id: Optional[str] = None,
        actions: Optional[List[Union[SlimAction, Mapping[str, Any]]]] = None,
        product_id: Optional[str] = None,
        user_id: Optional[str] = None,
        email: Optional[str] = None,
        ts: Optional[str] = None,
        forwarded_at: Optional[float] = None,
        count: Optional[int] = None,
    ) -> None: ...
    @property
    def type(self) -> str: ...
    @property
    def product_id(self) -> Optional[str]: ...
    @property
    def session_id(self) -> Optional[str]: ...
    @property
    def user_id(self) -> Optional[str]: ...
    @property
    def email(self) -> Optional[str]: ...
    @property
    def ts(self) -> Optional[str]: ...
    @property
    def forwarded_at(self) -> Optional[float]: ...
    @property
    def count(self) -> int: ...
    @property
    def actions(self) -> List[SlimAction]: ...
    def to_text(self) -> str:
        """`Session <id> — <N> actions`, then one numbered line per action."""
    def to_dict(self) -> Dict[str, Any]: ...
    def to_json(self) -> str: ...
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ActionsPayload": ...
    def __eq__(self, other: object) -> bool: ...

class SummaryPayload:
    """A prose summary of a session."""

    def __init__(
        self,
        session_id: Optional[str] = None,
        summary: str = "",
        replaces: int = 0,
        product_id: Optional[str] = None,
        ts: Optional[str] = None,
        forwarded_at: Optional[float] = None,
    ) -> None: ...
    @property
    def type(self) -> str: ...
    @property
    def product_id(self) -> Optional[str]: ...
    @property
    def session_id(self) -> Optional[str]: ...
    @property
    def summary(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def replaces(self) -> int: ...
    @property
    def ts(self) -> Optional[str]: ...
    @property
    def forwarded_at(self) -> Optional[float]: ...
    def to_text(self) -> str:
        """The summary text itself."""
    def to_dict(self) -> Dict[str, Any]: ...
    def to_json(self) -> str: ...
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SummaryPayload": ...
    def __eq__(self, other: object) -> bool: ...

def decode_payload(data: Union[str, Mapping[str, Any]]) -> Union[ActionsPayload, SummaryPayload]:
    """Decodes a payload whose `type` says its kind."""

def refresh_log_level() -> None:
    """Re-reads the `autoplay_sdk` logger's level now."""

class ConnectorClient:
    """Blocking client of `GET /stream/{product_id}`: typed callbacks, reconnects,
    raises `SdkError` subclasses only for what retrying cannot fix."""

    def __init__(
        self,
        url: str,
        token: str = "",
        max_queue_size: int = 500,
        *,
        connect_timeout: float = 10.0,
        read_timeout_s: float = 90.0,
        initial_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        max_retries: Optional[int] = None,
        on_connect: Optional[Callable[..., Any]] = None,
        on_disconnect: Optional[Callable[..., Any]] = None,
        overflow_policy: str = "drop_newest",
        workers: int = 1,
        drain_timeout_s: float = 5.0,
        max_event_size: Optional[int] = None,
        headers: Optional[Dict[str, str]] = None,
        last_event_id: Optional[str] = None,
        overflow_grace_s: float = 0.025,
        on_retry: Optional[Callable[[int, float, str], Any]] = None,
        max_queue_bytes: int = 16777216,
        max_server_delay_s: float = 600.0,
        backoff_reset_after_s: float = 60.0,
        max_id_len: int = 4096,
    ) -> None: ...
    def on_actions(self, fn: Callable[[ActionsPayload], Any]) -> Self: ...
    def on_summary(self, fn: Callable[[SummaryPayload], Any]) -> Self: ...
    def on_drop(self, fn: Callable[[Dict[str, Any], int], Any]) -> Self: ...
    def run(self) -> None: ...
    def run_in_background(self) -> threading.Thread: ...
    def stop(self) -> None:
        """Stops the reader, lets queued events be handled (up to `drain_timeout_s`),
        and returns once the run has ended; inside one of this client's callbacks it
        only asks."""
    @property
    def dropped_count(self) -> int: ...
    @property
    def oversized_count(self) -> int: ...
    @property
    def queue_size(self) -> int: ...
    @property
    def url(self) -> str: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...


class EventBuffer:
    """Thread-safe in-memory buffer of payloads; when full, the oldest is dropped."""

    def __init__(self, max_size: int = 1000) -> None: ...
    def add(self, payload: Any) -> None: ...
    def drain(self) -> List[Any]: ...
    def peek(self, n: Optional[int] = None) -> List[Any]: ...
    def drain_by_type(self, actions: bool = True, summaries: bool = True) -> List[Any]: ...
    def clear(self) -> None: ...
    @property
    def size(self) -> int: ...
    @property
    def is_empty(self) -> bool: ...
    @property
    def max_size(self) -> int: ...
    @property
    def evicted_count(self) -> int: ...
    def __len__(self) -> int: ...

class SessionSummarizer:
    """Summarises each session every `threshold` actions with `llm(prompt) -> str`."""

    def __init__(
        self,
        llm: Callable[[str], str],
        threshold: int = 10,
        prompt: Optional[str] = None,
        on_summary: Optional[Callable[[str, str], Any]] = None,
    ) -> None: ...
    def add(self, payload: Any) -> Optional[SummaryPayload]: ...
    def flush(self, session_id: str) -> Optional[SummaryPayload]: ...
    def pending(self, session_id: str) -> int: ...
    @property
    def session_count(self) -> int: ...
    @property
    def threshold(self) -> int: ...
    @property
    def prompt(self) -> str: ...

class RagPipeline:
    """Embeds each payload's `to_text()` and upserts it: `upsert(id, vector, metadata)`."""

    def __init__(
        self,
        embed: Callable[[str], Any],
        upsert: Callable[[str, Any, Dict[str, Any]], Any],
        summarizer: Optional[SessionSummarizer] = None,
    ) -> None: ...
    def on_actions(self, payload: ActionsPayload) -> None: ...
    def on_summary(self, payload: SummaryPayload) -> None: ...
    @property
    def upserted_count(self) -> int: ...
    @property
    def failed_count(self) -> int: ...
    @property
    def summarizer(self) -> Optional[SessionSummarizer]: ...

@final
class _AsyncEngine:
    """The engine of `AsyncConnectorClient` (`_async.py` drives it)."""

    def __new__(
        cls,
        url: str,
        token: str,
        *,
        max_queue_size: int = 500,
        connect_timeout: float = 10.0,
        read_timeout_s: Optional[float] = 90.0,
        initial_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        max_retries: Optional[int] = None,
        overflow_policy: str = "block",
        drain_timeout_s: float = 5.0,
        max_event_size: Optional[int] = None,
        headers: Optional[Dict[str, str]] = None,
        last_event_id: Optional[str] = None,
        overflow_grace_s: float = 0.025,
        on_connect: bool = False,
        on_disconnect: bool = False,
        on_retry: bool = False,
        max_queue_bytes: int = 16777216,
        max_server_delay_s: float = 600.0,
        backoff_reset_after_s: float = 60.0,
        max_id_len: int = 4096,
    ) -> _AsyncEngine: ...
    def start(
        self,
        wake: Callable[[Any], None],
        on_drops: Optional[Callable[[List[Any]], None]] = None,
    ) -> _AsyncRun: ...
    def stop(self) -> None: ...
    @property
    def dropped_count(self) -> int: ...
    @property
    def oversized_count(self) -> int: ...
    @property
    def queue_size(self) -> int: ...
    @property
    def url(self) -> str: ...

@final
class _AsyncRun:
    """One run of an `_AsyncEngine`: the items the event loop takes, in batches."""

    def take(self, max_items: int = 256) -> Optional[List[Any]]: ...
    def park(self, event_loop: Any, future: Any) -> bool: ...
    def close(self) -> None: ...
    @property
    def buffered(self) -> int: ...
