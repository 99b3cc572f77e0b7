//! Typed payloads against every wire shape in `fixtures/wire`.

use autoplay_sdk::models::Properties;
use autoplay_sdk::{ActionsPayload, DecodeError, Event, SlimAction, SummaryPayload};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("fixtures/wire/", $name))
    };
}

/// The `.to_text.txt` fixtures end with one newline that is not part of the text.
fn expected_text(file: &str) -> &str {
    file.strip_suffix('\n')
        .expect("fixture ends with a newline")
}

fn actions(json: &str) -> ActionsPayload {
    match Event::from_json(json).unwrap() {
        Event::Actions(p) => p,
        other => panic!("expected actions, got {other:?}"),
    }
}

fn summary(json: &str) -> SummaryPayload {
    match Event::from_json(json).unwrap() {
        Event::Summary(p) => p,
        other => panic!("expected a summary, got {other:?}"),
    }
}

#[test]
fn to_text_matches_every_fixture() {
    let cases = [
        (
            fixture!("actions-canonical.json"),
            fixture!("actions-canonical.to_text.txt"),
        ),
        (
            fixture!("actions-readme-shape.json"),
            fixture!("actions-readme-shape.to_text.txt"),
        ),
        (
            fixture!("actions-later-shape.json"),
            fixture!("actions-later-shape.to_text.txt"),
        ),
        (
            fixture!("actions-anonymous-count-mismatch.json"),
            fixture!("actions-anonymous-count-mismatch.to_text.txt"),
        ),
    ];
    for (json, text) in cases {
        assert_eq!(actions(json).to_text(), expected_text(text), "{json}");
    }
}

#[test]
fn canonical_fixture_round_trips_byte_for_byte() {
    let json = fixture!("actions-canonical.json").trim_end();
    let payload = actions(json);
    assert_eq!(payload.to_json(), json);
    assert_eq!(payload.count(), 3);
    assert_eq!(
        payload.actions[2].raw_url.as_deref(),
        Some("https://app.example.com/settings/8812/billing")
    );
    assert_eq!(
        payload.actions[0].properties.to_map()["referrer"],
        "https://app.example.com/login"
    );
    assert_eq!(payload.forwarded_at, Some(1_705_314_605.25));
}

#[test]
fn readme_shape_defaults_missing_fields() {
    let payload = actions(fixture!("actions-readme-shape.json"));
    assert_eq!(payload.product_id, None);
    assert_eq!(payload.ts.as_deref(), Some("2024-01-15T10:30:00Z"));
    assert_eq!(payload.actions[0].event_type, "pageview");
    assert_eq!(payload.actions[0].description, "");
    assert_eq!(
        payload.actions[1].ts.as_deref(),
        Some("2024-01-15T10:30:05Z")
    );
}

#[test]
fn later_shape_reads_type_index_timestamps_and_per_action_ids() {
    let payload = actions(fixture!("actions-later-shape.json"));
    let action = &payload.actions[0];
    assert_eq!(action.event_type, "click");
    assert_eq!(action.index, Some(0));
    assert_eq!(action.timestamp_start, Some(1_712_345_670.5));
    assert_eq!(action.timestamp_end, Some(1_712_345_678.9));
    assert_eq!(action.raw_url.as_deref(), Some("/products/shoes?ref=home"));
    assert_eq!(action.session_id.as_deref(), Some("ph_sess_abc123"));
    assert_eq!(action.conversation_id, None, "null in the fixture");
    assert_eq!(payload.email, None);
    // Later-shape fields survive a round trip.
    let again = actions(&payload.to_json());
    assert_eq!(again, payload);
}

