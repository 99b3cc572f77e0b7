//! An incremental Server-Sent-Events parser that follows the WHATWG HTML
//! "server-sent events" parsing rules.
//!
//! Bytes go in as they arrive from the socket, in chunks of any size; complete
//! events come out. The result never depends on how the stream was chunked: a CR
//! that ends one chunk and an LF that starts the next are one line end, and a byte
//! order mark split over two chunks is still recognised.
//!
//! The read path copies each byte at most once: complete lines are scanned in the
//! caller's buffer with `memchr` and field values are appended straight to the
//! event's data; only a line cut by a chunk boundary is buffered.
//!
//! ```
//! use autoplay_sdk::sse::{SseItem, SseParser};
//!
//! let mut parser = SseParser::new();
//! let mut events = Vec::new();
//! parser.feed(b"id: 7\nevent: actions\ndata: {\"type\":", |item| events.push(item))?;
//! parser.feed(b"\"actions\"}\n\n", |item| events.push(item))?;
//! let SseItem::Event(event) = &events[0] else { unreachable!() };
//! assert_eq!(event.event, "actions");
//! assert_eq!(event.data, r#"{"type":"actions"}"#);
//! assert_eq!(event.id.as_deref(), Some("7"));
//! assert_eq!(parser.last_event_id(), Some("7"));
//! # Ok::<(), autoplay_sdk::sse::SseError>(())
//! ```

use std::fmt;

use compact_str::CompactString;

/// The default limit on one event's size: 16 MiB.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;

/// The event type of an event that names none.
pub const DEFAULT_EVENT_TYPE: &str = "message";

const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// One dispatched event.
///
/// The event name and id are [`CompactString`]s: names and ids up to 24 bytes (all
/// the connector sends) are stored inline, so an event costs one allocation, its data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, `"message"` when the event named none.
    pub event: CompactString,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last event id when this event was dispatched: the event's own `id:`, or
    /// the latest one before it (`None` when no id was ever set, or after an empty
    /// `id:` reset it).
    pub id: Option<CompactString>,
}

/// What the parser hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// A complete event.
    Event(SseEvent),
    /// A `retry:` field: the server's reconnection delay in milliseconds.
    Retry(u64),
}

/// A stream the parser refuses to go on with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// One event (or one line) grew past the configured maximum size; the
    /// connection must be dropped, since the rest of the event cannot be trusted.
    EventTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::EventTooLarge { limit } => {
                write!(
                    f,
                    "an event exceeds the maximum event size of {limit} bytes"
                )
            }
        }
    }
}

impl std::error::Error for SseError {}

/// How far the parser is in recognising a byte order mark at the stream start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BomState {
    /// This many bytes of the BOM have been seen so far (0 to 2).
    Matching(usize),
    /// Past the start of the stream.
    Done,
}

/// The incremental parser. One per stream; [`SseParser::reset_connection`] starts
/// a new connection while keeping the last event id.
#[derive(Debug)]
pub struct SseParser {
    max_event_size: usize,
    /// The bytes of a line cut by a chunk boundary.
    partial_line: Vec<u8>,
    /// The previous chunk ended in CR: an LF at the start of the next is the same
    /// line end.
    after_cr: bool,
    bom: BomState,
    data: String,
    /// Whether any `data` field was seen: an event with `data:` and nothing after
    /// it carries empty data, while an event with no `data` field is not dispatched.
    has_data: bool,
    event_type: String,
    /// The id set by the event being read, committed at its blank line.
    id_buffer: Option<String>,
    last_event_id: Option<String>,
    /// Capacity for the next event's data, so the common case allocates once.
    data_capacity_hint: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the default maximum event size ([`DEFAULT_MAX_EVENT_SIZE`]).
    pub fn new() -> Self {
        Self::with_max_event_size(DEFAULT_MAX_EVENT_SIZE)
    }

    /// A parser that fails with [`SseError::EventTooLarge`] once one event's data
    /// (or any single line) exceeds `max_event_size` bytes.
    pub fn with_max_event_size(max_event_size: usize) -> Self {
        Self {
            max_event_size,
            partial_line: Vec::new(),
            after_cr: false,
            bom: BomState::Matching(0),
            data: String::new(),
            has_data: false,
            event_type: String::new(),
            id_buffer: None,
            last_event_id: None,
            data_capacity_hint: 0,
        }
    }

    /// The configured maximum event size in bytes.
    pub fn max_event_size(&self) -> usize {
        self.max_event_size
    }

