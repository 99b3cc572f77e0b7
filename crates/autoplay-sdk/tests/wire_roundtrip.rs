//! The wire round trip: the connector's encoder (`wire::encode_frame` over the
//! payloads' stream JSON) → the SSE parser, fed in random chunks → payload decode
//! gives back the payload, whatever its strings hold (unicode, quotes, control
//! characters, line separators, long strings, empty fields).

mod support;

use autoplay_sdk::models::{ActionsPayload, Event, Properties, SlimAction, SummaryPayload};
use autoplay_sdk::sse::{SseItem, SseParser};
use autoplay_sdk::wire;
use proptest::prelude::*;

/// Any text, weighted towards what breaks encoders: JSON escapes, SSE line ends,
/// NUL, non-BMP characters, and long strings.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        any::<String>(),
        "[\"\\\\\n\r\u{0}\u{1}\u{7f}\u{2028}\u{2029}\u{feff}é—😀 :a-z]{0,40}",
        ("[a-zé😀]{1,4}", 1000..20_000usize).prop_map(|(s, n)| s.repeat(n / 4 + 1)),
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(text())
}

/// Unix times with a fractional part that decimal text carries exactly.
fn time() -> impl Strategy<Value = Option<f64>> {
    prop::option::of((0u32..4_000_000_000).prop_map(|s| f64::from(s) + 0.25))
}

fn action() -> impl Strategy<Value = SlimAction> {
    (
        (text(), text(), text(), text(), opt_text(), opt_text()),
        (
            prop::option::of((text(), text())),
            prop::option::of(any::<u64>()),
            time(),
            time(),
        ),
        (opt_text(), opt_text(), opt_text(), opt_text()),
    )
        .prop_map(
            |(
                (event_type, title, description, canonical_url, raw_url, ts),
                (property, index, timestamp_start, timestamp_end),
                (session_id, user_id, email, conversation_id),
            )| {
                let properties = match property {
                    Some((k, v)) => {
                        let json = serde_json::json!({ k: v }).to_string();
                        Properties::from_json(&json).unwrap()
                    }
                    None => Properties::default(),
                };
                SlimAction {
                    event_type: event_type.into(),
                    title: title.into(),
                    description: description.into(),
                    canonical_url: canonical_url.into(),
                    raw_url: raw_url.map(Into::into),
                    ts: ts.map(Into::into),
                    properties,
                    index,
                    timestamp_start,
                    timestamp_end,
                    session_id: session_id.map(Into::into),
                    user_id: user_id.map(Into::into),
                    email: email.map(Into::into),
                    conversation_id: conversation_id.map(Into::into),
                }
            },
        )
}

fn payload() -> impl Strategy<Value = Event> {
    let actions = (
        (opt_text(), opt_text(), opt_text(), opt_text(), opt_text()),
        (time(), opt_text()),
        prop::collection::vec(action(), 0..4),
    )
        .prop_map(
            |(
                (product_id, session_id, user_id, email, ts),
                (forwarded_at, conversation_id),
                actions,
            )| {
                Event::Actions(ActionsPayload {
                    product_id: product_id.map(Into::into),
                    session_id: session_id.map(Into::into),
                    user_id: user_id.map(Into::into),
                    email: email.map(Into::into),
                    ts: ts.map(Into::into),
                    forwarded_at,
                    actions,
                    conversation_id: conversation_id.map(Into::into),
                })
            },
        );
    let summary = (
        (opt_text(), opt_text(), text(), opt_text()),
        any::<u64>(),
        time(),
    )
        .prop_map(
            |((product_id, session_id, summary, ts), replaces, forwarded_at)| {
                Event::Summary(SummaryPayload {
                    product_id: product_id.map(Into::into),
                    session_id: session_id.map(Into::into),
                    summary: summary.into(),
                    replaces,
                    ts: ts.map(Into::into),
                    forwarded_at,
                })
            },
        );
    prop_oneof![actions, summary]
}

/// What the connector sends for `event`.
fn frame(id: u64, event: &Event) -> String {
    let name = match event {
        Event::Actions(_) => wire::ACTIONS_EVENT,
        Event::Summary(_) => wire::SUMMARY_EVENT,
    };
    wire::encode_frame(Some(id), name, &event.to_stream_json())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn encode_parse_decode_gives_back_the_payloads(
        events in prop::collection::vec((any::<u64>(), payload()), 1..4),
        heartbeat_at in any::<prop::sample::Index>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        // A heartbeat between frames changes nothing but liveness.
        let at = heartbeat_at.index(events.len() + 1);
        let mut bytes = Vec::new();
        for (i, (id, event)) in events.iter().enumerate() {
            if i == at {
                bytes.extend_from_slice(wire::HEARTBEAT_FRAME);
            }
            bytes.extend_from_slice(frame(*id, event).as_bytes());
        }
        if at == events.len() {
            bytes.extend_from_slice(wire::HEARTBEAT_FRAME);
        }

        let mut parser = SseParser::new();
        let mut parsed = Vec::new();
        for chunk in support::cut_at(&bytes, &cuts) {
            parser.feed(chunk, |item| parsed.push(item)).unwrap();
        }
        let mut decoded = Vec::new();
        for item in parsed {
            let SseItem::Event(sse) = item else {
                return Err(TestCaseError::fail(format!("not an event: {item:?}")));
            };
            if sse.event == wire::HEARTBEAT_EVENT {
                prop_assert_eq!(sse.data.as_str(), "");
                continue;
            }
            let payload = Event::decode(&sse.data, &sse.event)
                .map_err(|e| TestCaseError::fail(format!("{e}: {:?}", sse.data)))?;
            decoded.push((sse.id.as_deref().map(str::to_owned), payload));
        }
        let expected: Vec<(Option<String>, Event)> = events
            .iter()
            .map(|(id, event)| (Some(id.to_string()), event.clone()))
            .collect();
        prop_assert_eq!(decoded, expected);
        let last_id = events.last().map(|(id, _)| id.to_string());
        prop_assert_eq!(parser.last_event_id().map(str::to_owned), last_id);
    }

    /// Data with line ends becomes several `data:` lines and comes back with LF.
    #[test]
    fn multi_line_data_comes_back_with_lf(
        data in "[a-z \n\u{e9}😀]{0,60}",
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let frame = wire::encode_frame(None, "x", &data);
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for chunk in support::cut_at(frame.as_bytes(), &cuts) {
            parser.feed(chunk, |item| if let SseItem::Event(e) = item { events.push(e) }).unwrap();
        }
        prop_assert_eq!(events.len(), 1);
        prop_assert_eq!(events[0].data.as_str(), data.as_str());
    }
}
