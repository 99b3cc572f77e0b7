"""``autoplay_sdk.core.models``: the payload classes (0.13.0's module path).

They behave as 0.13.0's dataclasses (``dataclasses.replace``, ``asdict``,
``fields``, assignment, ``==``), decoded in Rust. ``to_text()`` gives the 0.1.0
page's ``1. <description> — <url>`` lines; ``to_text(style="indexed")``, or
``set_text_style("indexed")`` once for the process, gives 0.13.0's
``[<index>] <type>: <description> — <url>``.
"""

from __future__ import annotations

from typing import Union

from .._native import ActionsPayload, SlimAction, SummaryPayload, set_text_style

AnyPayload = Union[ActionsPayload, SummaryPayload]
"""Either payload a stream carries."""

__all__ = ["ActionsPayload", "AnyPayload", "SlimAction", "SummaryPayload", "set_text_style"]