    /// Sets the last event id, as when resuming from an id saved elsewhere.
    pub fn set_last_event_id(&mut self, id: Option<String>) {
        let id = id.filter(|id| !id.is_empty());
        self.id_buffer = id.clone();
        self.last_event_id = id;
    }

    /// The id to send as `Last-Event-ID` on the next connection: the id in force at
    /// the latest completed event, `None` when there is none.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref().filter(|id| !id.is_empty())
    }

    /// Starts a new connection: forgets any half-read event and line, and expects
    /// a fresh stream (which may open with a BOM). The last event id is kept.
    pub fn reset_connection(&mut self) {
        self.partial_line.clear();
        self.after_cr = false;
        self.bom = BomState::Matching(0);
        self.data.clear();
        self.has_data = false;
        self.event_type.clear();
        self.id_buffer = self.last_event_id.clone();
    }

    /// Ends the stream: an unfinished event is discarded, as the standard says.
    pub fn finish(&mut self) {
        self.reset_connection();
    }

    /// Parses the next chunk of the stream, calling `emit` for each event and
    /// `retry` field it completes, in order.
    ///
    /// After an error the rest of the chunk is not parsed; call
    /// [`SseParser::reset_connection`] before feeding a new connection's bytes.
    pub fn feed(&mut self, chunk: &[u8], mut emit: impl FnMut(SseItem)) -> Result<(), SseError> {
        let mut rest = self.skip_bom(chunk);
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(end) = memchr::memchr2(b'\n', b'\r', rest) {
            let line_end = rest[end];
            if self.partial_line.is_empty() {
                self.process_line(&rest[..end], &mut emit)?;
            } else {
                // Take the buffer out so the line can borrow it while fields change.
                let mut line = std::mem::take(&mut self.partial_line);
                line.extend_from_slice(&rest[..end]);
                let result = self.process_line(&line, &mut emit);
                line.clear();
                self.partial_line = line;
                result?;
            }
            rest = &rest[end + 1..];
            if line_end == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        if !rest.is_empty() {
            if self.partial_line.len() + rest.len() > self.max_event_size {
                return Err(self.too_large());
            }
            self.partial_line.extend_from_slice(rest);
        }
        Ok(())
    }

    /// Strips a byte order mark at the start of the stream, however it is chunked.
    fn skip_bom<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        let BomState::Matching(mut matched) = self.bom else {
            return chunk;
        };
        let mut used = 0;
        while matched < BOM.len() && used < chunk.len() && chunk[used] == BOM[matched] {
            matched += 1;
            used += 1;
        }
        if matched == BOM.len() {
            self.bom = BomState::Done;
            return &chunk[used..];
        }
        if used == chunk.len() {
            // Still a prefix of the BOM: wait for the next byte to decide.
            self.bom = BomState::Matching(matched);
            return &chunk[used..];
        }
        // Not a BOM after all: the bytes held back belong to the first line.
        self.bom = BomState::Done;
        self.partial_line.extend_from_slice(&BOM[..matched]);
        &chunk[used..]
    }

    fn too_large(&self) -> SseError {
        SseError::EventTooLarge {
            limit: self.max_event_size,
        }
    }

    fn process_line(
        &mut self,
        line: &[u8],
        emit: &mut impl FnMut(SseItem),
    ) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(emit);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                let added = value.len() + usize::from(self.has_data);
                if self.data.len() + added > self.max_event_size {
                    return Err(self.too_large());
                }
                if self.has_data {
                    self.data.push('\n');
                }
                push_utf8(&mut self.data, value);
                self.has_data = true;
            }
            b"event" => {
                self.event_type.clear();
                push_utf8(&mut self.event_type, value);
            }
            b"id" if memchr::memchr(0, value).is_none() => match &mut self.id_buffer {
                Some(id) => {
                    id.clear();
                    push_utf8(id, value);
                }
                None => {
                    let mut id = String::with_capacity(value.len());
                    push_utf8(&mut id, value);
                    self.id_buffer = Some(id);
                }
            },
            // Only ASCII digits; a value too large for u64 is ignored like any other
            // invalid one.
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                if let Ok(ms) = std::str::from_utf8(value)
                    .unwrap_or_default()
                    .parse::<u64>()
                {
                    emit(SseItem::Retry(ms));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, emit: &mut impl FnMut(SseItem)) {
        if self.last_event_id != self.id_buffer {
            self.last_event_id.clone_from(&self.id_buffer);
        }
        if !self.has_data {
            self.event_type.clear();
            return;
        }
        self.has_data = false;
        self.data_capacity_hint = self.data.len();
        let data = std::mem::replace(
            &mut self.data,
            String::with_capacity(self.data_capacity_hint),
        );
        let event = if self.event_type.is_empty() {
            CompactString::const_new(DEFAULT_EVENT_TYPE)
        } else {
            let name = CompactString::from(self.event_type.as_str());
            self.event_type.clear();
            name
        };
        let id = self
            .last_event_id
            .as_deref()
            .filter(|id| !id.is_empty())
            .map(CompactString::from);
        emit(SseItem::Event(SseEvent { event, data, id }));
    }
}

