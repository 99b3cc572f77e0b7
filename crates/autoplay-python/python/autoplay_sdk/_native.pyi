"""Type stubs of the Rust extension module (the Rust core's Python face)."""

import threading
from dataclasses import Field
from types import TracebackType
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    Iterable,
    List,
    Literal,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    Union,
    final,
)

from typing_extensions import Self, disjoint_base

__version__: str
#: 0.13.0's default summarizer prompt (a `str.format` template with `{actions}`).
DEFAULT_PROMPT: str
__all__ = [
    "DEFAULT_PROMPT",
    "ActionsPayload",
    "ConnectorClient",
    "EventBuffer",
    "RagPipeline",
    "SessionSummarizer",
    "SlimAction",
    "SummaryPayload",
    "_AsyncEngine",
    "_AsyncRun",
    "_ContextStore",
    "_SummaryAccumulator",
    "_SummaryBatch",
    "__version__",
    "_shutdown",
    "decode_payload",
    "refresh_log_level",
    "set_text_style",
]

@final
class SlimAction:
    """One UI action: a page view, a click, an input, a submit, or a custom event.

    Behaves as 0.13.0's dataclass: ``dataclasses.fields``/``asdict``/``replace``,
    assignable fields, ``==`` over the fields."""

    __dataclass_fields__: ClassVar[Dict[str, Field[Any]]]
    __match_args__: ClassVar[Tuple[str, ...]]
    # Fields whose setter takes more than the getter gives (None: the default;
    # any mapping) are properties with a wider setter.
    title: str
    description: str
    canonical_url: str
    @property
    def index(self) -> int:
        """0 when unset (0.13.0's default); assign None to unset."""
    @index.setter
    def index(self, value: Optional[int]) -> None: ...
    type: str
    @property
    def timestamp_start(self) -> float:
        """0.0 when unset; assign None to unset."""
    @timestamp_start.setter
    def timestamp_start(self, value: Optional[float]) -> None: ...
    @property
    def timestamp_end(self) -> float:
        """0.0 when unset; assign None to unset."""
    @timestamp_end.setter
    def timestamp_end(self, value: Optional[float]) -> None: ...
    @property
    def raw_url(self) -> str:
        """"" when unset; assign None to unset."""
    @raw_url.setter
    def raw_url(self, value: Optional[str]) -> None: ...
    session_id: Optional[str]
    user_id: Optional[str]
    email: Optional[str]
    conversation_id: Optional[str]
    ts: Optional[str]
    event_type: str
    """The page's name of ``type`` (the same value)."""
    @property
    def properties(self) -> Dict[str, Any]:
        """A new dict on each read; assign a mapping (None: empty)."""
    @properties.setter
    def properties(self, value: Optional[Mapping[str, Any]]) -> None: ...
    def __new__(
        cls,
        title: str = "",
        description: str = "",
        canonical_url: str = "",
        index: Optional[int] = None,
        type: Optional[str] = None,
        timestamp_start: Optional[float] = None,
        timestamp_end: Optional[float] = None,
        raw_url: Optional[str] = None,
        session_id: Optional[str] = None,
        user_id: Optional[str] = None,
        email: Optional[str] = None,
        conversation_id: Optional[str] = None,
        *,
        event_type: Optional[str] = None,
        ts: Optional[str] = None,
        properties: Optional[Mapping[str, Any]] = None,
    ) -> Self: ...
    def to_text(self, style: Optional[_TextStyle] = None) -> str:
        """`<description> — <canonical_url>` (the title when the description is empty);
        `style="indexed"`: 0.13.0's `[<index>] <type>: <description> — <canonical_url>`."""
    def to_dict(self) -> Dict[str, Any]: ...
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SlimAction": ...
    def __replace__(self, **changes: Any) -> Self: ...
    def __reduce__(self) -> Tuple[Any, Tuple[Dict[str, Any]]]: ...
    def __copy__(self) -> Self: ...
    def __deepcopy__(self, memo: Any, /) -> Self: ...
    def __eq__(self, other: object, /) -> bool: ...

