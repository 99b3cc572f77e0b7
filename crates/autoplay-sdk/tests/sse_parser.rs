//! The SSE parser against the WHATWG rules, and chunking independence: every split
//! point, one byte at a time, and random chunkings (proptest).

mod support;

use autoplay_sdk::sse::{SseEvent, SseItem, SseParser};
use proptest::prelude::*;

const FIXTURE: &[u8] = include_bytes!("fixtures/wire/stream-mixed.sse");

fn parse_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<SseItem>, Option<String>) {
    let mut parser = SseParser::new();
    let mut items = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, |item| items.push(item)).unwrap();
    }
    parser.finish();
    (items, parser.last_event_id().map(str::to_owned))
}

fn parse(bytes: &[u8]) -> (Vec<SseItem>, Option<String>) {
    parse_chunks([bytes])
}

fn events(items: &[SseItem]) -> Vec<SseEvent> {
    items
        .iter()
        .filter_map(|item| match item {
            SseItem::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn ev(event: &str, data: &str, id: Option<&str>) -> SseEvent {
    SseEvent {
        event: event.into(),
        data: data.into(),
        id: id.map(Into::into),
    }
}

#[test]
fn fixture_stream_parses_to_six_events_a_retry_and_last_id_five() {
    let (items, last) = parse(FIXTURE);
    assert_eq!(items[0], SseItem::Retry(1000));
    let events = events(&items);
    let summary: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| (e.event.as_str(), e.id.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("actions", Some("1")),
            ("heartbeat", Some("1")),
            ("message", Some("2")),
            ("actions", Some("3")),
            ("message", Some("4")),
            ("actions", Some("5")),
        ]
    );
    assert_eq!(
        events[1].data, "",
        "`data:` with nothing after it dispatches empty data"
    );
    assert_eq!(events[4].data, "not json at all");
    assert_eq!(last.as_deref(), Some("5"));
}

#[test]
fn every_split_point_and_byte_by_byte_give_the_same_result() {
    let whole = parse(FIXTURE);
    for split in 0..=FIXTURE.len() {
        let (a, b) = FIXTURE.split_at(split);
        assert_eq!(parse_chunks([a, b]), whole, "split at byte {split}");
    }
    assert_eq!(parse_chunks(FIXTURE.chunks(1)), whole, "one byte at a time");
}

#[test]
fn line_ends_lf_cr_and_crlf_are_all_line_ends() {
    let expected = vec![ev("message", "a\nb", None), ev("x", "c", None)];
    for sep in ["\n", "\r", "\r\n"] {
        let text = format!("data: a{sep}data: b{sep}{sep}event: x{sep}data: c{sep}{sep}");
        assert_eq!(
            events(&parse(text.as_bytes()).0),
            expected,
            "separator {sep:?}"
        );
    }
    // A CR ending one chunk and an LF starting the next are one line end, not two
    // (two would dispatch after "data: a" and split the event).
    let (items, _) = parse_chunks([&b"data: a\r"[..], b"\ndata: b\r\n\r\n"]);
    assert_eq!(events(&items), vec![ev("message", "a\nb", None)]);
    // A lone CR followed by a CR is a blank line.
    let (items, _) = parse_chunks([&b"data: a\r"[..], b"\rdata: b\r\r"]);
    assert_eq!(
        events(&items),
        vec![ev("message", "a", None), ev("message", "b", None)]
    );
}

#[test]
fn leading_bom_is_stripped() {
    let (items, _) = parse(b"\xEF\xBB\xBFdata: hi\n\n");
    assert_eq!(events(&items), vec![ev("message", "hi", None)]);
}

#[test]
fn comments_fields_without_colon_and_space_stripping() {
    let (items, _) =
        parse(b": a comment\ndata\n\ndata:no space\ndata:  two spaces\n\nevent\ndata: x\n\n");
    assert_eq!(
        events(&items),
        vec![
            ev("message", "", None),
            ev("message", "no space\n two spaces", None),
            ev("message", "x", None)
        ]
    );
}

#[test]
fn no_dispatch_without_data_and_event_type_does_not_leak() {
    let (items, _) = parse(b"event: first\n\ndata: second\n\n");
    assert_eq!(events(&items), vec![ev("message", "second", None)]);
}

#[test]
fn unknown_fields_are_ignored() {
    let (items, _) = parse(b"foo: bar\ndata: x\nDATA: y\n\n");
    assert_eq!(events(&items), vec![ev("message", "x", None)]);
}

#[test]
fn last_event_id_persists_resets_and_ignores_nul() {
    let (items, last) = parse(b"id: 7\ndata: a\n\ndata: b\n\nid: 8\0\ndata: c\n\nid:\ndata: d\n\n");
    assert_eq!(
        events(&items),
        vec![
            ev("message", "a", Some("7")),
            ev("message", "b", Some("7")),
            ev("message", "c", Some("7")),
            ev("message", "d", None),
        ]
    );
    assert_eq!(last, None);
}

#[test]
fn unfinished_event_at_end_of_stream_is_discarded() {
    let (items, last) = parse(b"id: 1\ndata: done\n\nid: 2\ndata: half");
    assert_eq!(events(&items), vec![ev("message", "done", Some("1"))]);
    assert_eq!(last.as_deref(), Some("1"));
}

#[test]
fn reset_connection_keeps_the_last_id_and_forgets_the_half_event() {
    let mut parser = SseParser::new();
    let mut items = Vec::new();
    parser
        .feed(b"id: 3\ndata: a\n\ndata: partial", |i| items.push(i))
        .unwrap();
    parser.reset_connection();
    parser
        .feed(b"\xEF\xBB\xBFdata: b\n\n", |i| items.push(i))
        .unwrap();
    assert_eq!(
        events(&items),
        vec![ev("message", "a", Some("3")), ev("message", "b", Some("3"))]
    );
}

#[test]
fn initial_last_event_id_is_used_until_the_stream_sets_one() {
    let mut parser = SseParser::new();
    parser.set_last_event_id(Some("41".into()));
    let mut items = Vec::new();
    parser
        .feed(b"data: a\n\nid: 42\ndata: b\n\n", |i| items.push(i))
        .unwrap();
    assert_eq!(
        events(&items),
        vec![
            ev("message", "a", Some("41")),
            ev("message", "b", Some("42"))
        ]
    );
    assert_eq!(parser.last_event_id(), Some("42"));
}

#[test]
fn an_oversized_event_is_skipped_and_memory_stays_bounded() {
    let mut parser = SseParser::with_max_event_size(1024);
    let line = format!("data: {}\n", "x".repeat(100));
    let mut items = Vec::new();
    for _ in 0..100 {
        parser.feed(line.as_bytes(), |i| items.push(i)).unwrap();
    }
    parser
        .feed(b"id: 9\n\nid: 10\ndata: after\n\n", |i| items.push(i))
        .unwrap();
    assert_eq!(
        items,
        vec![
            SseItem::EventTooLarge { limit: 1024 },
            SseItem::Event(ev("message", "after", Some("10")))
        ]
    );

    // One endless line without a line end is never held.
    let mut parser = SseParser::with_max_event_size(1024);
    let mut items = Vec::new();
    parser.feed(b"data: ", |i| items.push(i)).unwrap();
    for _ in 0..10_000 {
        parser.feed(&[b'a'; 100], |i| items.push(i)).unwrap();
    }
    parser.feed(b"\n\ndata: b\n\n", |i| items.push(i)).unwrap();
    assert_eq!(
        items,
        vec![
            SseItem::EventTooLarge { limit: 1024 },
            SseItem::Event(ev("message", "b", None))
        ]
    );
}

#[test]
fn many_events_in_one_chunk_come_out_in_order() {
    let mut text = String::new();
    for i in 0..1000 {
        text.push_str(&format!("id: {i}\nevent: actions\ndata: {{\"n\":{i}}}\n\n"));
    }
    let (items, last) = parse(text.as_bytes());
    let events = events(&items);
    assert_eq!(events.len(), 1000);
    assert!(
        events
            .iter()
            .enumerate()
            .all(|(i, e)| e.data == format!("{{\"n\":{i}}}"))
    );
    assert_eq!(last.as_deref(), Some("999"));
}

/// Found by the `sse_parser` fuzz target: an event name whose invalid UTF-8 grows
/// when decoded (each bad byte becomes a 3-byte U+FFFD) left no room for an empty
/// data line read whole, but passed when the line came in pieces.
#[test]
fn an_empty_data_line_after_a_long_decoded_name_is_judged_alike_however_cut() {
    let stream =
        b"event: heartbeat\xD4\xD4\xD4\xD4\xD4\xD4\xD4\xD4\xD4\xD4\xD4\ndata:\n\ndata: x\n\n";
    let whole = parse_limited([&stream[..]]);
    assert_eq!(
        whole.0,
        vec![
            SseItem::EventTooLarge { limit: 24 },
            SseItem::Event(ev("message", "x", None))
        ]
    );
    assert_eq!(parse_limited(stream.chunks(1)), whole);
}

/// Found by the `sse_parser` fuzz target: data, ids and event names of invalid
/// UTF-8 within the limits as bytes grew past them when decoded (3 bytes per bad
/// byte). The limits are on the text handed out.
#[test]
fn data_ids_and_names_that_decoding_grows_past_the_limits_are_skipped() {
    let mut stream = b"data: ".to_vec();
    stream.extend([0xFF; 10]);
    stream.extend(b"\n\ndata: \xFF\xFFok\n\n");
    // Likewise an id: 16 bytes, 6 of them invalid, is 28 bytes of text.
    stream.extend(b"id: \xFF\xFF\xFF\xFF\xFF\xFFabcdefghij\ndata: x\n\n");
    // And an event name: 10 bytes, 9 of them invalid, is 28 bytes of text.
    stream.extend(b"event: \xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFFa\ndata: y\n\n");
    let (items, _) = parse_limited([&stream[..]]);
    assert_eq!(
        items,
        vec![
            SseItem::EventTooLarge { limit: 24 },
            SseItem::Event(ev("message", "\u{FFFD}\u{FFFD}ok", None)),
            SseItem::IdTooLong { limit: 16 },
            SseItem::Event(ev("message", "x", None)),
            SseItem::EventTooLarge { limit: 24 },
        ]
    );
    assert_eq!(parse_limited(stream.chunks(1)), (items, None));
}

/// Streams built from pieces that exercise every rule, including the awkward ones.
fn stream_strategy() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data: hello".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"data".to_vec()),
        Just("data: h\u{e9}llo \u{2014} \u{1F600}".as_bytes().to_vec()),
        Just(b"event: actions".to_vec()),
        Just(b"id: 12".to_vec()),
        Just(b"id:".to_vec()),
        Just(b"id: a\0b".to_vec()),
        Just(b"retry: 250".to_vec()),
        Just(b"retry: x1".to_vec()),
        Just(b": comment".to_vec()),
        Just(b"".to_vec()),
        Just(b"unknown: field".to_vec()),
    ];
    let line_end = prop_oneof![Just(&b"\n"[..]), Just(&b"\r"[..]), Just(&b"\r\n"[..])];
    (
        any::<bool>(),
        prop::collection::vec((piece, line_end), 0..40),
    )
        .prop_map(|(bom, lines)| {
            let mut bytes = if bom {
                b"\xEF\xBB\xBF".to_vec()
            } else {
                Vec::new()
            };
            for (piece, end) in lines {
                bytes.extend_from_slice(&piece);
                bytes.extend_from_slice(end);
            }
            bytes
        })
}

