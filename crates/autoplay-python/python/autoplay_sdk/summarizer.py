"""0.13.0's ``autoplay_sdk.summarizer``: the session summarizers."""

from ._async import AsyncSessionSummarizer
from ._native import DEFAULT_PROMPT, SessionSummarizer

__all__ = ["DEFAULT_PROMPT", "AsyncSessionSummarizer", "SessionSummarizer"]