@final
class ActionsPayload:
    """A batch of UI actions from one session; behaves as 0.13.0's dataclass."""

    __dataclass_fields__: ClassVar[Dict[str, Field[Any]]]
    __match_args__: ClassVar[Tuple[str, ...]]
    @property
    def product_id(self) -> str:
        """"" when unset (0.13.0's default); assign None to unset."""
    @product_id.setter
    def product_id(self, value: Optional[str]) -> None: ...
    session_id: Optional[str]
    user_id: Optional[str]
    email: Optional[str]
    @property
    def actions(self) -> List[SlimAction]:
        """A new list of copies on each read: assign the attribute (actions or dicts) to change them."""
    @actions.setter
    def actions(self, value: Iterable[Union[SlimAction, Mapping[str, Any]]]) -> None: ...
    @property
    def forwarded_at(self) -> float:
        """0.0 when unset (0.13.0's default); assign None to unset."""
    @forwarded_at.setter
    def forwarded_at(self, value: Optional[float]) -> None: ...
    conversation_id: Optional[str]
    ts: Optional[str]
    def __new__(
        cls,
        product_id: Optional[str] = None,
        session_id: Optional[str] = None,
        user_id: Optional[str] = None,
        email: Optional[str] = None,
        actions: Optional[Sequence[Union[SlimAction, Mapping[str, Any]]]] = None,
        count: Optional[int] = None,
        forwarded_at: Optional[float] = None,
        conversation_id: Optional[str] = None,
        *,
        ts: Optional[str] = None,
    ) -> Self: ...
    @property
    def count(self) -> int:
        """`len(actions)`, always."""
    @property
    def type(self) -> str: ...
    def to_text(self, style: Optional[_TextStyle] = None) -> str:
        """`Session <id> — <N> actions`, then one numbered line per action;
        `style="indexed"`: 0.13.0's `[<index>] <type>: ...` lines."""
    def to_dict(self) -> Dict[str, Any]: ...
    def to_json(self) -> str: ...
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ActionsPayload": ...
    @classmethod
    def merge(cls, payloads: Iterable["ActionsPayload"]) -> "ActionsPayload":
        """0.13.0's: the batches of one session as one, re-indexed from 0."""
    def __replace__(self, **changes: Any) -> Self: ...
    def __reduce__(self) -> Tuple[Any, Tuple[Dict[str, Any]]]: ...
    def __copy__(self) -> Self: ...
    def __deepcopy__(self, memo: Any, /) -> Self: ...
    def __eq__(self, other: object, /) -> bool: ...

@final
class SummaryPayload:
    """A prose summary of a session; behaves as 0.13.0's dataclass."""

    __dataclass_fields__: ClassVar[Dict[str, Field[Any]]]
    __match_args__: ClassVar[Tuple[str, ...]]
    @property
    def product_id(self) -> str:
        """"" when unset (0.13.0's default); assign None to unset."""
    @product_id.setter
    def product_id(self, value: Optional[str]) -> None: ...
    session_id: Optional[str]
    summary: str
    replaces: int
    @property
    def forwarded_at(self) -> float:
        """0.0 when unset (0.13.0's default); assign None to unset."""
    @forwarded_at.setter
    def forwarded_at(self, value: Optional[float]) -> None: ...
    ts: Optional[str]
    content: str
    """The README's name of ``summary`` (the same value)."""
    def __new__(
        cls,
        product_id: Optional[str] = None,
        session_id: Optional[str] = None,
        summary: str = "",
        replaces: int = 0,
        forwarded_at: Optional[float] = None,
        *,
        ts: Optional[str] = None,
    ) -> Self: ...
    @property
    def type(self) -> str: ...
    def to_text(self) -> str:
        """The summary text itself."""
    def to_dict(self) -> Dict[str, Any]: ...
    def to_json(self) -> str: ...
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SummaryPayload": ...
    def __replace__(self, **changes: Any) -> Self: ...
    def __reduce__(self) -> Tuple[Any, Tuple[Dict[str, Any]]]: ...
    def __copy__(self) -> Self: ...
    def __deepcopy__(self, memo: Any, /) -> Self: ...
    def __eq__(self, other: object, /) -> bool: ...

_TextStyle = Literal["numbered", "indexed", "0.13"]

def set_text_style(style: _TextStyle) -> None:
    """The style `to_text()` uses when not given one: "numbered" (the default) or
    "indexed" (0.13.0's)."""

def decode_payload(data: Union[str, Mapping[str, Any]]) -> Union[ActionsPayload, SummaryPayload]:
    """Decodes a payload whose `type` says its kind."""

def refresh_log_level() -> None:
    """Re-reads the `autoplay_sdk` logger's level now."""

def _shutdown() -> None:
    """The interpreter-exit hook (stops and joins every running client)."""

@disjoint_base
class ConnectorClient:
    """Blocking client of `GET /stream/{product_id}`: typed callbacks, reconnects,
    raises `SdkError` subclasses only for what retrying cannot fix. The first eleven
    parameters are 0.13.0's, in its order."""

    def __new__(
        cls,
        url: str,
        token: str = "",
        max_queue_size: int = 500,
        connect_timeout: float = 10.0,
        read_timeout_s: Optional[float] = 90.0,
        initial_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        max_retries: Optional[int] = None,
        on_connect: Optional[Callable[..., Any]] = None,
        on_disconnect: Optional[Callable[..., Any]] = None,
        metrics: Optional[Any] = None,
        *,
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
    ) -> Self: ...
    def on_actions(self, fn: Callable[[ActionsPayload], Any]) -> Self:
        """`fn` may be an `async def`: it is run on the worker's own event loop."""
    def on_summary(self, fn: Callable[[SummaryPayload], Any]) -> Self: ...
    def on_drop(self, fn: Callable[[Dict[str, Any], int], Any]) -> Self: ...
    def run(self) -> None: ...
    def run_in_background(self) -> threading.Thread: ...
    def stop(self) -> None:
        """Stops the reader, lets queued events be handled (up to `drain_timeout_s`),
        and returns once the run has ended; inside one of this client's callbacks it
        only asks. `run()` afterwards connects again."""
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
        /,
    ) -> bool: ...


