"""Session context for prompts (0.13.0's ``autoplay_sdk.context``): summarizers and
the context store."""

from .context_store import AsyncContextStore, ContextStore
from .summarizer import DEFAULT_PROMPT, AsyncSessionSummarizer, SessionSummarizer

__all__ = ["DEFAULT_PROMPT", "AsyncContextStore", "AsyncSessionSummarizer", "ContextStore", "SessionSummarizer"]
