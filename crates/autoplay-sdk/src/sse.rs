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
//! event's data. A line cut by a chunk boundary is buffered only until its field is
//! known: the rest of a `data:` line goes straight to the event's data, and a line
//! nothing will use (a comment, an unknown field, an over-long id) is discarded as it
//! arrives.
//!
//! Memory stays bounded whatever the server sends: an event over
//! [`max_event_size`](SseParser::max_event_size) is discarded up to its blank line
//! ([`SseItem::EventTooLarge`] says so) and the stream goes on; an id over
//! [`max_id_len`](SseParser::max_id_len) is ignored ([`SseItem::IdTooLong`]); and an
//! id is stored once, shared by every event that carries it ([`EventId`]).
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

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use compact_str::CompactString;

use crate::wire;

/// The default limit on one event's size (its data and its name): 16 MiB.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;

/// The default limit on an event id's length: 4096 bytes, well within what HTTP
/// servers accept in a request header.
pub const DEFAULT_MAX_ID_LEN: usize = 4096;

/// The event type of an event that names none.
pub const DEFAULT_EVENT_TYPE: &str = "message";

const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// The longest field name the parser acts on (`event`, `retry`).
const LONGEST_FIELD_NAME: usize = wire::RETRY_FIELD.len();

/// The field names, as the parser matches them.
const ID: &[u8] = wire::ID_FIELD.as_bytes();
const EVENT: &[u8] = wire::EVENT_FIELD.as_bytes();
const DATA: &[u8] = wire::DATA_FIELD.as_bytes();
const RETRY: &[u8] = wire::RETRY_FIELD.as_bytes();

/// A `retry:` value with more digits than this is ignored (a u64 has 20).
const MAX_RETRY_DIGITS: usize = 64;

/// The most capacity the next event's data is given ahead, from the size of the
/// previous one; a larger event grows its buffer as it arrives.
const MAX_DATA_CAPACITY_HINT: usize = 64 * 1024;

/// Spare capacity an event's data may keep when it is handed out; beyond it (and
/// beyond its length again), the buffer is shrunk, so that a small event queued
/// after a large one does not hold the large one's memory.
const MAX_SPARE_CAPACITY: usize = 4096;

/// The largest spent data buffer kept for reuse: the allocation saved matters
/// for small events, and the spares (at most [`MAX_SPARE_BUFFERS`] here and as many
/// waiting in the queue) then hold at most 2 MiB.
const MAX_REUSED_CAPACITY: usize = 16 * 1024;

/// The most spent data buffers the parser keeps for the next events (see
/// [`SseParser::spare_buffers`]).
pub(crate) const MAX_SPARE_BUFFERS: usize = 64;

/// A line buffer that grew past this is released after its line.
const MAX_KEPT_LINE_CAPACITY: usize = 64 * 1024;

/// An event id, stored once and shared by every event that carries it.
///
/// Ids up to 24 bytes (all the connector sends) are stored inline, without an
/// allocation; a longer one is allocated once, when the stream sets it, and each
/// event carrying it holds a reference. Dereferences to `str`.
#[derive(Clone)]
pub struct EventId(IdRepr);

#[derive(Clone)]
enum IdRepr {
    Inline(CompactString),
    Shared(Arc<str>),
}

impl EventId {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            IdRepr::Inline(id) => id.as_str(),
            IdRepr::Shared(id) => id,
        }
    }

    fn from_utf8_lossy(bytes: &[u8]) -> EventId {
        match std::str::from_utf8(bytes) {
            Ok(id) => EventId::from(id),
            Err(_) => EventId::from(String::from_utf8_lossy(bytes).as_ref()),
        }
    }
}

impl From<&str> for EventId {
    fn from(id: &str) -> Self {
        // A `CompactString` holds as many bytes inline as its own size (24).
        if id.len() <= std::mem::size_of::<CompactString>() {
            EventId(IdRepr::Inline(CompactString::from(id)))
        } else {
            EventId(IdRepr::Shared(Arc::from(id)))
        }
    }
}

impl From<String> for EventId {
    fn from(id: String) -> Self {
        EventId::from(id.as_str())
    }
}

impl Deref for EventId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for EventId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for EventId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for EventId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for EventId {}

impl PartialEq<str> for EventId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for EventId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::hash::Hash for EventId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

