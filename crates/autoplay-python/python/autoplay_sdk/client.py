"""``autoplay_sdk.client``: the module path 0.13.0 users import :class:`ConnectorClient` from.

    from autoplay_sdk.client import ConnectorClient
"""

from __future__ import annotations

from ._native import ConnectorClient

__all__ = ["ConnectorClient"]