/// Like [`stream_strategy`], with values that cross small limits.
fn limited_stream_strategy() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data: hello".to_vec()),
        Just(b"data: a much longer line of data".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"event: actions".to_vec()),
        Just(b"event: a-long-event-name-over-the-limit".to_vec()),
        Just(b"id: 12".to_vec()),
        Just(b"id: 123456789012345678901234567890".to_vec()),
        Just(b"id: a\0b".to_vec()),
        Just(b"id:".to_vec()),
        Just(b"retry: 250".to_vec()),
        Just(b": a comment that is longer than every limit".to_vec()),
        Just(b"".to_vec()),
        Just(b"".to_vec()),
        Just(b"unknownfield: x".to_vec()),
    ];
    let line_end = prop_oneof![Just(&b"\n"[..]), Just(&b"\r"[..]), Just(&b"\r\n"[..])];
    prop::collection::vec((piece, line_end), 0..40).prop_map(|lines| {
        let mut bytes = Vec::new();
        for (piece, end) in lines {
            bytes.extend_from_slice(&piece);
            bytes.extend_from_slice(end);
        }
        bytes
    })
}

fn parse_limited<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<SseItem>, Option<String>) {
    let mut parser = SseParser::with_limits(24, 16);
    let mut items = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, |item| items.push(item)).unwrap();
    }
    parser.finish();
    (items, parser.last_event_id().map(str::to_owned))
}