/// One dispatched event.
///
/// The event name is a [`CompactString`] (names up to 24 bytes are stored inline) and
/// the id an [`EventId`] (shared), so an event costs one allocation, its data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, `"message"` when the event named none.
    pub event: CompactString,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last event id when this event was dispatched: the event's own `id:`, or
    /// the latest one before it (`None` when no id was ever set, or after an empty
    /// `id:` reset it).
    pub id: Option<EventId>,
}

/// What the parser hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseItem {
    /// A complete event.
    Event(SseEvent),
    /// A `retry:` field: the server's reconnection delay in milliseconds.
    Retry(u64),
    /// An event grew past the maximum event size. It is discarded, up to its blank
    /// line, without being held; its `id:` (if any) still counts, so a resumed stream
    /// starts after it. Reported once per such event, when the limit is crossed.
    EventTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// An `id:` field longer than the maximum id length was ignored; the last event id
    /// stays as it was.
    IdTooLong {
        /// The configured limit in bytes.
        limit: usize,
    },
}

/// A stream the parser refuses to go on with.
///
/// There is none today: an oversized event is skipped ([`SseItem::EventTooLarge`]),
/// so [`SseParser::feed`] never fails. The type has no values; it keeps `feed`'s
/// signature for a failure a later version may add.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseError {}

impl fmt::Display for SseError {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
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

/// What becomes of a line cut by a chunk boundary, as its next bytes arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Partial {
    /// No line in progress: the last chunk ended at a line end.
    None,
    /// The line so far is in `partial_line`: its field is not known yet, or it is an
    /// `id`, `event` or `retry` line, whose value is short.
    Buffered,
    /// A `data` line whose colon was read but not the byte after it (an optional space).
    DataValueStart,
    /// A `data` line: its value is appended to the event's data as it arrives.
    Data,
    /// The rest of the line is discarded.
    Skip,
}

