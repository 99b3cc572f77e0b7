"""0.13.0's ``autoplay_sdk.buffer``: the in-memory ``EventBuffer``."""

from ._native import EventBuffer

__all__ = ["EventBuffer"]
