"""Payload classes: decoding every wire shape, to_text, dict round trips, equality, repr."""

from __future__ import annotations

import json

import pytest

from autoplay_sdk import (
    ActionsPayload,
    AnyPayload,
    SdkError,
    SlimAction,
    SummaryPayload,
    decode_payload,
)

from conftest import WIRE_FIXTURES


@pytest.mark.parametrize(
    "name",
    ["actions-canonical", "actions-readme-shape", "actions-later-shape", "actions-anonymous-count-mismatch"],
)
def test_actions_fixtures_decode_and_to_text(name: str) -> None:
    data = json.loads((WIRE_FIXTURES / f"{name}.json").read_text())
    expected = (WIRE_FIXTURES / f"{name}.to_text.txt").read_text()
    payload = ActionsPayload.from_dict(data)
    assert payload.to_text() == expected.rstrip("\n")
    assert payload.count == len(payload.actions)
    assert all(isinstance(a, SlimAction) for a in payload.actions)
    # canonical round trip
    again = ActionsPayload.from_dict(payload.to_dict())
    assert again == payload
    assert again.to_dict() == payload.to_dict()


def test_canonical_attributes() -> None:
    data = json.loads((WIRE_FIXTURES / "actions-canonical.json").read_text())
    p = ActionsPayload.from_dict(data)
    assert p.product_id == "acme"
    assert p.session_id == "ps_abc123"
    assert p.user_id == "user_456"
    assert p.email == "alice@example.com"
    assert p.count == 3
    assert p.forwarded_at == 1705314605.25
    first = p.actions[0]
    assert first.title == "Dashboard"
    assert first.description == "Viewed Dashboard"
    assert first.canonical_url == "https://app.example.com/dashboard"
    assert first.event_type == "pageview"
    assert first.properties == {"referrer": "https://app.example.com/login"}
    assert first.to_text() == "Viewed Dashboard \u2014 https://app.example.com/dashboard"
    assert p.to_dict() == data


def test_conversation_id_is_read_when_present_and_written_only_then() -> None:
    later = ActionsPayload.from_dict(json.loads((WIRE_FIXTURES / "actions-later-shape.json").read_text()))
    assert later.actions[0].conversation_id is None  # `null` in the fixture
    assert "conversation_id" not in later.actions[0].to_dict()

    a = SlimAction.from_dict({"title": "Chat", "conversation_id": "conv_1"})
    assert a.conversation_id == "conv_1"
    assert a.to_dict()["conversation_id"] == "conv_1"
    assert SlimAction.from_dict(a.to_dict()) == a
    assert SlimAction.from_dict({"conversation_id": 42}).conversation_id == "42"
    assert SlimAction(title="Chat", conversation_id="conv_1") == a
    assert SlimAction(title="Chat") != a
    assert SlimAction().conversation_id is None
    # in a payload, through its canonical JSON
    p = ActionsPayload(session_id="s", actions=[a, {"title": "x"}])
    again = ActionsPayload.from_dict(json.loads(p.to_json()))
    assert [x.conversation_id for x in again.actions] == ["conv_1", None]


def test_summary_shapes() -> None:
    code = SummaryPayload.from_dict(json.loads((WIRE_FIXTURES / "summary-code-shape.json").read_text()))
    readme = SummaryPayload.from_dict(json.loads((WIRE_FIXTURES / "summary-readme-shape.json").read_text()))
    for s in (code, readme):
        assert s.to_text() == s.summary
        assert s.summary
        assert s.session_id
    assert SummaryPayload.from_dict(code.to_dict()) == code
    assert code.to_dict()["type"] == "summary"


def test_constructors_equality_and_repr() -> None:
    a = ActionsPayload(
        session_id="ps_1",
        actions=[SlimAction(title="Sign up", canonical_url="/signup"), {"title": "Pricing", "canonical_url": "/pricing"}],
    )
    b = ActionsPayload.from_dict(
        {"session_id": "ps_1", "actions": [{"title": "Sign up", "canonical_url": "/signup"}, {"title": "Pricing", "canonical_url": "/pricing"}]}
    )
    assert a == b
    assert a != ActionsPayload(session_id="ps_2")
    assert a.to_text() == "Session ps_1 \u2014 2 actions\n1. Sign up \u2014 /signup\n2. Pricing \u2014 /pricing"
    assert ActionsPayload().to_text() == "Session unknown \u2014 0 actions"
    assert repr(a).startswith("ActionsPayload(") and "session_id='ps_1'" in repr(a) and "count=2" in repr(a)
    s = SummaryPayload(session_id="ps_1", summary="Did things.", replaces=4)
    # dataclass-style, as 0.13.0's: every field, with its default for a missing one
    assert repr(s) == "SummaryPayload(product_id='', session_id='ps_1', summary='Did things.', replaces=4, forwarded_at=0.0, ts=None)"
    assert s == SummaryPayload.from_dict({"session_id": "ps_1", "content": "Did things.", "replaces": 4})
    assert "title='Sign up'" in repr(a.actions[0])


def test_decode_payload_and_any_payload() -> None:
    p: AnyPayload = decode_payload('{"type":"summary","summary":"x"}')
    assert isinstance(p, SummaryPayload)
    q = decode_payload({"type": "actions", "actions": []})
    assert isinstance(q, ActionsPayload)
    with pytest.raises(SdkError):
        decode_payload('{"type":"nope"}')
    with pytest.raises(ValueError):
        ActionsPayload.from_dict({"actions": 5})
