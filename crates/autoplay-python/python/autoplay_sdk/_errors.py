"""Exceptions raised by autoplay_sdk. Every one subclasses :class:`SdkError`."""

from __future__ import annotations

from typing import Optional


class SdkError(Exception):
    """Base class of every error the SDK raises.

    ``status_code`` is the HTTP status when the connector refused the stream, else ``None``.
    """

    status_code: Optional[int] = None


class FatalStatusError(SdkError):
    """The connector answered a status that retrying cannot fix (401, 403, 404) or
    that tells the client to stop (204). ``run()`` raises it at once, without retrying."""

    def __init__(self, message: str, status_code: int, url: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.url = url


class RetriesExhaustedError(SdkError):
    """``max_retries`` consecutive connection attempts failed."""

    def __init__(self, message: str, attempts: int, url: str, last_failure: str) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.url = url
        self.last_failure = last_failure


class InvalidConfigError(SdkError, ValueError):
    """An option cannot work; the message says what to fix."""


class AlreadyRunningError(SdkError, RuntimeError):
    """``run()`` was called while the same client was already running."""