proptest! {
    #[test]
    fn chunking_never_changes_what_the_limits_skip(
        stream in limited_stream_strategy(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let whole = parse_limited([&stream[..]]);
        let chunks = support::cut_at(&stream, &cuts);
        prop_assert_eq!(parse_limited(chunks), whole.clone());
        prop_assert_eq!(parse_limited(stream.chunks(1)), whole);
    }

    #[test]
    fn chunking_never_changes_the_result(
        stream in stream_strategy(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let whole = parse(&stream);
        let chunks = support::cut_at(&stream, &cuts);
        prop_assert_eq!(parse_chunks(chunks), whole.clone());
        prop_assert_eq!(parse_chunks(stream.chunks(1)), whole);
    }
}

/// A small reference implementation of the WHATWG "event stream interpretation"
/// rules, written from the spec as plainly as possible: decode the whole stream as
/// UTF-8 (lossily, dropping one leading BOM), split it into lines at CR LF, LF or
/// CR, and interpret each line. What it gives: the items in order, and the last
/// event id string at the end (`None` for the empty string).
mod reference {
    use super::SseItem;

    /// An event as (name, data, id).
    pub type Event = (String, String, Option<String>);

    pub struct Outcome {
        pub events: Vec<Event>,
        pub retries: Vec<(usize, u64)>,
        pub last_id: Option<String>,
    }

    pub fn interpret(stream: &[u8]) -> Outcome {
        let text = String::from_utf8_lossy(stream);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut lines = Vec::new();
        let mut rest = text;
        // Only complete lines: what follows the last line end is not a line yet.
        while let Some(at) = rest.find(['\r', '\n']) {
            lines.push(&rest[..at]);
            let crlf = rest[at..].starts_with("\r\n");
            rest = &rest[at + if crlf { 2 } else { 1 }..];
        }
        let (mut data, mut event_type, mut id_buffer) =
            (String::new(), String::new(), String::new());
        let mut last_id = String::new();
        let mut out = Outcome {
            events: Vec::new(),
            retries: Vec::new(),
            last_id: None,
        };
        for line in lines {
            if line.is_empty() {
                last_id = id_buffer.clone();
                if data.is_empty() {
                    event_type.clear();
                    continue;
                }
                data.pop(); // the LF after the last data line
                let name = if event_type.is_empty() {
                    "message".to_owned()
                } else {
                    std::mem::take(&mut event_type)
                };
                let id = (!last_id.is_empty()).then(|| last_id.clone());
                out.events.push((name, std::mem::take(&mut data), id));
                event_type.clear();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line, ""),
            };
            match field {
                "event" => event_type = value.to_owned(),
                "data" => {
                    data.push_str(value);
                    data.push('\n');
                }
                "id" if !value.contains('\0') => id_buffer = value.to_owned(),
                "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                    if let Ok(ms) = value.parse() {
                        out.retries.push((out.events.len(), ms));
                    }
                }
                _ => {}
            }
        }
        out.last_id = (!last_id.is_empty()).then_some(last_id);
        out
    }

    /// Our parser's items in the reference's terms: events, and each retry with
    /// the number of events before it.
    pub fn ours(items: &[SseItem]) -> (Vec<Event>, Vec<(usize, u64)>) {
        let mut events = Vec::new();
        let mut retries = Vec::new();
        for item in items {
            match item {
                SseItem::Event(e) => events.push((
                    e.event.to_string(),
                    e.data.clone(),
                    e.id.as_deref().map(str::to_owned),
                )),
                SseItem::Retry(ms) => retries.push((events.len(), *ms)),
                other => panic!("no limit is reached here: {other:?}"),
            }
        }
        (events, retries)
    }
}

