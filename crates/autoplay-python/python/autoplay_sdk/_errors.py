"""Exceptions raised by autoplay_sdk. Every one subclasses :class:`SdkError`.

The published 0.13.0 names (``SdkError``, ``SdkConfigError``, ``SdkUpstreamError``,
``SdkBufferFullError``) are here too, with ours as their subclasses, so code written
for either catches what it expects::

    SdkError
    ├── SdkConfigError
    │   └── InvalidConfigError        (also a ValueError)
    ├── SdkUpstreamError
    │   ├── FatalStatusError          (401, 403, 404, 204: not retried)
    │   └── RetriesExhaustedError     (max_retries failed attempts in a row)
    ├── SdkBufferFullError
    └── AlreadyRunningError           (also a RuntimeError)
"""

from __future__ import annotations

from typing import Optional


class SdkError(Exception):
    """Base class of every error the SDK raises.

    ``status_code`` is the HTTP status when the connector refused the stream, else ``None``.
    """

    status_code: Optional[int] = None


class SdkConfigError(SdkError):
    """The SDK is misconfigured (0.13.0's name); this package raises its subclass
    :class:`InvalidConfigError`, which is also a ``ValueError``."""


class SdkUpstreamError(SdkError):
    """The stream cannot be had from the connector (0.13.0's name): a status that is
    not retried (:class:`FatalStatusError`) or ``max_retries`` exhausted
    (:class:`RetriesExhaustedError`)."""


class SdkBufferFullError(SdkError):
    """0.13.0's error for a saturated internal buffer, kept so that ``except`` clauses
    naming it still work. Neither 0.13.0 nor this package raises it: a full queue
    drops events by the ``overflow_policy`` (see ``on_drop`` and ``dropped_count``)
    or, with ``"block"``, slows the reader."""


class FatalStatusError(SdkUpstreamError):
    """The connector answered a status that retrying cannot fix (401, 403, 404) or
    that tells the client to stop (204). ``run()`` raises it at once, without retrying."""

    def __init__(self, message: str, status_code: int, url: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.url = url


class RetriesExhaustedError(SdkUpstreamError):
    """``max_retries`` consecutive connection attempts failed."""

    def __init__(self, message: str, attempts: int, url: str, last_failure: str) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.url = url
        self.last_failure = last_failure


class InvalidConfigError(SdkConfigError, ValueError):
    """An option cannot work; the message says what to fix."""


class AlreadyRunningError(SdkError, RuntimeError):
    """``run()`` was called while the same client was already running."""