/// Appends bytes decoded as UTF-8, replacing invalid sequences as the standard's
/// decoder does. Line ends never fall inside a UTF-8 sequence, so decoding line by
/// line is the same as decoding the whole stream.
fn push_utf8(into: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => into.push_str(text),
        Err(_) => into.push_str(&String::from_utf8_lossy(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> (Vec<SseItem>, SseParser) {
        let mut parser = SseParser::new();
        let mut items = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, |item| items.push(item)).unwrap();
        }
        (items, parser)
    }

    fn event(event: &str, data: &str, id: Option<&str>) -> SseItem {
        SseItem::Event(SseEvent {
            event: event.into(),
            data: data.into(),
            id: id.map(Into::into),
        })
    }

    #[test]
    fn bom_split_over_chunks_is_stripped_once() {
        let (items, _) = parse_all(&[b"\xEF", b"\xBB", b"\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n"]);
        // Only the first BOM is special; the second makes an unknown field name.
        assert_eq!(items, vec![event("message", "a", None)]);
    }

    #[test]
    fn partial_bom_prefix_is_kept_as_data() {
        let (items, _) = parse_all(&[b"\xEF", b"data: a\n\n"]);
        assert!(items.is_empty(), "'\\u{{FFFD}}data' is an unknown field");
        let (items, _) = parse_all(&[b"\xEFdata: x\n\ndata: y\n\n"]);
        assert_eq!(items, vec![event("message", "y", None)]);
    }

    #[test]
    fn retry_needs_only_digits() {
        let (items, _) = parse_all(&[
            b"retry: 1500\nretry: 15x\nretry:\nretry: -1\nretry: 99999999999999999999999\n",
        ]);
        assert_eq!(items, vec![SseItem::Retry(1500)]);
    }

    #[test]
    fn id_with_nul_is_ignored_and_empty_id_resets() {
        let (items, parser) =
            parse_all(&[b"id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\nid\ndata: c\n\n"]);
        assert_eq!(
            items,
            vec![
                event("message", "a", Some("1")),
                event("message", "b", Some("1")),
                event("message", "c", None)
            ]
        );
        assert_eq!(parser.last_event_id(), None);
    }

    #[test]
    fn id_commits_at_blank_line_even_without_data() {
        let (items, parser) = parse_all(&[b"id: 9\n\n"]);
        assert!(items.is_empty());
        assert_eq!(parser.last_event_id(), Some("9"));
    }

    #[test]
    fn unfinished_event_and_its_id_are_discarded_at_end_of_stream() {
        let (_, mut parser) = parse_all(&[b"id: 1\ndata: a\n\nid: 2\ndata: b\n"]);
        parser.finish();
        assert_eq!(parser.last_event_id(), Some("1"));
        let mut items = Vec::new();
        parser
            .feed(b"data: c\n\n", |item| items.push(item))
            .unwrap();
        assert_eq!(items, vec![event("message", "c", Some("1"))]);
    }

    #[test]
    fn oversized_line_or_event_fails() {
        let mut parser = SseParser::with_max_event_size(8);
        assert!(parser.feed(b"data: 12", |_| {}).is_ok());
        assert_eq!(
            parser.feed(b"3", |_| {}),
            Err(SseError::EventTooLarge { limit: 8 })
        );
        let mut parser = SseParser::with_max_event_size(8);
        assert_eq!(
            parser.feed(b"data: 12345\ndata: 6789\n", |_| {}),
            Err(SseError::EventTooLarge { limit: 8 })
        );
        let mut parser = SseParser::with_max_event_size(8);
        let mut items = Vec::new();
        parser
            .feed(b"data: 12345678\n\n", |item| items.push(item))
            .unwrap();
        assert_eq!(items.len(), 1, "exactly the limit is allowed");
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let (items, _) = parse_all(&[b"data: a\xFFb\n\n"]);
        assert_eq!(items, vec![event("message", "a\u{FFFD}b", None)]);
    }
}
