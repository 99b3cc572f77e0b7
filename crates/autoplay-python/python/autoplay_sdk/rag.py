"""0.13.0's ``autoplay_sdk.rag``: the RAG ingest pipelines."""

from ._async import AsyncRagPipeline
from ._native import RagPipeline

__all__ = ["AsyncRagPipeline", "RagPipeline"]