# --- context / summarizer / buffer / rag (grouped for merging) ---

@disjoint_base
class EventBuffer:
    """Thread-safe in-memory buffer of payloads; when full, the oldest is dropped
    (and given to `on_drop`)."""

    def __new__(cls, max_size: int = 1000, on_drop: Optional[Callable[[Any], Any]] = None) -> Self: ...
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

@disjoint_base
class SessionSummarizer:
    """Summarises each session every `threshold` actions with `llm(prompt) -> str`."""

    on_summary: Optional[Callable[[str, str], Any]]
    def __new__(
        cls,
        llm: Callable[[str], str],
        # the runtime default (10, the core's DEFAULT_THRESHOLD) shows as `...`: a constant
        threshold: int = ...,
        prompt: Optional[str] = None,
        on_summary: Optional[Callable[[str, str], Any]] = None,
        format_actions: Optional[Callable[[List[ActionsPayload]], str]] = None,
        max_sessions: Optional[int] = None,
    ) -> Self: ...
    def add(self, payload: Any) -> Optional[SummaryPayload]: ...
    def flush(self, session_id: Optional[str] = None) -> Optional[SummaryPayload]: ...
    def get_context(self, session_id: str) -> str: ...
    def reset(self, session_id: str) -> None: ...
    @property
    def active_sessions(self) -> List[str]: ...
    def pending(self, session_id: str) -> int: ...
    @property
    def session_count(self) -> int: ...
    @property
    def threshold(self) -> int: ...
    @property
    def prompt(self) -> str: ...
    @property
    def max_sessions(self) -> Optional[int]: ...

@final
class _SummaryBatch:
    @property
    def session_id(self) -> str: ...
    @property
    def action_count(self) -> int: ...
    def payloads(self) -> List[ActionsPayload]: ...

@final
class _SummaryAccumulator:
    def __new__(
        cls,
        threshold: int = 10,
        prompt: Optional[str] = None,
        format_actions: Optional[Callable[[List[ActionsPayload]], str]] = None,
        max_sessions: Optional[int] = None,
    ) -> Self: ...
    def push(self, payload: Any) -> Optional[_SummaryBatch]: ...
    def take(self, session_id: str) -> Optional[_SummaryBatch]: ...
    def take_all(self) -> List[_SummaryBatch]: ...
    def prompt(self, batch: _SummaryBatch) -> Optional[str]: ...
    def conclude(self, batch: _SummaryBatch, text: Optional[str]) -> Optional[SummaryPayload]: ...
    def context(self, session_id: str) -> str: ...
    def reset(self, session_id: str) -> None: ...
    def active_sessions(self) -> List[str]: ...
    def pending(self, session_id: str) -> int: ...
    @property
    def session_count(self) -> int: ...
    @property
    def threshold(self) -> int: ...
    @property
    def prompt_template(self) -> str: ...
    @property
    def max_sessions(self) -> Optional[int]: ...

@final
class _ContextStore:
    def __new__(
        cls,
        *,
        include_summary: bool = True,
        include_actions: bool = True,
        lookback_seconds: Optional[float] = None,
        max_actions: Optional[int] = None,
        max_sessions: Optional[int] = None,
        max_stored_actions: int = 1000,
    ) -> Self: ...
    def add(self, payload: Any) -> None: ...
    def set_summary(self, session_id: str, summary: str) -> None: ...
    def get(
        self,
        session_id: str,
        product_id: Optional[str] = None,
        include_summary: Optional[bool] = None,
        include_actions: Optional[bool] = None,
        lookback: Optional[Tuple[Optional[float]]] = None,
        max_actions: Optional[Tuple[Optional[int]]] = None,
    ) -> str: ...
    def enrich(
        self,
        session_id: str,
        query: str,
        product_id: Optional[str] = None,
        include_summary: Optional[bool] = None,
        include_actions: Optional[bool] = None,
        lookback: Optional[Tuple[Optional[float]]] = None,
        max_actions: Optional[Tuple[Optional[int]]] = None,
    ) -> str: ...
    def reset(self, session_id: str, product_id: Optional[str] = None) -> None: ...
    @property
    def active_sessions(self) -> List[str]: ...
    @property
    def lookback_seconds(self) -> Optional[float]: ...
    @property
    def max_actions(self) -> Optional[int]: ...
    @property
    def max_sessions(self) -> Optional[int]: ...
    @property
    def max_stored_actions(self) -> int: ...
    @property
    def include_summary(self) -> bool: ...
    @property
    def include_actions(self) -> bool: ...

@disjoint_base
class RagPipeline:
    """Embeds each payload's `to_text()` and upserts it: `upsert(id, vector, metadata)`."""

    def __new__(
        cls,
        embed: Callable[[str], Any],
        upsert: Callable[[str, Any, Dict[str, Any]], Any],
        summarizer: Optional[SessionSummarizer] = None,
    ) -> Self: ...
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
        # the runtime's default (90.0) shows as `...`: PyO3 prints `Some(90.0)` so
        read_timeout_s: Optional[float] = ...,
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
