//! The payload decoder on arbitrary data: it never panics, and whatever it
//! accepts re-encodes (the stream JSON the connector sends) to JSON that decodes
//! to the same payload.
//!
//! Input: the first byte picks the SSE event name, the rest is the data (as
//! text, lossily, as the parser hands it over).
#![no_main]

use autoplay_sdk::models::Event;
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 5] = ["actions", "summary", "message", "heartbeat", ""];

fuzz_target!(|input: &[u8]| {
    let Some((&pick, data)) = input.split_first() else {
        return;
    };
    let name = NAMES[usize::from(pick) % NAMES.len()];
    let data = String::from_utf8_lossy(data);
    let Ok(event) = Event::decode(&data, name) else {
        return;
    };
    let _ = event.to_text();
    let json = event.to_stream_json();
    let again = Event::from_json(&json).expect("our own JSON decodes");
    // NaN is the one value that is not equal to itself; JSON cannot carry it.
    assert_eq!(
        format!("{again:?}"),
        format!("{event:?}"),
        "re-encoding changed the payload: {json}"
    );
});