/// `conversation_id` (0.13.0's shape) is read when present, numbers as their text,
/// and written only when present: the canonical shape has no such key.
#[test]
fn conversation_id_is_read_when_present_and_written_only_then() {
    let action: SlimAction =
        serde_json::from_str(r#"{"title":"Chat","conversation_id":"conv_1"}"#).unwrap();
    assert_eq!(action.conversation_id.as_deref(), Some("conv_1"));
    let json = serde_json::to_string(&action).unwrap();
    assert_eq!(
        key_order(&json).last().map(String::as_str),
        Some("conversation_id")
    );
    assert_eq!(serde_json::from_str::<SlimAction>(&json).unwrap(), action);
    assert!(
        action
            .to_stream_json()
            .contains(r#""conversation_id":"conv_1""#)
    );

    let numeric: SlimAction = serde_json::from_str(r#"{"conversation_id":42}"#).unwrap();
    assert_eq!(numeric.conversation_id.as_deref(), Some("42"));
    let twice =
        serde_json::from_str::<SlimAction>(r#"{"conversation_id":"a","conversation_id":"b"}"#);
    assert!(
        twice
            .unwrap_err()
            .to_string()
            .contains("duplicate field `conversation_id`")
    );

    // Absent or null: None, and no key in the canonical JSON.
    let later = actions(fixture!("actions-later-shape.json"));
    assert_eq!(later.actions[0].conversation_id, None);
    assert!(!later.to_json().contains("conversation_id"));
    let canonical = fixture!("actions-canonical.json").trim_end();
    assert_eq!(actions(canonical).to_json(), canonical);

    // Through a whole payload, in the connector's frames too.
    let mut payload = actions(canonical);
    payload.actions[1].conversation_id = Some("conv_7".into());
    assert_eq!(actions(&payload.to_json()), payload);
    assert_eq!(actions(&payload.to_stream_json()), payload);

    // At the top of the payload too (0.13.0 reads it there).
    let linked = actions(
        r#"{"type":"actions","session_id":"s","conversation_id":"conv_9","actions":[{"title":"a"}]}"#,
    );
    assert_eq!(linked.conversation_id.as_deref(), Some("conv_9"));
    let json = linked.to_json();
    assert_eq!(
        key_order(&json).last().map(String::as_str),
        Some("conversation_id")
    );
    assert_eq!(actions(&json), linked);
    assert_eq!(actions(&linked.to_stream_json()), linked);
    assert_eq!(
        actions(r#"{"type":"actions","conversation_id":7}"#)
            .conversation_id
            .as_deref(),
        Some("7")
    );
    assert_eq!(actions(canonical).conversation_id, None);
    let unlinked = ActionsPayload {
        conversation_id: None,
        ..linked.clone()
    };
    assert_eq!(
        ActionsPayload::merge(&[unlinked.clone(), linked.clone(), unlinked])
            .unwrap()
            .conversation_id
            .as_deref(),
        Some("conv_9"),
        "merge takes the first batch that has one"
    );
}

#[test]
fn count_mismatch_is_reconciled_to_the_list() {
    let payload = actions(fixture!("actions-anonymous-count-mismatch.json"));
    assert_eq!(payload.count(), 1);
    assert_eq!(payload.session_id, None);
    let canonical: serde_json::Value = serde_json::from_str(&payload.to_json()).unwrap();
    assert_eq!(canonical["count"], 1);
    assert_eq!(canonical["session_id"], serde_json::Value::Null);
}

#[test]
fn summaries_in_both_shapes() {
    let code = summary(fixture!("summary-code-shape.json"));
    assert_eq!(code.replaces, 12);
    assert_eq!(
        code.summary,
        "The user browsed shoes, added a pair to their cart, and reached checkout."
    );
    assert_eq!(code.to_text(), code.summary);
    let readme = summary(fixture!("summary-readme-shape.json"));
    assert!(
        readme
            .summary
            .starts_with("The user navigated to the Dashboard")
    );
    assert_eq!(readme.replaces, 0);
    assert_eq!(readme.ts.as_deref(), Some("2024-01-15T10:35:00Z"));
}

/// Top-level keys of a JSON object in the order they are written (serde_json's
/// `Value` sorts them, so read them with a streaming visitor instead).
fn key_order(json: &str) -> Vec<String> {
    struct Keys(Vec<String>);
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            mut self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                self.0.push(key);
            }
            Ok(self.0)
        }
    }
    let mut de = serde_json::Deserializer::from_str(json);
    serde::Deserializer::deserialize_map(&mut de, Keys(Vec::new())).unwrap()
}

#[test]
fn canonical_shape_has_every_field_with_nulls() {
    let json = summary(fixture!("summary-readme-shape.json")).to_json();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        key_order(&json),
        [
            "type",
            "product_id",
            "session_id",
            "summary",
            "replaces",
            "ts",
            "forwarded_at"
        ]
    );
    assert_eq!(value["product_id"], serde_json::Value::Null);

    let payload = actions(fixture!("actions-readme-shape.json"));
    let json = payload.to_json();
    assert_eq!(
        key_order(&json),
        [
            "type",
            "product_id",
            "session_id",
            "user_id",
            "email",
            "ts",
            "forwarded_at",
            "count",
            "actions"
        ]
    );
    assert_eq!(
        key_order(&serde_json::to_string(&payload.actions[0]).unwrap()),
        [
            "event_type",
            "title",
            "description",
            "canonical_url",
            "raw_url",
            "ts",
            "properties"
        ]
    );
}

#[test]
fn every_fixture_round_trips_through_serde() {
    for json in [
        fixture!("actions-canonical.json"),
        fixture!("actions-readme-shape.json"),
        fixture!("actions-later-shape.json"),
        fixture!("actions-anonymous-count-mismatch.json"),
        fixture!("summary-code-shape.json"),
        fixture!("summary-readme-shape.json"),
    ] {
        let event = Event::from_json(json).unwrap();
        let back: Event = serde_json::from_str(&serde_json::to_string(&event).unwrap()).unwrap();
        assert_eq!(back, event, "{json}");
    }
}

#[test]
fn typed_deserialize_checks_the_kind() {
    let summary_json = fixture!("summary-code-shape.json");
    assert!(serde_json::from_str::<SummaryPayload>(summary_json).is_ok());
    let err = serde_json::from_str::<ActionsPayload>(summary_json).unwrap_err();
    assert!(err.to_string().contains("found a summary"), "{err}");
}

#[test]
fn unknown_fields_are_ignored_and_bad_input_is_a_clear_error() {
    let event = Event::from_json(
        r#"{"type":"actions","future_field":{"x":[1]},"actions":[{"title":"t","new":1}]}"#,
    );
    assert_eq!(event.unwrap().kind(), "actions");
    assert!(matches!(
        Event::from_json("not json"),
        Err(DecodeError::Json(_))
    ));
    assert!(
        matches!(Event::from_json(r#"{"type":"mystery"}"#), Err(DecodeError::UnknownType(t)) if t == "mystery")
    );
    assert!(matches!(
        Event::from_json(r#"{"actions":[]}"#),
        Err(DecodeError::MissingType)
    ));
    assert!(matches!(
        Event::decode(r#"{"actions":[]}"#, "actions"),
        Ok(Event::Actions(_))
    ));
}

#[test]
fn slim_action_text_falls_back_to_the_title() {
    let action = SlimAction {
        title: "Home".into(),
        canonical_url: "/".into(),
        ..Default::default()
    };
    assert_eq!(action.to_text(), "Home \u{2014} /");
    let action = SlimAction {
        description: "Viewed Home".into(),
        ..action
    };
    assert_eq!(action.to_text(), "Viewed Home \u{2014} /");
}

#[test]
fn empty_session_text() {
    assert_eq!(
        ActionsPayload::default().to_text(),
        "Session unknown \u{2014} 0 actions"
    );
}

#[test]
fn properties_parse_and_compare_by_value() {
    let a = Properties::from_json(r#"{"a": 1, "b": [true]}"#).unwrap();
    let b = Properties::from_json(r#"{"a":1,"b":[true]}"#).unwrap();
    assert_eq!(a, b);
    assert!(Properties::from_json("[1]").is_err());
    assert!(Properties::default().is_empty());
}

#[test]
fn actions_decode_from_a_json_value_too() {
    let value = serde_json::json!({"title": "t", "properties": {"a": [1, 2]}});
    let action: SlimAction = serde_json::from_value(value).unwrap();
    assert_eq!(action.properties.to_map()["a"], serde_json::json!([1, 2]));
    let value = serde_json::json!({"type": "actions", "actions": [{"properties": {}}]});
    let payload: ActionsPayload = serde_json::from_value(value).unwrap();
    assert!(payload.actions[0].properties.is_empty());
}

/// The connector's frames carry both generations' names: `type` beside
/// `event_type` on each action, and they decode as the canonical JSON does.
#[test]
fn stream_json_carries_type_beside_event_type() {
    let mut payload = actions(fixture!("actions-canonical.json"));
    payload.actions[0].index = Some(0);
    payload.actions[0].timestamp_start = Some(1_705_314_600.0);
    payload.actions[0].timestamp_end = Some(1_705_314_603.0);
    let stream = payload.to_stream_json();
    let value: serde_json::Value = serde_json::from_str(&stream).unwrap();
    for action in value["actions"].as_array().unwrap() {
        assert_eq!(action["type"], action["event_type"], "{action}");
    }
    assert_eq!(
        key_order(&serde_json::to_string(&value["actions"][0]).unwrap()).len(),
        11
    );
    let first = &stream[stream.find("\"actions\":[").unwrap()..];
    assert!(
        first.starts_with(
            "\"actions\":[{\"event_type\":\"pageview\",\"type\":\"pageview\",\"title\""
        ),
        "{first}"
    );
    assert_eq!(actions(&stream), payload);
    assert_eq!(Event::Actions(payload.clone()).to_stream_json(), stream);
    // The canonical JSON is unchanged by it.
    assert!(!payload.to_json().contains("\"type\":\"pageview\""));
    let summary = summary(fixture!("summary-code-shape.json"));
    assert_eq!(
        Event::Summary(summary.clone()).to_stream_json(),
        summary.to_json()
    );
}

/// Found by the `payload_decode` fuzz target: without serde_json's exact float
/// parsing, `1.2222222222222221e+33` decoded one bit off, so re-encoding a payload
/// changed its `forwarded_at`.
#[test]
fn times_survive_decode_and_re_encode_exactly() {
    for text in [
        "1.2222222222222221e+33",
        "1712345678.123456",
        "0.1",
        "5e-324",
    ] {
        let json = format!(r#"{{"type":"summary","summary":"s","forwarded_at":{text}}}"#);
        let first = summary(&json);
        assert_eq!(
            first.forwarded_at,
            Some(text.parse::<f64>().unwrap()),
            "{text}"
        );
        let again = summary(&first.to_json());
        assert_eq!(again.forwarded_at, first.forwarded_at, "{text}");
    }
}
