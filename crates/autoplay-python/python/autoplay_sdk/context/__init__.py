"""Session context for prompts (0.13.0's ``autoplay_sdk.context``): summarizers and
the context store."""

from .context_store import AsyncContextStore, ContextStore
from .summarizer import AsyncSessionSummarizer, SessionSummarizer

__all__ = ["AsyncContextStore", "AsyncSessionSummarizer", "ContextStore", "SessionSummarizer"]
