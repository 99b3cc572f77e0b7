"""0.13.0's ``autoplay_sdk.summarizer``: the session summarizers."""

from ._async import AsyncSessionSummarizer
from ._native import SessionSummarizer

__all__ = ["AsyncSessionSummarizer", "SessionSummarizer"]
