//! The SSE parser under random chunkings: whatever the bytes and wherever the
//! stream is cut, the parser never panics, and it gives the same items and the same
//! last event id as when fed the stream whole (and, when short, one byte at a
//! time). Small limits are used too, so the oversized-event and long-id paths are
//! reached, and every event handed out is within them.
//!
//! Input: two bytes choose the limits, up to 8 bytes choose the cut points, the
//! rest is the stream.
#![no_main]

use autoplay_sdk::sse::{DEFAULT_EVENT_TYPE, SseItem, SseParser};
use libfuzzer_sys::fuzz_target;

fn parse<'a>(
    limits: Option<(usize, usize)>,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<SseItem>, Option<String>) {
    let mut parser = match limits {
        Some((event, id)) => SseParser::with_limits(event, id),
        None => SseParser::new(),
    };
    let mut items = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, |item| items.push(item)).expect("feed never fails");
    }
    parser.finish();
    (items, parser.last_event_id().map(str::to_owned))
}

fuzz_target!(|input: &[u8]| {
    let Some((&[event_limit, id_limit], rest)) = input.split_first_chunk::<2>() else {
        return;
    };
    let limits = (event_limit != 0).then(|| (usize::from(event_limit), usize::from(id_limit)));
    let cut_bytes = rest.len().min(8);
    let (cuts, stream) = rest.split_at(cut_bytes);
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c) * stream.len() / 255)
        .collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for p in points {
        chunks.push(&stream[start..p]);
        start = p;
    }
    chunks.push(&stream[start..]);

    let whole = parse(limits, [stream]);
    assert_eq!(parse(limits, chunks), whole, "a chunking changed the result");
    // Byte at a time is the hardest chunking; kept to short streams, where it is
    // cheap, so the fuzzer's time goes to more inputs.
    if stream.len() <= 256 {
        assert_eq!(
            parse(limits, stream.chunks(1)),
            whole,
            "byte-at-a-time changed the result"
        );
    }
    for item in &whole.0 {
        if let (SseItem::Event(event), Some((event_limit, id_limit))) = (item, limits) {
            // The limit counts what the server sent: an implicit "message" was not.
            let name = if event.event == DEFAULT_EVENT_TYPE { 0 } else { event.event.len() };
            assert!(
                event.data.len() + name <= event_limit,
                "over the limit: {event:?}"
            );
            assert!(event.id.as_ref().is_none_or(|id| id.len() <= id_limit));
        }
    }
});
