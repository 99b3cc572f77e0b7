"""0.13.0's token variable and error names, against the real connector."""

from __future__ import annotations

import asyncio
import time
from typing import List

import pytest

import autoplay_sdk
from autoplay_sdk import (
    ActionsPayload,
    AsyncConnectorClient,
    ConnectorClient,
    FatalStatusError,
    InvalidConfigError,
    RetriesExhaustedError,
    SdkBufferFullError,
    SdkConfigError,
    SdkError,
    SdkUpstreamError,
)

from conftest import Connector, free_port


def receive_one(connector: Connector, client: ConnectorClient) -> List[str]:
    got: List[str] = []

    def on_actions(p: ActionsPayload) -> None:
        got.append(p.session_id or "")
        client.stop()

    client.on_actions(on_actions)
    thread = client.run_in_background()
    deadline = time.monotonic() + 10
    # Posted until one arrives: an event posted before the client connected is not sent.
    while thread.is_alive() and time.monotonic() < deadline:
        connector.post_actions("ps_env")
        thread.join(0.2)
    assert not thread.is_alive()
    return got[:1]


def test_the_0_13_token_variable_is_used_when_ours_is_unset(
    connector: Connector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUTOPLAY_TOKEN", raising=False)
    monkeypatch.setenv("AUTOPLAY_APP_UNKEY_TOKEN", f" {connector.key}\n")
    assert receive_one(connector, ConnectorClient(url=connector.url)) == ["ps_env"]


def test_our_token_variable_wins_over_0_13s(
    connector: Connector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOPLAY_TOKEN", "ak_wrong")
    monkeypatch.setenv("AUTOPLAY_APP_UNKEY_TOKEN", connector.key)
    with pytest.raises(FatalStatusError) as e:
        ConnectorClient(url=connector.url).run()
    assert e.value.status_code == 401


def test_an_explicit_token_wins_over_both(
    connector: Connector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOPLAY_TOKEN", "ak_wrong")
    monkeypatch.setenv("AUTOPLAY_APP_UNKEY_TOKEN", "ak_wrong_too")
    client = ConnectorClient(url=connector.url, token=connector.key)
    assert receive_one(connector, client) == ["ps_env"]


def test_the_async_client_reads_the_token_variables_when_it_starts(
    connector: Connector, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Resolved by the core when a run starts, as for ConnectorClient: set after the
    # client was made, trimmed, ours before 0.13.0's.
    monkeypatch.delenv("AUTOPLAY_TOKEN", raising=False)
    monkeypatch.delenv("AUTOPLAY_APP_UNKEY_TOKEN", raising=False)
    client = AsyncConnectorClient(url=connector.url, max_retries=0)

    async def first() -> str:
        async def post_until_stopped() -> None:
            while True:
                await asyncio.to_thread(connector.post_actions, "ps_async_env")
                await asyncio.sleep(0.2)

        poster = asyncio.ensure_future(post_until_stopped())
        try:
            async for payload in client.events():
                assert isinstance(payload, ActionsPayload)
                return payload.session_id or ""
            return ""
        finally:
            poster.cancel()

    monkeypatch.setenv("AUTOPLAY_APP_UNKEY_TOKEN", f" {connector.key}\n")
    assert asyncio.run(asyncio.wait_for(first(), 10)) == "ps_async_env"

    monkeypatch.setenv("AUTOPLAY_TOKEN", "ak_wrong")
    with pytest.raises(FatalStatusError) as e:
        asyncio.run(asyncio.wait_for(first(), 10))
    assert e.value.status_code == 401


def test_the_0_13_error_names_catch_what_we_raise(connector: Connector) -> None:
    with pytest.raises(SdkUpstreamError) as refused:
        ConnectorClient(url=connector.url, token="ak_wrong").run()
    assert isinstance(refused.value, FatalStatusError) and refused.value.status_code == 401

    dead = f"http://127.0.0.1:{free_port()}/stream/test"
    with pytest.raises(SdkUpstreamError) as exhausted:
        ConnectorClient(url=dead, token="k", max_retries=1, initial_backoff_s=0.01).run()
    assert isinstance(exhausted.value, RetriesExhaustedError)

    for bad in (dict(overflow_policy="sometimes"), dict(initial_backoff_s=-1.0)):
        with pytest.raises(SdkConfigError) as config:
            ConnectorClient(url=connector.url, token="k", **bad)
        assert isinstance(config.value, InvalidConfigError)
        assert isinstance(config.value, ValueError)


def test_the_0_13_hierarchy() -> None:
    for name in ("SdkConfigError", "SdkUpstreamError", "SdkBufferFullError"):
        assert issubclass(getattr(autoplay_sdk, name), SdkError)
        assert name in autoplay_sdk.__all__
    assert issubclass(InvalidConfigError, SdkConfigError)
    assert issubclass(FatalStatusError, SdkUpstreamError)
    assert issubclass(RetriesExhaustedError, SdkUpstreamError)
    assert not issubclass(SdkBufferFullError, (SdkConfigError, SdkUpstreamError))
