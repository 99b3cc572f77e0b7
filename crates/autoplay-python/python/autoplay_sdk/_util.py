"""Small helpers the native module calls back into."""

from __future__ import annotations

import inspect
from typing import Any, Callable


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
