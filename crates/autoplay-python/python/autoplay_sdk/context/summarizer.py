"""``SessionSummarizer`` and ``AsyncSessionSummarizer`` where 0.13.0 has them
(``autoplay_sdk.context.summarizer``)."""

from .._async import AsyncSessionSummarizer
from .._native import DEFAULT_PROMPT, SessionSummarizer

__all__ = ["DEFAULT_PROMPT", "AsyncSessionSummarizer", "SessionSummarizer"]
