//! A direct decoder for the payloads as the connector writes them: compact JSON
//! (no whitespace), string values without escapes, known keys, each at most once.
//!
//! It is a fast path in front of the serde decoder ([`super::WirePayload`]), not a
//! second definition of the format: whatever it does not recognise exactly, it
//! declines (`None`), and the serde path decodes the payload from the start, with
//! its errors, warnings and leniency (whitespace, escapes, unknown keys, numeric
//! ids, a `count` that disagrees). What it accepts it decodes to the same value as
//! the serde path; `tests` checks that over the fixtures and random payloads.
//!
//! Why: serde's generic machinery (a visitor per value, `Option` glue per field,
//! key matching through a field enum) is most of the decoder's own cost, and the
//! decoder runs on the callback thread, the busier of the client's two.

use compact_str::CompactString;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    ACTIONS_TYPE, ActionsPayload, Event, Properties, SUMMARY_TYPE, SlimAction, SummaryPayload,
};

/// Decodes `data` if it has the connector's shape; `None` means "use the serde
/// path", never "invalid".
pub(super) fn decode(data: &str, fallback: Option<&'static str>) -> Option<Event> {
    let mut r = Reader {
        src: data,
        s: data.as_bytes(),
        pos: 0,
    };
    let top = r.top()?;
    if r.pos != r.s.len() {
        return None;
    }
    let kind = match top.kind {
        Some(kind) => kind,
        None => fallback?,
    };
    match kind {
        ACTIONS_TYPE => {
            let actions = top.actions.unwrap_or_default();
            // A disagreeing count is logged by the serde path.
            if top.count.is_some_and(|count| count != actions.len() as u64) {
                return None;
            }
            Some(Event::Actions(ActionsPayload {
                product_id: top.product_id,
                session_id: top.session_id,
                user_id: top.user_id,
                email: top.email,
                ts: top.ts,
                forwarded_at: top.forwarded_at,
                actions,
                conversation_id: top.conversation_id,
            }))
        }
        SUMMARY_TYPE => Some(Event::Summary(SummaryPayload {
            product_id: top.product_id,
            session_id: top.session_id,
            summary: top.summary.or(top.content).unwrap_or_default(),
            replaces: top.replaces.unwrap_or(0),
            ts: top.ts,
            forwarded_at: top.forwarded_at,
        })),
        _ => None,
    }
}

/// The top-level fields, as [`super::WirePayload`] has them.
#[derive(Default)]
struct Top {
    kind: Option<&'static str>,
    product_id: Option<CompactString>,
    session_id: Option<CompactString>,
    user_id: Option<CompactString>,
    email: Option<CompactString>,
    ts: Option<CompactString>,
    forwarded_at: Option<f64>,
    count: Option<u64>,
    conversation_id: Option<CompactString>,
    actions: Option<Vec<SlimAction>>,
    summary: Option<CompactString>,
    content: Option<CompactString>,
    replaces: Option<u64>,
}

// Keys as they are written: quoted, with their colon. The tables are in the order
// the connector writes the keys (`serialize_as`), so the key after the last one
// is tried first.

/// A payload's keys.
const TOP_KEYS: [&[u8]; 13] = [
    b"\"type\":",
    b"\"product_id\":",
    b"\"session_id\":",
    b"\"user_id\":",
    b"\"email\":",
    b"\"ts\":",
    b"\"forwarded_at\":",
    b"\"count\":",
    b"\"actions\":",
    b"\"conversation_id\":",
    b"\"summary\":",
    b"\"content\":",
    b"\"replaces\":",
];
/// An action's keys.
const ACTION_KEYS: [&[u8]; 15] = [
    b"\"event_type\":",
    b"\"type\":",
    b"\"title\":",
    b"\"description\":",
    b"\"canonical_url\":",
    b"\"raw_url\":",
    b"\"ts\":",
    b"\"properties\":",
    b"\"index\":",
    b"\"timestamp_start\":",
    b"\"timestamp_end\":",
    b"\"session_id\":",
    b"\"user_id\":",
    b"\"email\":",
    b"\"conversation_id\":",
];

struct Reader<'a> {
    src: &'a str,
    s: &'a [u8],
    pos: usize,
}

