"""Small helpers the native module calls back into."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import threading
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple


def wants_argument(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` can be called with one positional argument.

    ``on_connect``/``on_disconnect`` hooks are called with the URL / the reason when
    they take an argument, and with none otherwise (both forms exist in the field).
    """
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    for param in sig.parameters.values():
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD, param.VAR_POSITIONAL):
            return True
    return False


def dataclass_fields(name: str, spec: List[Tuple[str, str, Any]]) -> Dict[str, "dataclasses.Field[Any]"]:
    """The ``__dataclass_fields__`` of a dataclass with these ``(name, annotation,
    default)`` fields (a list or dict default stands for a ``default_factory`` of
    its type).

    The native payload classes carry this mapping, so ``dataclasses.fields``,
    ``asdict``, ``astuple``, ``replace`` and ``is_dataclass`` treat them as the
    dataclasses 0.13.0 had; the ``Field`` objects come from a real (shadow)
    dataclass rather than being built by hand from private names.
    """
    fields: List[Any] = []
    for field_name, annotation, default in spec:
        if isinstance(default, (list, dict)):
            fields.append((field_name, annotation, dataclasses.field(default_factory=type(default))))
        else:
            fields.append((field_name, annotation, dataclasses.field(default=default)))
    shadow = dataclasses.make_dataclass(name, fields)
    shadow_fields: Dict[str, "dataclasses.Field[Any]"] = getattr(shadow, "__dataclass_fields__")
    return dict(shadow_fields)


class LoopPerThread:
    """Private event loops on which a sync client runs ``async def`` callbacks: one
    per worker thread, made on first use and closed when the run ends (0.13.0 ran
    each coroutine with ``asyncio.run``, a new loop per event)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._loops: List[asyncio.AbstractEventLoop] = []

    def run(self, awaitable: Awaitable[Any]) -> Any:
        loop: Optional[asyncio.AbstractEventLoop] = getattr(self._local, "loop", None)
        if loop is None or loop.is_closed():
            loop = asyncio.new_event_loop()
            self._local.loop = loop
            with self._lock:
                self._loops.append(loop)
        return loop.run_until_complete(awaitable)

    def close(self) -> None:
        with self._lock:
            loops, self._loops = self._loops, []
        for loop in loops:
            # The worker threads have ended: no loop is running any more.
            if not loop.is_running():
                loop.close()
