//! The Autoplay stream's wire format, shared by the client and the connector so
//! the two cannot drift: event names, the heartbeat frame, the resume header, and
//! frame encoding.
//!
//! One event of `GET /stream/{product_id}` is a Server-Sent-Events frame:
//!
//! ```text
//! id: 1042
//! event: actions
//! data: {"type":"actions","product_id":"acme","session_id":"ps_abc123", ...}
//!
//! ```
//!
//! A JSON payload is one line (JSON escapes its line ends), so it takes one `data:`
//! line. Every 30 s the connector sends a [`HEARTBEAT_FRAME`], which a client treats
//! as liveness only. A client that reconnects sends the last id it saw in
//! [`LAST_EVENT_ID`], and the connector replays what came after it.
//!
//! ```
//! use autoplay_sdk::sse::{SseItem, SseParser};
//! use autoplay_sdk::wire;
//!
//! let json = r#"{"type":"summary","summary":"Browsed pricing"}"#;
//! let frame = wire::encode_frame(Some(7), wire::SUMMARY_EVENT, json);
//! assert_eq!(frame, format!("id: 7\nevent: summary\ndata: {json}\n\n"));
//!
//! let mut events = Vec::new();
//! SseParser::new().feed(frame.as_bytes(), |item| events.push(item))?;
//! let SseItem::Event(event) = &events[0] else { unreachable!() };
//! assert_eq!((event.event.as_str(), event.data.as_str()), ("summary", json));
//! # Ok::<(), autoplay_sdk::sse::SseError>(())
//! ```

use std::fmt::Write as _;

/// The SSE event name of an actions payload (also its JSON `type`).
pub const ACTIONS_EVENT: &str = "actions";

/// The SSE event name of a session summary (also its JSON `type`).
pub const SUMMARY_EVENT: &str = "summary";

/// The SSE event name of a heartbeat: liveness only, no payload.
pub const HEARTBEAT_EVENT: &str = "heartbeat";

/// A whole heartbeat frame: the event name and an empty data line (an event with
/// no data line at all would not be dispatched by a WHATWG parser).
pub const HEARTBEAT_FRAME: &[u8] = b"event: heartbeat\ndata:\n\n";

/// The request header that carries the last event id a client saw, for replay.
/// HTTP header names are case-insensitive; this is the spelling of the spec.
pub const LAST_EVENT_ID: &str = "Last-Event-ID";

/// The field that sets an event's id.
pub const ID_FIELD: &str = "id";
/// The field that sets an event's name.
pub const EVENT_FIELD: &str = "event";
/// The field that adds a line to an event's data.
pub const DATA_FIELD: &str = "data";
/// The field that sets the reconnection time, in milliseconds.
pub const RETRY_FIELD: &str = "retry";

/// What [`encode_frame`] adds around one line of data at most with one of the
/// names above: `id: ` with 20 digits, `event: ` with the longest name, `data: `,
/// and the line ends.
pub const MAX_FRAME_OVERHEAD: usize =
    "id: \n".len() + 20 + "event: \n".len() + HEARTBEAT_EVENT.len() + "data: \n".len() + "\n".len();

/// One frame: the optional id, the event name, and `data` as `data:` lines (one
/// per line of `data`; a JSON payload has one), then the blank line that ends it.
///
/// The parser gives `data` back exactly when it has no CR (a CR alone or in CR LF
/// ends a line on the wire, so it comes back as LF). `event` must be one line.
pub fn encode_frame(id: Option<u64>, event: &str, data: &str) -> String {
    let mut frame = String::with_capacity(data.len() + MAX_FRAME_OVERHEAD);
    write_frame(&mut frame, id, event, data);
    frame
}

/// [`encode_frame`] into `out`, appending.
pub fn write_frame(out: &mut String, id: Option<u64>, event: &str, data: &str) {
    debug_assert!(
        !event.contains(['\n', '\r']),
        "an event name is one line: {event:?}"
    );
    if let Some(id) = id {
        // Writing into a String cannot fail.
        let _ = writeln!(out, "{ID_FIELD}: {id}");
    }
    out.push_str(EVENT_FIELD);
    out.push_str(": ");
    out.push_str(event);
    out.push('\n');
    for line in data.split('\n') {
        out.push_str(DATA_FIELD);
        out.push_str(": ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::{SseItem, SseParser};

    fn parse(bytes: &[u8]) -> Vec<crate::sse::SseEvent> {
        let mut events = Vec::new();
        SseParser::new()
            .feed(bytes, |item| {
                if let SseItem::Event(e) = item {
                    events.push(e)
                }
            })
            .unwrap();
        events
    }

    #[test]
    fn the_heartbeat_frame_is_a_heartbeat_event_with_empty_data() {
        let events = parse(HEARTBEAT_FRAME);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, HEARTBEAT_EVENT);
        assert_eq!(events[0].data, "");
        assert_eq!(events[0].id, None);
    }

    #[test]
    fn a_frame_is_id_event_and_one_data_line_per_line() {
        assert_eq!(
            encode_frame(Some(u64::MAX), ACTIONS_EVENT, "{}"),
            "id: 18446744073709551615\nevent: actions\ndata: {}\n\n"
        );
        assert!(encode_frame(Some(u64::MAX), SUMMARY_EVENT, "").len() <= MAX_FRAME_OVERHEAD);
        assert_eq!(
            encode_frame(None, "x", "a\n b\n"),
            "event: x\ndata: a\ndata:  b\ndata: \n\n"
        );
        let events = parse(encode_frame(None, "x", "a\n b\n").as_bytes());
        assert_eq!(events[0].data, "a\n b\n");
    }
}