/// Marks a key as seen; `None` when it was already (serde's decoders reject a key
/// given twice, so the serde path must say so).
fn once(seen: &mut u16, bit: u16) -> Option<()> {
    if *seen & bit != 0 {
        return None;
    }
    *seen |= bit;
    Some(())
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// After a member or element: `Some(true)` past a comma (another one follows),
    /// `Some(false)` past `close`, `None` on anything else.
    fn more(&mut self, close: u8) -> Option<bool> {
        let byte = self.peek()?;
        if byte != b',' && byte != close {
            return None;
        }
        self.pos += 1;
        Some(byte == b',')
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        if self.peek()? == byte {
            self.pos += 1;
            Some(())
        } else {
            None
        }
    }

    fn eat_literal(&mut self, literal: &[u8]) -> bool {
        if self.s[self.pos..].starts_with(literal) {
            self.pos += literal.len();
            true
        } else {
            false
        }
    }

    /// `null`, consumed; whether it was there.
    fn null(&mut self) -> bool {
        self.eat_literal(b"null")
    }

    /// The next key and its colon, as its index in `keys`; `None` for a key not in
    /// it. `next` is where the previous key was found, plus one.
    fn key(&mut self, keys: &[&[u8]], next: &mut usize) -> Option<usize> {
        if let Some(pattern) = keys.get(*next)
            && self.s[self.pos..].starts_with(pattern)
        {
            self.pos += pattern.len();
            *next += 1;
            return Some(*next - 1);
        }
        let key = self.raw_str()?.as_bytes();
        self.eat(b':')?;
        let found = keys
            .iter()
            .position(|pattern| &pattern[1..pattern.len() - 2] == key)?;
        *next = found + 1;
        Some(found)
    }

    /// A string without escapes or control characters (anything else declines).
    fn raw_str(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        let end = start + plain_len(&self.s[start..]);
        if self.s.get(end) != Some(&b'"') {
            return None;
        }
        self.pos = end + 1;
        // Both ends are next to ASCII bytes, so on char boundaries.
        self.src.get(start..end)
    }

    /// A string value. Escapes other than `\u` are unescaped here; a `\u` escape
    /// or a control character declines.
    fn string(&mut self) -> Option<CompactString> {
        self.eat(b'"')?;
        let start = self.pos;
        let end = start + plain_len(&self.s[start..]);
        match self.s.get(end)? {
            b'"' => {
                self.pos = end + 1;
                self.src.get(start..end).map(CompactString::from)
            }
            b'\\' => {
                let mut text = String::from(self.src.get(start..end)?);
                self.pos = end;
                loop {
                    match self.s.get(self.pos)? {
                        b'"' => {
                            self.pos += 1;
                            return Some(CompactString::from(text));
                        }
                        b'\\' => {
                            let unescaped = match self.s.get(self.pos + 1)? {
                                b'"' => '"',
                                b'\\' => '\\',
                                b'/' => '/',
                                b'b' => '\u{8}',
                                b'f' => '\u{c}',
                                b'n' => '\n',
                                b'r' => '\r',
                                b't' => '\t',
                                _ => return None,
                            };
                            text.push(unescaped);
                            self.pos += 2;
                        }
                        _ => {
                            let from = self.pos;
                            let to = from + plain_len(&self.s[from..]);
                            if to == from {
                                // A control character: serde reports it.
                                return None;
                            }
                            text.push_str(self.src.get(from..to)?);
                            self.pos = to;
                        }
                    }
                }
            }
            _ => None,
        }
    }

    fn opt_string(&mut self) -> Option<Option<CompactString>> {
        if self.null() {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// A JSON number token, as serde_json's grammar has it.
    fn number_token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let s = self.s;
        let mut i = start;
        if s.get(i) == Some(&b'-') {
            i += 1;
        }
        match s.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                while s.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return None,
        }
        if s.get(i) == Some(&b'.') {
            i += 1;
            let digits = i;
            while s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == digits {
                return None;
            }
        }
        if matches!(s.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(s.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let digits = i;
            while s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == digits {
                return None;
            }
        }
        self.pos = i;
        self.src.get(start..i)
    }

    fn opt_f64(&mut self) -> Option<Option<f64>> {
        if self.null() {
            return Some(None);
        }
        let token = self.number_token()?;
        // Rust's parse rounds correctly, as serde_json does with `float_roundtrip`;
        // integers too large for u64 are left to serde, which reads them its way.
        if !token.contains(['.', 'e', 'E']) && token.len() > 18 {
            return None;
        }
        let value: f64 = token.parse().ok()?;
        value.is_finite().then_some(Some(value))
    }

    fn opt_u64(&mut self) -> Option<Option<u64>> {
        if self.null() {
            return Some(None);
        }
        let token = self.number_token()?;
        // Only plain non-negative integers that fit; serde reports the rest.
        if token.len() > 19 || !token.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        token.parse().ok().map(Some)
    }

    fn properties(&mut self) -> Option<Properties> {
        if self.null() || self.eat_literal(b"{}") {
            return Some(Properties::default());
        }
        if self.peek()? != b'{' {
            return None;
        }
        // A non-empty object: serde_json finds its end and checks it, as it would
        // on the serde path, and the raw text is kept as there.
        let rest = self.src.get(self.pos..)?;
        let mut de = serde_json::Deserializer::from_str(rest);
        let raw = <&RawValue>::deserialize(&mut de).ok()?;
        let json = raw.get();
        let offset = json.as_ptr() as usize - rest.as_ptr() as usize;
        if offset != 0 {
            return None;
        }
        self.pos += json.len();
        Some(Properties::from_raw(raw.to_owned()).unwrap_or_default())
    }

    fn top(&mut self) -> Option<Top> {
        let mut top = Top::default();
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(top);
        }
        let (mut seen, mut next) = (0u16, 0);
        loop {
            let key = self.key(&TOP_KEYS, &mut next)?;
            let s = &mut seen;
            match key {
                0 => {
                    // type
                    once(s, 1)?;
                    top.kind = if self.null() {
                        None
                    } else {
                        match self.raw_str()? {
                            ACTIONS_TYPE => Some(ACTIONS_TYPE),
                            SUMMARY_TYPE => Some(SUMMARY_TYPE),
                            _ => return None,
                        }
                    };
                }
                1 => {
                    // product_id
                    once(s, 1 << 1)?;
                    top.product_id = self.opt_string()?;
                }
                2 => {
                    // session_id
                    once(s, 1 << 2)?;
                    top.session_id = self.opt_string()?;
                }
                3 => {
                    // user_id
                    once(s, 1 << 3)?;
                    top.user_id = self.opt_string()?;
                }
                4 => {
                    // email
                    once(s, 1 << 4)?;
                    top.email = self.opt_string()?;
                }
                5 => {
                    // ts
                    once(s, 1 << 5)?;
                    top.ts = self.opt_string()?;
                }
                6 => {
                    // forwarded_at
                    once(s, 1 << 6)?;
                    top.forwarded_at = self.opt_f64()?;
                }
                7 => {
                    // count
                    once(s, 1 << 7)?;
                    top.count = self.opt_u64()?;
                }
                9 => {
                    // conversation_id
                    once(s, 1 << 8)?;
                    top.conversation_id = self.opt_string()?;
                }
                8 => {
                    // actions
                    once(s, 1 << 9)?;
                    top.actions = if self.null() {
                        None
                    } else {
                        Some(self.actions()?)
                    };
                }
                10 => {
                    // summary
                    once(s, 1 << 10)?;
                    top.summary = self.opt_string()?;
                }
                11 => {
                    // content
                    once(s, 1 << 11)?;
                    top.content = self.opt_string()?;
                }
                12 => {
                    // replaces
                    once(s, 1 << 12)?;
                    top.replaces = self.opt_u64()?;
                }
                _ => return None,
            }
            if !self.more(b'}')? {
                return Some(top);
            }
        }
    }

    fn actions(&mut self) -> Option<Vec<SlimAction>> {
        self.eat(b'[')?;
        let mut actions = Vec::new();
        if self.eat(b']').is_some() {
            return Some(actions);
        }
        loop {
            actions.push(SlimAction::default());
            let slot = actions.last_mut().expect("just pushed");
            self.action(slot)?;
            if !self.more(b']')? {
                return Some(actions);
            }
        }
    }

    /// One action, filled in place as [`super::FillAction`] does.
    fn action(&mut self, action: &mut SlimAction) -> Option<()> {
        self.eat(b'{')?;
        let (mut event_type, mut kind) = (None, None);
        if self.eat(b'}').is_none() {
            let (mut seen, mut next) = (0u16, 0);
            loop {
                let key = self.key(&ACTION_KEYS, &mut next)?;
                let s = &mut seen;
                match key {
                    0 => {
                        // event_type
                        once(s, 1)?;
                        event_type = self.opt_string()?;
                    }
                    1 => {
                        // type
                        once(s, 1 << 1)?;
                        kind = self.opt_string()?;
                    }
                    2 => {
                        // title
                        once(s, 1 << 2)?;
                        action.title = self.opt_string()?.unwrap_or_default();
                    }
                    3 => {
                        // description
                        once(s, 1 << 3)?;
                        action.description = self.opt_string()?.unwrap_or_default();
                    }
                    4 => {
                        // canonical_url
                        once(s, 1 << 4)?;
                        action.canonical_url = self.opt_string()?.unwrap_or_default();
                    }
                    5 => {
                        // raw_url
                        once(s, 1 << 5)?;
                        action.raw_url = self.opt_string()?;
                    }
                    6 => {
                        // ts
                        once(s, 1 << 6)?;
                        action.ts = self.opt_string()?;
                    }
                    7 => {
                        // properties
                        once(s, 1 << 7)?;
                        action.properties = self.properties()?;
                    }
                    8 => {
                        // index
                        once(s, 1 << 8)?;
                        action.index = self.opt_u64()?;
                    }
                    9 => {
                        // timestamp_start
                        once(s, 1 << 9)?;
                        action.timestamp_start = self.opt_f64()?;
                    }
                    10 => {
                        // timestamp_end
                        once(s, 1 << 10)?;
                        action.timestamp_end = self.opt_f64()?;
                    }
                    11 => {
                        // session_id
                        once(s, 1 << 11)?;
                        action.session_id = self.opt_string()?;
                    }
                    12 => {
                        // user_id
                        once(s, 1 << 12)?;
                        action.user_id = self.opt_string()?;
                    }
                    13 => {
                        // email
                        once(s, 1 << 13)?;
                        action.email = self.opt_string()?;
                    }
                    14 => {
                        // conversation_id
                        once(s, 1 << 14)?;
                        action.conversation_id = self.opt_string()?;
                    }
                    _ => return None,
                }
                if !self.more(b'}')? {
                    break;
                }
            }
        }
        action.event_type = event_type.or(kind).unwrap_or_default();
        Some(())
    }
}

