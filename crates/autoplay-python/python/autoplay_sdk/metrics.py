"""``autoplay_sdk.metrics``: the path the 0.13.0 README imports
:class:`SdkMetricsHook` from (0.13.0 itself has it only in
:mod:`autoplay_sdk.core.metrics`).

    from autoplay_sdk.metrics import SdkMetricsHook
"""

from __future__ import annotations

from .core.metrics import SdkMetricsHook

__all__ = ["SdkMetricsHook"]
