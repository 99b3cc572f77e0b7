"""``autoplay_sdk.core.exceptions``: the error hierarchy (0.13.0's module path).

Every error the package raises subclasses :class:`SdkError`; the errors it raises
are subclasses of 0.13.0's, so ``except SdkUpstreamError`` catches a
:class:`~autoplay_sdk.FatalStatusError` or :class:`~autoplay_sdk.RetriesExhaustedError`,
and ``except SdkConfigError`` an :class:`~autoplay_sdk.InvalidConfigError`.
"""

from __future__ import annotations

from .._errors import SdkBufferFullError, SdkConfigError, SdkError, SdkUpstreamError

__all__ = ["SdkBufferFullError", "SdkConfigError", "SdkError", "SdkUpstreamError"]