/// The incremental parser. One per stream; [`SseParser::reset_connection`] starts
/// a new connection while keeping the last event id.
#[derive(Debug)]
pub struct SseParser {
    max_event_size: usize,
    max_id_len: usize,
    /// The bytes of a line cut by a chunk boundary (`Partial::Buffered`).
    partial_line: Vec<u8>,
    partial: Partial,
    /// The previous chunk ended in CR: an LF at the start of the next is the same
    /// line end.
    after_cr: bool,
    bom: BomState,
    /// The event's data so far, as received; decoded as UTF-8 when dispatched.
    data: Vec<u8>,
    /// Whether any `data` field was seen: an event with `data:` and nothing after
    /// it carries empty data, while an event with no `data` field is not dispatched.
    has_data: bool,
    event_type: String,
    /// The value of the event's latest valid `id` field, when `id_seen`; it becomes
    /// the last event id at the event's blank line.
    id_field: Vec<u8>,
    id_seen: bool,
    last_event_id: Option<EventId>,
    /// The event being read went over `max_event_size`: its data and name are
    /// discarded up to its blank line.
    oversized: bool,
    /// Capacity for the next event's data, so the common case allocates once.
    data_capacity_hint: usize,
    /// Spent data buffers handed back by the consumer, for the next events' data.
    spare: Vec<Vec<u8>>,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the default limits ([`DEFAULT_MAX_EVENT_SIZE`],
    /// [`DEFAULT_MAX_ID_LEN`]).
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_MAX_EVENT_SIZE, DEFAULT_MAX_ID_LEN)
    }

    /// A parser that skips an event whose data and name exceed `max_event_size`
    /// bytes, with the default id length limit.
    pub fn with_max_event_size(max_event_size: usize) -> Self {
        Self::with_limits(max_event_size, DEFAULT_MAX_ID_LEN)
    }

    /// A parser that skips an event whose data and name exceed `max_event_size`
    /// bytes and ignores an `id:` longer than `max_id_len` bytes. Both limits are on
    /// the text handed out: invalid UTF-8 counts as the U+FFFD (3 bytes) it becomes.
    pub fn with_limits(max_event_size: usize, max_id_len: usize) -> Self {
        Self {
            max_event_size,
            max_id_len,
            partial_line: Vec::new(),
            partial: Partial::None,
            after_cr: false,
            bom: BomState::Matching(0),
            data: Vec::new(),
            has_data: false,
            event_type: String::new(),
            id_field: Vec::new(),
            id_seen: false,
            last_event_id: None,
            oversized: false,
            data_capacity_hint: 0,
            spare: Vec::new(),
        }
    }

    /// The configured maximum event size in bytes.
    pub fn max_event_size(&self) -> usize {
        self.max_event_size
    }

    /// The configured maximum id length in bytes.
    pub fn max_id_len(&self) -> usize {
        self.max_id_len
    }

    /// Sets the last event id, as when resuming from an id saved elsewhere.
    pub fn set_last_event_id(&mut self, id: Option<String>) {
        self.last_event_id = id.filter(|id| !id.is_empty()).map(EventId::from);
        self.id_seen = false;
    }

    /// The id to send as `Last-Event-ID` on the next connection: the id in force at
    /// the latest completed event, `None` when there is none.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// Where spent event data goes to be reused for the next events' data, so that
    /// a buffer is allocated and freed on the reader's thread rather than allocated
    /// here and freed on the consumer's: the system allocator (glibc's) is at its
    /// slowest with memory freed on another thread. Only empty buffers of at most
    /// `MAX_REUSED_CAPACITY` go here (see [`reusable`]), at most
    /// [`MAX_SPARE_BUFFERS`] of them.
    pub(crate) fn spare_buffers(&mut self) -> &mut Vec<Vec<u8>> {
        &mut self.spare
    }

    /// Starts a new connection: forgets any half-read event and line, and expects
    /// a fresh stream (which may open with a BOM). The last event id is kept.
    pub fn reset_connection(&mut self) {
        self.partial_line.clear();
        if self.partial_line.capacity() > MAX_KEPT_LINE_CAPACITY {
            self.partial_line = Vec::new();
        }
        self.partial = Partial::None;
        self.after_cr = false;
        self.bom = BomState::Matching(0);
        self.clear_data();
        self.has_data = false;
        self.event_type.clear();
        self.id_seen = false;
        self.oversized = false;
    }

    /// Ends the stream: an unfinished event is discarded, as the standard says.
    pub fn finish(&mut self) {
        self.reset_connection();
    }

    /// Parses the next chunk of the stream, calling `emit` for each event, `retry`
    /// field and skipped event or id it completes, in order. Never fails (see
    /// [`SseError`]).
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
            if self.partial == Partial::None {
                self.process_line(&rest[..end], &mut emit);
            } else {
                self.continue_line(&rest[..end], &mut emit);
                self.end_partial_line(&mut emit);
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
            self.continue_line(rest, &mut emit);
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
        if matched > 0 {
            self.partial_line.extend_from_slice(&BOM[..matched]);
            self.partial = Partial::Buffered;
        }
        &chunk[used..]
    }

    /// The next bytes of a line whose end has not been seen yet.
    fn continue_line(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(SseItem)) {
        loop {
            match self.partial {
                Partial::None | Partial::Buffered => {
                    self.partial = Partial::Buffered;
                    match self.buffer(bytes, emit) {
                        Some(rest) => bytes = rest,
                        None => return,
                    }
                }
                Partial::DataValueStart => {
                    let Some(&first) = bytes.first() else {
                        return;
                    };
                    if first == b' ' {
                        bytes = &bytes[1..];
                    }
                    self.partial = Partial::Data;
                }
                Partial::Data => {
                    self.append_data(bytes, emit);
                    return;
                }
                Partial::Skip => return,
            }
        }
    }

    /// Keeps the start of a cut line until its field is known. Returns the bytes not
    /// taken once the line has turned into a data line or one to skip.
    fn buffer<'a>(&mut self, bytes: &'a [u8], emit: &mut impl FnMut(SseItem)) -> Option<&'a [u8]> {
        let colon = match memchr::memchr(b':', &self.partial_line) {
            Some(colon) => colon,
            None => {
                let Some(at) = memchr::memchr(b':', bytes) else {
                    if self.partial_line.len() + bytes.len() > LONGEST_FIELD_NAME {
                        // An unknown field, whatever its value: the standard ignores it.
                        return Some(self.skip_line());
                    }
                    self.partial_line.extend_from_slice(bytes);
                    return None;
                };
                let name_len = self.partial_line.len() + at;
                if name_len > LONGEST_FIELD_NAME {
                    return Some(self.skip_line());
                }
                self.partial_line.extend_from_slice(&bytes[..at]);
                let rest = &bytes[at + 1..];
                match self.partial_line.as_slice() {
                    DATA => {
                        self.partial_line.clear();
                        self.start_data_line(emit);
                        return Some(rest);
                    }
                    EVENT if self.oversized => return Some(self.skip_line()),
                    ID | EVENT | RETRY => {
                        self.partial_line.push(b':');
                        return self.buffer_value(name_len, rest, emit);
                    }
                    // A comment (empty name) or an unknown field.
                    _ => return Some(self.skip_line()),
                }
            }
        };
        self.buffer_value(colon, bytes, emit)
    }

    /// Buffers more of an `id`, `event` or `retry` value, `partial_line` holding the
    /// field name, the colon at `colon` and the value so far; a value past its limit
    /// turns the line into one to skip.
    fn buffer_value<'a>(
        &mut self,
        colon: usize,
        bytes: &'a [u8],
        emit: &mut impl FnMut(SseItem),
    ) -> Option<&'a [u8]> {
        let total = self.partial_line.len() + bytes.len();
        let after_colon = colon + 1;
        let space = match self.partial_line.get(after_colon) {
            Some(&b) => b == b' ',
            None => bytes.get(after_colon - self.partial_line.len()) == Some(&b' '),
        };
        let value_len = total.saturating_sub(after_colon + usize::from(space));
        let over = match &self.partial_line[..colon] {
            ID => value_len > self.max_id_len,
            EVENT => value_len > self.event_room(),
            _ => value_len > MAX_RETRY_DIGITS,
        };
        if !over {
            self.partial_line.extend_from_slice(bytes);
            return None;
        }
        match &self.partial_line[..colon] {
            ID => emit(SseItem::IdTooLong {
                limit: self.max_id_len,
            }),
            EVENT => self.start_oversized(emit),
            _ => {}
        }
        self.partial_line.clear();
        Some(self.skip_line())
    }

    /// Discards the rest of the current line.
    fn skip_line(&mut self) -> &'static [u8] {
        self.partial_line.clear();
        self.partial = Partial::Skip;
        &[]
    }

    /// The end of a line cut by a chunk boundary.
    fn end_partial_line(&mut self, emit: &mut impl FnMut(SseItem)) {
        if std::mem::replace(&mut self.partial, Partial::None) != Partial::Buffered {
            return;
        }
        // Take the buffer out so the line can borrow it while fields change.
        let mut line = std::mem::take(&mut self.partial_line);
        self.process_line(&line, emit);
        line.clear();
        if line.capacity() <= MAX_KEPT_LINE_CAPACITY {
            self.partial_line = line;
        }
    }

    /// The bytes an event name may still take: the event's size counts its name.
    fn event_room(&self) -> usize {
        self.max_event_size.saturating_sub(self.data.len())
    }

    /// A data line begins (its value follows): joins it to the previous data line.
    fn start_data_line(&mut self, emit: &mut impl FnMut(SseItem)) {
        if self.oversized {
            self.skip_line();
            return;
        }
        // The same check as a whole data line's (`process_line`), so that where the
        // stream is cut never matters: the first line must leave room for the name
        // too, even if its value is empty.
        let joint = usize::from(self.has_data);
        if self.data.len() + joint + self.event_type.len() > self.max_event_size {
            self.start_oversized(emit);
            self.skip_line();
            return;
        }
        if self.has_data {
            self.data.push(b'\n');
        }
        self.has_data = true;
        self.partial = Partial::DataValueStart;
    }

    /// More of a data line's value.
    fn append_data(&mut self, bytes: &[u8], emit: &mut impl FnMut(SseItem)) {
        if self.data.len() + bytes.len() + self.event_type.len() > self.max_event_size {
            self.start_oversized(emit);
            self.skip_line();
            return;
        }
        self.data.extend_from_slice(bytes);
    }

    /// The event being read is over the limit: what it holds is released, the rest
    /// of it is discarded up to its blank line.
    fn start_oversized(&mut self, emit: &mut impl FnMut(SseItem)) {
        self.oversized = true;
        self.has_data = false;
        self.clear_data();
        self.event_type.clear();
        emit(SseItem::EventTooLarge {
            limit: self.max_event_size,
        });
    }

    fn clear_data(&mut self) {
        if self.data.capacity() > MAX_DATA_CAPACITY_HINT.max(self.data_capacity_hint) {
            self.data = Vec::new();
        } else {
            self.data.clear();
        }
    }

    fn process_line(&mut self, line: &[u8], emit: &mut impl FnMut(SseItem)) {
        if line.is_empty() {
            self.dispatch(emit);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            DATA if !self.oversized => {
                let added = value.len() + usize::from(self.has_data);
                if self.data.len() + added + self.event_type.len() > self.max_event_size {
                    self.start_oversized(emit);
                    return;
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            EVENT if !self.oversized => {
                if text_len(value) > self.event_room() {
                    self.start_oversized(emit);
                    return;
                }
                self.event_type.clear();
                push_utf8(&mut self.event_type, value);
            }
            ID => {
                if text_len(value) > self.max_id_len {
                    emit(SseItem::IdTooLong {
                        limit: self.max_id_len,
                    });
                } else if memchr::memchr(0, value).is_none() {
                    // The standard ignores an id containing NUL.
                    self.id_field.clear();
                    self.id_field.extend_from_slice(value);
                    self.id_seen = true;
                }
            }
            // Only ASCII digits; a value too large for u64 is ignored like any other
            // invalid one.
            RETRY
                if !value.is_empty()
                    && value.len() <= MAX_RETRY_DIGITS
                    && value.iter().all(u8::is_ascii_digit) =>
            {
                if let Ok(ms) = std::str::from_utf8(value)
                    .unwrap_or_default()
                    .parse::<u64>()
                {
                    emit(SseItem::Retry(ms));
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, emit: &mut impl FnMut(SseItem)) {
        if self.id_seen {
            self.id_seen = false;
            if self.id_field.is_empty() {
                self.last_event_id = None;
            } else if self.last_event_id.as_deref().map(str::as_bytes)
                != Some(self.id_field.as_slice())
            {
                self.last_event_id = Some(EventId::from_utf8_lossy(&self.id_field));
            }
        }
        if self.oversized {
            self.oversized = false;
            self.event_type.clear();
            return;
        }
        if !self.has_data {
            self.event_type.clear();
            return;
        }
        self.has_data = false;
        self.data_capacity_hint = self.data.len().min(MAX_DATA_CAPACITY_HINT);
        let next = match self.spare.pop() {
            Some(spare) => spare,
            None => Vec::with_capacity(self.data_capacity_hint),
        };
        let mut data = std::mem::replace(&mut self.data, next);
        if data.capacity() > 2 * data.len() + MAX_SPARE_CAPACITY {
            data.shrink_to_fit();
        }
        let data = match String::from_utf8(data) {
            Ok(data) => data,
            Err(e) => {
                // Each invalid byte becomes a 3-byte U+FFFD: the limit applies to
                // the text handed out, so an event that grows past it is skipped
                // (measured before decoding, so it never takes the memory).
                let bytes = e.into_bytes();
                if lossy_len(&bytes) + self.event_type.len() > self.max_event_size {
                    self.event_type.clear();
                    emit(SseItem::EventTooLarge {
                        limit: self.max_event_size,
                    });
                    return;
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
        };
        let event = if self.event_type.is_empty() {
            CompactString::const_new(DEFAULT_EVENT_TYPE)
        } else {
            let name = CompactString::from(self.event_type.as_str());
            self.event_type.clear();
            name
        };
        let id = self.last_event_id.clone();
        emit(SseItem::Event(SseEvent { event, data, id }));
    }
}

/// A spent data buffer, emptied, when it is worth keeping for another event.
pub(crate) fn reusable(mut buffer: Vec<u8>) -> Option<Vec<u8>> {
    if buffer.capacity() == 0 || buffer.capacity() > MAX_REUSED_CAPACITY {
        return None;
    }
    buffer.clear();
    Some(buffer)
}

/// The length of a field value as the text it becomes. The limits apply to that
/// text, and invalid UTF-8 grows when replaced (a bad byte becomes a 3-byte U+FFFD).
fn text_len(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(_) => lossy_len(bytes),
    }
}

/// The length of `bytes` decoded as UTF-8 with replacement characters.
fn lossy_len(bytes: &[u8]) -> usize {
    bytes
        .utf8_chunks()
        .map(|chunk| {
            let invalid = if chunk.invalid().is_empty() {
                0
            } else {
                '\u{FFFD}'.len_utf8()
            };
            chunk.valid().len() + invalid
        })
        .sum()
}

/// Appends bytes decoded as UTF-8, replacing invalid sequences as the standard's
/// decoder does. Line ends never fall inside a UTF-8 sequence, so decoding line by
/// line (or a whole event's data at once) is the same as decoding the whole stream.
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

    #[test]
    fn a_spare_buffer_becomes_a_later_events_data_and_big_ones_are_not_kept() {
        let mut parser = SseParser::new();
        let spare = Vec::with_capacity(64);
        let spare_at = spare.as_ptr();
        parser.spare_buffers().push(spare);
        let mut items = Vec::new();
        parser
            .feed(b"data: a\n\ndata: b\n\n", |item| items.push(item))
            .unwrap();
        // The first event's buffer was there before the spare; the next one is the spare.
        let [SseItem::Event(first), SseItem::Event(second)] = items.as_slice() else {
            panic!("two events, got {items:?}");
        };
        assert_eq!((first.data.as_str(), second.data.as_str()), ("a", "b"));
        assert_eq!(second.data.as_ptr(), spare_at);

        let reused = reusable(b"spent".to_vec()).expect("a small buffer is reused");
        assert!(reused.is_empty());
        assert!(reusable(Vec::with_capacity(MAX_REUSED_CAPACITY + 1)).is_none());
        assert!(reusable(Vec::new()).is_none());
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

    fn parse_limited(
        max_event: usize,
        max_id: usize,
        chunks: &[&[u8]],
    ) -> (Vec<SseItem>, SseParser) {
        let mut parser = SseParser::with_limits(max_event, max_id);
        let mut items = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, |item| items.push(item)).unwrap();
        }
        (items, parser)
    }

    const TOO_LARGE: SseItem = SseItem::EventTooLarge { limit: 8 };

    #[test]
    fn an_oversized_event_is_skipped_to_its_blank_line_and_reading_goes_on() {
        // Over the limit by one line, by a join, by a single long line, and cut
        // over chunks; each time the next event arrives.
        for stream in [
            &b"data: 12345\ndata: 6789\nid: 5\n\ndata: ok\n\n"[..],
            b"data: 1234\ndata: 1234\nid: 5\n\ndata: ok\n\n",
            b"id: 5\ndata: 123456789\ndata: more\n\ndata: ok\n\n",
        ] {
            for split in 0..stream.len() {
                let (items, parser) = parse_limited(8, 64, &[&stream[..split], &stream[split..]]);
                assert_eq!(
                    items,
                    vec![TOO_LARGE, event("message", "ok", Some("5"))],
                    "{:?} split at {split}",
                    String::from_utf8_lossy(stream)
                );
                assert_eq!(
                    parser.last_event_id(),
                    Some("5"),
                    "the skipped event's id counts"
                );
            }
        }
        let (items, _) = parse_limited(8, 64, &[b"data: 12345678\n\n"]);
        assert_eq!(
            items,
            vec![event("message", "12345678", None)],
            "exactly the limit is allowed"
        );
    }

    #[test]
    fn the_event_name_counts_toward_the_size() {
        let (items, _) = parse_limited(8, 64, &[b"event: abcd\ndata: 12345\n\ndata: ok\n\n"]);
        assert_eq!(items, vec![TOO_LARGE, event("message", "ok", None)]);
        let (items, _) = parse_limited(8, 64, &[b"data: 12345\nevent: abcd\n\n"]);
        assert_eq!(items, vec![TOO_LARGE]);
    }

    #[test]
    fn an_endless_line_is_never_held_whatever_its_field() {
        let chunk = [b'a'; 1000];
        for start in [&b"data: "[..], b"event: ", b"id: ", b"retry: ", b": ", b"x"] {
            let mut parser = SseParser::with_limits(4096, 64);
            let mut items = Vec::new();
            parser.feed(start, |i| items.push(i)).unwrap();
            for _ in 0..1000 {
                parser.feed(&chunk, |i| items.push(i)).unwrap();
            }
            let held = parser.partial_line.capacity() + parser.data.capacity();
            assert!(
                held <= 8192,
                "{:?}: {held} bytes held",
                String::from_utf8_lossy(start)
            );
            parser
                .feed(b"\n\ndata: next\n\n", |i| items.push(i))
                .unwrap();
            assert_eq!(items.last(), Some(&event("message", "next", None)));
        }
    }

    #[test]
    fn a_data_line_cut_over_many_chunks_is_copied_once() {
        let value = "0123456789".repeat(100_000);
        let stream = format!("data: {value}\n\n");
        let mut parser = SseParser::new();
        let mut items = Vec::new();
        for chunk in stream.as_bytes().chunks(1000) {
            parser.feed(chunk, |i| items.push(i)).unwrap();
            assert!(
                parser.partial_line.capacity() < 64,
                "the line is not buffered"
            );
        }
        assert_eq!(items, vec![event("message", &value, None)]);
    }

    #[test]
    fn a_long_id_is_ignored_and_reported_cut_or_whole() {
        let long = format!("id: {}\n", "7".repeat(65));
        let stream = format!("id: 1\ndata: a\n\n{long}data: b\n\n");
        let stream = stream.as_bytes();
        for split in 0..stream.len() {
            let (items, parser) = parse_limited(1024, 64, &[&stream[..split], &stream[split..]]);
            assert_eq!(
                items,
                vec![
                    event("message", "a", Some("1")),
                    SseItem::IdTooLong { limit: 64 },
                    event("message", "b", Some("1")),
                ],
                "split at {split}"
            );
            assert_eq!(parser.last_event_id(), Some("1"));
        }
        let exact = format!("id: {}\ndata: c\n\n", "7".repeat(64));
        let (items, _) = parse_limited(1024, 64, &[exact.as_bytes()]);
        assert_eq!(items, vec![event("message", "c", Some(&"7".repeat(64)))]);
    }

    #[test]
    fn one_id_is_shared_by_the_events_that_carry_it() {
        let id = "x".repeat(1000);
        let stream = format!("id: {id}\ndata: a\n\ndata: b\n\ndata: c\n\n");
        let (items, _) = parse_all(&[stream.as_bytes()]);
        let ids: Vec<&EventId> = items
            .iter()
            .map(|i| match i {
                SseItem::Event(e) => e.id.as_ref().unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids.len(), 3);
        assert!(ids.iter().all(|i| i.as_str() == id));
        assert!(
            ids.windows(2)
                .all(|w| std::ptr::eq(w[0].as_str(), w[1].as_str())),
            "one allocation for all three"
        );
        // The same id sent again is not stored again.
        let again = format!("id: {id}\ndata: a\n\nid: {id}\ndata: b\n\n");
        let (items, _) = parse_all(&[again.as_bytes()]);
        let [SseItem::Event(a), SseItem::Event(b)] = &items[..] else {
            panic!()
        };
        assert!(std::ptr::eq(
            a.id.as_deref().unwrap(),
            b.id.as_deref().unwrap()
        ));
    }

    #[test]
    fn short_ids_are_inline_and_compare_as_strings() {
        let id = EventId::from("1042");
        assert!(matches!(id.0, IdRepr::Inline(_)));
        assert!(matches!(EventId::from("y".repeat(25)).0, IdRepr::Shared(_)));
        assert_eq!(id, "1042");
        assert_eq!(id.to_string(), "1042");
        assert_eq!(format!("{id:?}"), "\"1042\"");
        assert_eq!(std::mem::size_of::<Option<EventId>>(), 24);
    }

    #[test]
    fn a_small_event_after_a_large_one_does_not_keep_its_memory() {
        let big = format!("data: {}\n\n", "z".repeat(200_000));
        let (items, _) = parse_all(&[big.as_bytes(), b"data: small\n\n"]);
        let SseItem::Event(small) = &items[1] else {
            panic!()
        };
        assert!(
            small.data.capacity() < MAX_SPARE_CAPACITY * 2,
            "{}",
            small.data.capacity()
        );
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let (items, _) = parse_all(&[b"data: a\xFFb\n\n"]);
        assert_eq!(items, vec![event("message", "a\u{FFFD}b", None)]);
    }
}
