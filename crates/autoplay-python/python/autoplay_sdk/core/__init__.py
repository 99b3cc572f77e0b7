"""``autoplay_sdk.core``: 0.13.0's module of the payload models, the error hierarchy
and the metrics hook protocol, under the names 0.13.0 users import."""

from __future__ import annotations

from .exceptions import SdkBufferFullError, SdkConfigError, SdkError, SdkUpstreamError
from .metrics import SdkMetricsHook
from .models import ActionsPayload, AnyPayload, SlimAction, SummaryPayload

__all__ = [
    "ActionsPayload",
    "AnyPayload",
    "SdkBufferFullError",
    "SdkConfigError",
    "SdkError",
    "SdkMetricsHook",
    "SdkUpstreamError",
    "SlimAction",
    "SummaryPayload",
]
