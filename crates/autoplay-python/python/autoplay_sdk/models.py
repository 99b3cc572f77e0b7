"""``autoplay_sdk.models``: the payload classes under the module path of earlier
releases (0.13.0 has them in :mod:`autoplay_sdk.core.models` too).

    from autoplay_sdk.models import ActionsPayload, SlimAction, SummaryPayload
"""

from __future__ import annotations

from .core.models import ActionsPayload, AnyPayload, SlimAction, SummaryPayload, set_text_style

__all__ = ["ActionsPayload", "AnyPayload", "SlimAction", "SummaryPayload", "set_text_style"]