/// How many bytes from the start are plain string content: neither a quote, a
/// backslash nor a control character. Sixteen bytes at a time where SSE2 is there
/// (every x86-64), else eight with plain integer arithmetic.
fn plain_len(s: &[u8]) -> usize {
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8,
        };
        while i + 16 <= s.len() {
            // SAFETY: SSE2 is part of x86-64; the load reads the 16 bytes at
            // `s[i..i + 16]`, which the loop condition keeps in bounds (unaligned
            // loads are allowed).
            let mask = unsafe {
                let chunk = _mm_loadu_si128(s.as_ptr().add(i).cast::<__m128i>());
                let quote = _mm_cmpeq_epi8(chunk, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(chunk, _mm_set1_epi8(b'\\' as i8));
                // Unsigned `byte <= 0x1f` is `max(byte, 0x1f) == 0x1f`.
                let limit = _mm_set1_epi8(0x1f);
                let control = _mm_cmpeq_epi8(_mm_max_epu8(chunk, limit), limit);
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control))
            };
            if mask != 0 {
                return i + mask.trailing_zeros() as usize;
            }
            i += 16;
        }
    }
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTE: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASH: u64 = u64::from_ne_bytes([b'\\'; 8]);
    const SPACE: u64 = u64::from_ne_bytes([0x20; 8]);
    while i + 8 <= s.len() {
        let word = u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
        // A byte is flagged when it is below 0x20 or equal to one of the two (the
        // "has a zero byte" test on word ^ pattern, and on word - 0x20); a borrow
        // only runs upwards, so the lowest flagged byte is exact.
        let quote = word ^ QUOTE;
        let backslash = word ^ BACKSLASH;
        let flagged = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(SPACE) & !word);
        let flagged = flagged & HIGH;
        if flagged != 0 {
            return i + (flagged.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < s.len() && !matches!(s[i], b'"' | b'\\' | 0..=0x1f) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::Event;

    /// The fast path's answer, checked against the serde path's on the same input:
    /// whatever it accepts must be what serde gives, to the bit (`to_json` shows
    /// `-0.0` and every float digit); returns whether it accepted.
    fn agrees(data: &str, name: &str) -> bool {
        let fallback = match name {
            "actions" => Some("actions"),
            "summary" => Some("summary"),
            _ => None,
        };
        let Some(fast) = super::decode(data, fallback) else {
            return false;
        };
        let slow = Event::decode_with_serde(data, fallback)
            .unwrap_or_else(|e| panic!("fast path accepted what serde rejects ({e}): {data}"));
        assert_eq!(fast, slow, "{data}");
        assert_eq!(fast.to_json(), slow.to_json(), "{data}");
        assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{data}");
        true
    }

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/wire/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn fixtures_decode_the_same_as_written_and_compacted() {
        let names = [
            "actions-anonymous-count-mismatch.json",
            "actions-canonical.json",
            "actions-later-shape.json",
            "actions-readme-shape.json",
            "summary-code-shape.json",
            "summary-readme-shape.json",
        ];
        let mut accepted = 0;
        for name in names {
            let text = fixture(name);
            let compact: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
            let compact = compact.to_string();
            for data in [text.trim(), compact.as_str()] {
                for event_name in ["actions", "summary", "message"] {
                    accepted += usize::from(agrees(data, event_name));
                }
            }
        }
        // The canonical fixture is compact already: the fast path must take it.
        assert!(agrees(fixture("actions-canonical.json").trim(), "actions"));
        assert!(accepted >= 6, "the fast path took only {accepted} cases");
    }

    #[test]
    fn what_the_connector_writes_takes_the_fast_path() {
        let payload = fixture("actions-canonical.json");
        let event = Event::from_json(&payload).expect("canonical fixture");
        for json in [event.to_json(), event.to_stream_json()] {
            assert!(agrees(&json, "actions"), "{json}");
        }
        let summary = Event::from_json(fixture("summary-code-shape.json").trim())
            .expect("summary fixture")
            .to_json();
        assert!(agrees(&summary, "summary"), "{summary}");
    }

    #[test]
    fn declines_what_needs_the_serde_path() {
        for data in [
            r#"{"type":"actions","actions":[],"count":2}"#,
            r#"{"type":"actions","session_id":7}"#,
            r#"{"type":"actions","extra":1}"#,
            r#"{"type":"actions","ts":"a","ts":"b"}"#,
            r#"{"type":"actions","ts":"\u00e9"}"#,
            r#"{"type":"actions", "ts":"a"}"#,
            r#"{"type":"other"}"#,
            r#"{"type":"actions"} "#,
            r#"{"type":"actions","actions":[{"properties":[1]}]}"#,
            r#"{"type":"actions","forwarded_at":1e999}"#,
            r#"{"type":"actions","count":-1}"#,
            "{\"type\":\"actions\",\"ts\":\"a\u{1}\"}",
        ] {
            assert!(super::decode(data, None).is_none(), "{data}");
        }
    }

    #[test]
    fn plain_len_stops_at_the_first_special_byte_wherever_it_is() {
        for len in 0..40 {
            for special in [b'"', b'\\', 0u8, 0x1f] {
                let mut s = vec![b'a'; len];
                s.extend_from_slice("é ~\u{7f}😀\u{a0}".as_bytes());
                let at = s.len();
                s.push(special);
                s.extend_from_slice(b"zz\"");
                assert_eq!(super::plain_len(&s), at, "{len} {special}");
            }
            assert_eq!(super::plain_len(&vec![b' '; len]), len);
        }
    }

    /// JSON text for a random value of any kind, now and then with whitespace.
    fn any_value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| serde_json::to_string(&f).unwrap()),
            "-?(0|[1-9][0-9]{0,22})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?",
            text().prop_map(|s| quoted(&s)),
            Just("\"a\\u00e9b\"".to_owned()),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((text(), inner), 0..4).prop_map(|v| {
                    let fields: Vec<String> = v
                        .iter()
                        .map(|(k, v)| format!("{}:{v}", quoted(k)))
                        .collect();
                    format!("{{{}}}", fields.join(","))
                }),
                Just("{ }".to_owned()),
            ]
        })
    }

    /// Strings with what makes them hard: quotes, escapes, controls, non-ASCII.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => "[a-z_]{0,30}",
            1 => ".{0,12}",
            2 => prop::collection::vec(
                prop_oneof![
                    Just('"'),
                    Just('\\'),
                    Just('/'),
                    Just('\n'),
                    Just('\u{1}'),
                    Just('é'),
                    Just('😀'),
                    Just('a')
                ],
                0..10
            )
            .prop_map(|v| v.into_iter().collect()),
        ]
    }

    fn quoted(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }

    const TOP_KEYS: &[&str] = &[
        "type",
        "product_id",
        "session_id",
        "user_id",
        "email",
        "ts",
        "forwarded_at",
        "count",
        "conversation_id",
        "actions",
        "summary",
        "content",
        "replaces",
    ];
    const ACTION_KEYS: &[&str] = &[
        "event_type",
        "type",
        "title",
        "description",
        "canonical_url",
        "raw_url",
        "ts",
        "properties",
        "index",
        "timestamp_start",
        "timestamp_end",
        "session_id",
        "user_id",
        "email",
        "conversation_id",
    ];

    /// A value fit for `key` most of the time, anything now and then.
    fn value_for(key: &'static str) -> BoxedStrategy<String> {
        let fitting: BoxedStrategy<String> = match key {
            "type" => prop_oneof![
                Just("\"actions\"".to_owned()),
                Just("\"summary\"".to_owned()),
                Just("\"click\"".to_owned()),
                Just("null".to_owned()),
            ]
            .boxed(),
            "forwarded_at" | "timestamp_start" | "timestamp_end" => prop_oneof![
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(|f| serde_json::to_string(&f).unwrap()),
                any::<u32>().prop_map(|n| n.to_string()),
                "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?",
                Just("-0".to_owned()),
            ]
            .boxed(),
            "count" | "replaces" | "index" => prop_oneof![
                (0u64..5).prop_map(|n| n.to_string()),
                any::<u64>().prop_map(|n| n.to_string()),
                Just("18446744073709551616".to_owned()),
            ]
            .boxed(),
            "properties" => prop_oneof![
                Just("{}".to_owned()),
                Just("{\"referrer\":\"https://x/login\",\"n\":[1,2.5,{\"a\":null}]}".to_owned()),
                any_value(),
            ]
            .boxed(),
            "actions" => prop::collection::vec(object(ACTION_KEYS), 0..4)
                .prop_map(|v| format!("[{}]", v.join(",")))
                .boxed(),
            _ => text().prop_map(|s| quoted(&s)).boxed(),
        };
        prop_oneof![30 => fitting, 2 => Just("null".to_owned()), 1 => any_value()].boxed()
    }

    /// An object of some of `keys` in any order, sometimes one twice or an
    /// unknown one, sometimes spaced.
    fn object(keys: &'static [&'static str]) -> BoxedStrategy<String> {
        let field = prop_oneof![
            40 => prop::sample::select(keys).prop_flat_map(|k| {
                value_for(k).prop_map(move |v| format!("{}:{v}", quoted(k)))
            }),
            1 => (text(), any_value()).prop_map(|(k, v)| format!("{}:{v}", quoted(&k))),
        ];
        (
            prop::collection::vec(field, 0..10),
            prop::sample::select(&["", "", "", "", "", "", "", " "][..]),
        )
            .prop_map(|(fields, gap)| {
                // Keep the first of each key most of the time, so that not every
                // case is a duplicate-key error.
                let mut seen = std::collections::HashSet::new();
                let fields: Vec<String> = fields
                    .into_iter()
                    .filter(|f| {
                        seen.insert(f.split(':').next().unwrap_or("").to_owned())
                            || f.len() % 7 == 0
                    })
                    .collect();
                format!("{{{gap}{}}}", fields.join(&format!(",{gap}")))
            })
            .boxed()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn the_fast_path_agrees_with_serde(
            data in object(TOP_KEYS),
            name in prop::sample::select(&["actions", "summary", "message"][..]),
        ) {
            agrees(&data, name);
        }

        #[test]
        fn the_fast_path_agrees_on_connector_shaped_payloads(
            kind in prop::sample::select(&["actions", "summary"][..]),
            session in text(),
            title in text(),
            url in text(),
            forwarded_at in any::<f64>().prop_filter("finite", |f| f.is_finite()),
            actions in 0usize..4,
        ) {
            let action = format!(
                "{{\"event_type\":\"click\",\"title\":{},\"description\":\"\",\"canonical_url\":{},\"raw_url\":null,\"ts\":\"2024-01-15T10:30:00Z\",\"properties\":{{}}}}",
                quoted(&title), quoted(&url)
            );
            let list = vec![action; actions].join(",");
            let data = format!(
                "{{\"type\":\"{kind}\",\"product_id\":\"acme\",\"session_id\":{},\"forwarded_at\":{},\"count\":{actions},\"actions\":[{list}],\"summary\":{}}}",
                quoted(&session),
                serde_json::to_string(&forwarded_at).unwrap(),
                quoted(&title),
            );
            let plain = [&session, &title, &url].iter().all(|s| !s.chars().any(|c| c < ' ' && c != '\n'));
            let accepted = agrees(&data, "message");
            // Without \u escapes (controls other than \n), nothing here needs serde.
            if plain {
                prop_assert!(accepted, "{}", data);
            }
        }
    }
}