/// Streams of lines made to hit the rules' corners: every field name and near
/// misses, values with and without the optional space, NUL in ids, `retry` with
/// non-digits, non-ASCII text and invalid UTF-8, BOMs in and out of place, and
/// every kind of line end, mixed.
fn differential_stream() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![
        Just(&b"data"[..]),
        Just(&b"data"[..]),
        Just(&b"id"[..]),
        Just(&b"event"[..]),
        Just(&b"retry"[..]),
        Just(&b""[..]),
        Just(&b"dat"[..]),
        Just(&b"Data"[..]),
        Just(&b"retryx"[..]),
        Just(&b"\xEF\xBB\xBFdata"[..]),
    ];
    let colon = prop_oneof![
        Just(&b""[..]),
        Just(&b":"[..]),
        Just(&b": "[..]),
        Just(&b":  "[..])
    ];
    let value = prop_oneof![
        "[0-9]{0,4}".prop_map(String::into_bytes),
        "[ -~]{0,6}".prop_map(String::into_bytes),
        "[a\u{0}é😀\u{feff}:]{0,4}".prop_map(String::into_bytes),
        Just(b"\xFF\xC3".to_vec()),
        Just(b"\xE2\x82".to_vec()),
        Just(b"99999999999999999999999".to_vec()),
    ];
    let line_end = prop_oneof![Just(&b"\n"[..]), Just(&b"\r"[..]), Just(&b"\r\n"[..])];
    let line = prop_oneof![
        3 => (name, colon, value, line_end.clone()).prop_map(|(n, c, v, e)| [n, c, &v, e].concat()),
        1 => line_end.prop_map(<[u8]>::to_vec),
    ];
    (
        prop_oneof![Just(&b""[..]), Just(&b"\xEF\xBB\xBF"[..])],
        prop::collection::vec(line, 0..30),
        prop::collection::vec(any::<u8>(), 0..4),
    )
        .prop_map(|(bom, lines, tail)| {
            let mut bytes = bom.to_vec();
            bytes.extend(lines.concat());
            // An unfinished last line, sometimes.
            bytes.extend(tail.into_iter().filter(|b| b.is_ascii_alphanumeric()));
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Our parser, fed in random chunks, agrees with the reference on every event,
    /// every retry and the last event id.
    #[test]
    fn the_parser_agrees_with_the_whatwg_reference(
        stream in differential_stream(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let expected = reference::interpret(&stream);
        let chunks = support::cut_at(&stream, &cuts);
        let (items, last) = parse_chunks(chunks);
        let (events, retries) = reference::ours(&items);
        prop_assert_eq!(events, expected.events);
        prop_assert_eq!(retries, expected.retries);
        prop_assert_eq!(last, expected.last_id);
    }
}
