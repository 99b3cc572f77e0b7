"""``autoplay_sdk.async_client``: the module path 0.13.0 users import
:class:`AsyncConnectorClient` from.

    from autoplay_sdk.async_client import AsyncConnectorClient
"""

from __future__ import annotations

from ._async import AsyncConnectorClient

__all__ = ["AsyncConnectorClient"]
