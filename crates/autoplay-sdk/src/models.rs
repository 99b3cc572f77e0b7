//! Typed payloads: what the connector streams.
//!
//! Decoding accepts every shape seen in the field (see the crate's
//! `tests/fixtures/wire`): the README shape (`event_type`, `ts`, `properties`,
//! summary `content`), the 0.1.0 code shape (`description`, `summary`,
//! `forwarded_at`) and the later shape (`type`, `index`, `timestamp_start`,
//! `raw_url`, per-action ids, `conversation_id`). Missing optional fields default, unknown fields are
//! ignored, and a `count` that disagrees with the action list is reconciled to the
//! list with a warning.
//!
//! Serialising gives the canonical shape, with a `type` field and `null` for
//! absent values.
//!
//! ```
//! use autoplay_sdk::Event;
//!
//! let event = Event::from_json(
//!     r#"{"type":"actions","session_id":"ps_1","actions":[
//!         {"event_type":"click","title":"Sign up","canonical_url":"/signup"}]}"#,
//! )?;
//! let Event::Actions(payload) = &event else { unreachable!() };
//! assert_eq!(payload.count(), 1);
//! assert_eq!(payload.to_text(), "Session ps_1 \u{2014} 1 actions\n1. Sign up \u{2014} /signup");
//! # Ok::<(), autoplay_sdk::DecodeError>(())
//! ```

use std::borrow::Cow;
use std::fmt::{self, Write as _};

pub use compact_str::CompactString;
use compact_str::ToCompactString;
use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tracing::warn;

mod fast;

/// The `type` of an actions payload.
pub const ACTIONS_TYPE: &str = crate::wire::ACTIONS_EVENT;
/// The `type` of a summary payload.
pub const SUMMARY_TYPE: &str = crate::wire::SUMMARY_EVENT;

/// A payload that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("invalid payload JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A `type` this SDK does not know.
    #[error("unknown payload type {0:?}")]
    UnknownType(String),
    /// Neither a `type` field nor an SSE event name says what the payload is.
    #[error("the payload has no \"type\" and the event name does not say its kind")]
    MissingType,
}

/// An action's free-form `properties` object, kept as the JSON text it came in.
///
/// Decoding does not build a map nobody may read; [`Properties::to_map`] parses it
/// on demand. An empty object costs no allocation.
///
/// Being raw JSON, it decodes through serde_json's own deserializers (`from_str`,
/// `from_slice`, `from_reader`, `from_value`). Serde's buffered containers
/// (`#[serde(untagged)]` enums, `#[serde(flatten)]`) cannot carry raw JSON: inside
/// those, decode the payload as a `serde_json::Value` first, then `from_value`.
#[derive(Clone, Default)]
pub struct Properties(Option<Box<RawValue>>);

impl PartialEq for Properties {
    /// Equal when the JSON is, whatever the spacing.
    fn eq(&self, other: &Self) -> bool {
        self.as_json() == other.as_json() || self.to_map() == other.to_map()
    }
}

impl Properties {
    /// Properties from JSON text; it must be an object.
    pub fn from_json(json: &str) -> Result<Self, DecodeError> {
        let raw = RawValue::from_string(json.trim().to_owned())?;
        Self::from_raw(raw)
            .map_err(|_| DecodeError::Json(de::Error::custom("properties must be a JSON object")))
    }

    /// Properties from a map.
    pub fn from_map(map: &serde_json::Map<String, serde_json::Value>) -> Self {
        if map.is_empty() {
            return Self::default();
        }
        let raw = serde_json::to_string(map)
            .ok()
            .and_then(|json| RawValue::from_string(json).ok());
        Self(raw)
    }

    fn from_raw(raw: Box<RawValue>) -> Result<Self, Box<RawValue>> {
        let json = raw.get();
        if !json.starts_with('{') {
            return Err(raw);
        }
        let is_empty = json[1..json.len() - 1].trim().is_empty();
        Ok(Self((!is_empty).then_some(raw)))
    }

    /// The JSON text of the object (`{}` when empty).
    pub fn as_json(&self) -> &str {
        self.0.as_deref().map_or("{}", RawValue::get)
    }

    /// Whether the object has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The properties as a map.
    pub fn to_map(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(self.as_json()).unwrap_or_default()
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_json())
    }
}

impl Serialize for Properties {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(raw) => raw.serialize(serializer),
            None => serializer.serialize_map(Some(0))?.end(),
        }
    }
}

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // null, and anything that is not an object, is taken as no properties: one
        // odd field must not cost the whole payload.
        let raw = Option::<Box<RawValue>>::deserialize(deserializer)?;
        Ok(raw
            .and_then(|raw| Self::from_raw(raw).ok())
            .unwrap_or_default())
    }
}

/// One UI action: a page view, a click, an input, a submit, or a custom event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SlimAction {
    /// `pageview`, `click`, `input`, `submit`, or a custom event name (`type` in
    /// later shapes).
    pub event_type: CompactString,
    /// A short name of what was acted on.
    pub title: CompactString,
    /// A sentence saying what the user did.
    pub description: CompactString,
    /// The page, without query or fragment and with ids collapsed to `:id`.
    pub canonical_url: CompactString,
    /// The page as visited.
    pub raw_url: Option<CompactString>,
    /// When the action happened (ISO-8601).
    pub ts: Option<CompactString>,
    /// Free-form properties.
    pub properties: Properties,
    /// Position in the session (later shapes).
    pub index: Option<u64>,
    /// Start time, unix seconds (later shapes).
    pub timestamp_start: Option<f64>,
    /// End time, unix seconds (later shapes).
    pub timestamp_end: Option<f64>,
    /// Per-action session id (later shapes).
    pub session_id: Option<CompactString>,
    /// Per-action user id (later shapes).
    pub user_id: Option<CompactString>,
    /// Per-action email (later shapes).
    pub email: Option<CompactString>,
    /// The chat conversation the action belongs to (later shapes; the published
    /// 0.13.0 reads it). Numbers are taken as their decimal text, as for ids.
    pub conversation_id: Option<CompactString>,
}

/// The line format of `to_text`: the 0.1.0 page's, or the published 0.13.0's.
///
/// ```
/// use autoplay_sdk::{Event, TextStyle};
///
/// let event = Event::from_json(
///     r#"{"type":"actions","session_id":"ps_1","actions":[
///         {"type":"click","index":3,"title":"Sign up","canonical_url":"/signup"}]}"#,
/// )?;
/// let Event::Actions(payload) = &event else { unreachable!() };
/// assert_eq!(
///     payload.to_text_styled(TextStyle::Numbered),
///     "Session ps_1 \u{2014} 1 actions\n1. Sign up \u{2014} /signup"
/// );
/// // 0.13.0 prints the description as it is, empty here.
/// assert_eq!(
///     payload.to_text_styled(TextStyle::Indexed),
///     "Session ps_1 \u{2014} 1 actions\n[3] click:  \u{2014} /signup"
/// );
/// # Ok::<(), autoplay_sdk::DecodeError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextStyle {
    /// `1. <description> — <canonical_url>`: numbered from 1, the title when the
    /// description is empty (the 0.1.0 page).
    #[default]
    Numbered,
    /// `[<index>] <type>: <description> — <canonical_url>`: the action's own index
    /// (0 when absent) and type, the description as it is (0.13.0).
    Indexed,
}

impl SlimAction {
    /// `<description> — <canonical_url>`, with the title when the description is
    /// empty.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        self.write_text(&mut text);
        text
    }

    /// [`to_text`](Self::to_text) in either style; [`TextStyle::Indexed`] gives
    /// 0.13.0's `[<index>] <type>: <description> — <canonical_url>`.
    pub fn to_text_styled(&self, style: TextStyle) -> String {
        match style {
            TextStyle::Numbered => self.to_text(),
            TextStyle::Indexed => {
                let mut text = String::new();
                self.write_indexed(&mut text);
                text
            }
        }
    }

    fn write_indexed(&self, out: &mut String) {
        let _ = write!(
            out,
            "[{}] {}: {} \u{2014} {}",
            self.index.unwrap_or(0),
            self.event_type,
            self.description,
            self.canonical_url
        );
    }

    fn write_text(&self, out: &mut String) {
        let what = if self.description.is_empty() {
            &self.title
        } else {
            &self.description
        };
        let _ = write!(out, "{what} \u{2014} {}", self.canonical_url);
    }
}

/// The keys an action may carry, in any of the shapes.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum ActionField {
    EventType,
    #[serde(rename = "type")]
    Kind,
    Title,
    Description,
    CanonicalUrl,
    RawUrl,
    Ts,
    Properties,
    Index,
    TimestampStart,
    TimestampEnd,
    SessionId,
    UserId,
    Email,
    ConversationId,
    #[serde(other)]
    Unknown,
}

/// Reads an action's fields straight into a [`SlimAction`] where it will stay (a
/// slot of the payload's action list): a payload has several actions and this is
/// the innermost loop of decoding, so no intermediate struct is built and no
/// action (some 300 bytes) is moved on its way into the list. Missing fields and
/// `null` take the default, unknown keys are skipped, a key given twice is an error
/// (as serde's derived decoders do).
struct FillAction<'a>(&'a mut SlimAction);

impl<'de> de::DeserializeSeed<'de> for FillAction<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> de::Visitor<'de> for FillAction<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an action object")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        fn set<'de, A: de::MapAccess<'de>, T: Deserialize<'de>>(
            map: &mut A,
            seen: &mut u16,
            bit: u16,
            name: &'static str,
        ) -> Result<T, A::Error> {
            if *seen & bit != 0 {
                return Err(de::Error::duplicate_field(name));
            }
            *seen |= bit;
            map.next_value()
        }

        let action = self.0;
        // `type` names the event type only where `event_type` is absent or null.
        let (mut event_type, mut kind): (Option<CompactString>, Option<CompactString>) =
            (None, None);
        let mut seen = 0u16;
        while let Some(key) = map.next_key::<ActionField>()? {
            let m = &mut map;
            let s = &mut seen;
            match key {
                ActionField::EventType => event_type = set(m, s, 1, "event_type")?,
                // The connector's frames carry both names; once `event_type` is
                // in, `type` cannot change the outcome, so it is skipped unbuilt.
                ActionField::Kind if event_type.is_some() => {
                    set::<_, de::IgnoredAny>(m, s, 1 << 1, "type")?;
                }
                ActionField::Kind => kind = set(m, s, 1 << 1, "type")?,
                ActionField::Title => {
                    action.title = set::<_, Option<_>>(m, s, 1 << 2, "title")?.unwrap_or_default();
                }
                ActionField::Description => {
                    action.description =
                        set::<_, Option<_>>(m, s, 1 << 3, "description")?.unwrap_or_default();
                }
                ActionField::CanonicalUrl => {
                    action.canonical_url =
                        set::<_, Option<_>>(m, s, 1 << 4, "canonical_url")?.unwrap_or_default();
                }
                ActionField::RawUrl => action.raw_url = set(m, s, 1 << 5, "raw_url")?,
                ActionField::Ts => action.ts = set(m, s, 1 << 6, "ts")?,
                ActionField::Properties => {
                    action.properties = set(m, s, 1 << 7, "properties")?;
                }
                ActionField::Index => action.index = set(m, s, 1 << 8, "index")?,
                ActionField::TimestampStart => {
                    action.timestamp_start = set(m, s, 1 << 9, "timestamp_start")?;
                }
                ActionField::TimestampEnd => {
                    action.timestamp_end = set(m, s, 1 << 10, "timestamp_end")?;
                }
                ActionField::SessionId => {
                    action.session_id = set::<_, LenientId>(m, s, 1 << 11, "session_id")?.0;
                }
                ActionField::UserId => {
                    action.user_id = set::<_, LenientId>(m, s, 1 << 12, "user_id")?.0;
                }
                ActionField::Email => action.email = set(m, s, 1 << 13, "email")?,
                ActionField::ConversationId => {
                    action.conversation_id =
                        set::<_, LenientId>(m, s, 1 << 14, "conversation_id")?.0;
                }
                ActionField::Unknown => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        action.event_type = event_type.or(kind).unwrap_or_default();
        Ok(())
    }
}

impl<'de> Deserialize<'de> for SlimAction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut action = SlimAction::default();
        de::DeserializeSeed::deserialize(FillAction(&mut action), deserializer)?;
        Ok(action)
    }
}

/// A payload's `actions` array, each action decoded in its slot of the list.
struct ActionList(Vec<SlimAction>);

impl<'de> Deserialize<'de> for ActionList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;

        impl<'de> de::Visitor<'de> for ListVisitor {
            type Value = ActionList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of actions")
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<ActionList, A::Error> {
                let mut actions = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                loop {
                    actions.push(SlimAction::default());
                    let slot = actions.last_mut().expect("just pushed");
                    if seq.next_element_seed(FillAction(slot))?.is_none() {
                        actions.pop();
                        return Ok(ActionList(actions));
                    }
                }
            }
        }

        deserializer.deserialize_seq(ListVisitor)
    }
}

fn action_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<SlimAction>>, D::Error> {
    Ok(Option::<ActionList>::deserialize(deserializer)?.map(|list| list.0))
}

impl Serialize for SlimAction {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.serialize_as(serializer, false)
    }
}

impl SlimAction {
    /// The action as the connector streams it: its canonical JSON with `type`
    /// (= `event_type`) as well (see [`ActionsPayload::to_stream_json`]).
    pub fn to_stream_json(&self) -> String {
        let mut out = Vec::with_capacity(320);
        self.serialize_as(&mut serde_json::Serializer::new(&mut out), true)
            .expect("an action always serialises");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    /// The canonical fields, then the later shapes' fields that are present; with
    /// `with_type`, `type` (= `event_type`) after `event_type` too.
    fn serialize_as<S: Serializer>(
        &self,
        serializer: S,
        with_type: bool,
    ) -> Result<S::Ok, S::Error> {
        let extras = [
            with_type,
            self.index.is_some(),
            self.timestamp_start.is_some(),
            self.timestamp_end.is_some(),
            self.session_id.is_some(),
            self.user_id.is_some(),
            self.email.is_some(),
            self.conversation_id.is_some(),
        ];
        let len = 7 + extras.iter().filter(|present| **present).count();
        let mut s = serializer.serialize_struct("SlimAction", len)?;
        s.serialize_field("event_type", &self.event_type)?;
        if with_type {
            s.serialize_field("type", &self.event_type)?;
        }
        s.serialize_field("title", &self.title)?;
        s.serialize_field("description", &self.description)?;
        s.serialize_field("canonical_url", &self.canonical_url)?;
        s.serialize_field("raw_url", &self.raw_url)?;
        s.serialize_field("ts", &self.ts)?;
        s.serialize_field("properties", &self.properties)?;
        // Fields of later shapes appear only when present, so the canonical shape
        // stays the documented one.
        if let Some(index) = self.index {
            s.serialize_field("index", &index)?;
        }
        if let Some(start) = self.timestamp_start {
            s.serialize_field("timestamp_start", &start)?;
        }
        if let Some(end) = self.timestamp_end {
            s.serialize_field("timestamp_end", &end)?;
        }
        if let Some(session_id) = &self.session_id {
            s.serialize_field("session_id", session_id)?;
        }
        if let Some(user_id) = &self.user_id {
            s.serialize_field("user_id", user_id)?;
        }
        if let Some(email) = &self.email {
            s.serialize_field("email", email)?;
        }
        if let Some(conversation_id) = &self.conversation_id {
            s.serialize_field("conversation_id", conversation_id)?;
        }
        s.end()
    }
}

/// An action list serialised with or without `type` on each action.
struct ActionsAs<'a> {
    actions: &'a [SlimAction],
    with_type: bool,
}

impl Serialize for ActionsAs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct One<'a>(&'a SlimAction, bool);
        impl Serialize for One<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.0.serialize_as(serializer, self.1)
            }
        }
        serializer.collect_seq(self.actions.iter().map(|a| One(a, self.with_type)))
    }
}

/// A batch of UI actions from one session.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ActionsPayload {
    /// The product the session belongs to.
    pub product_id: Option<CompactString>,
    /// The browser session (PostHog `$session_id`).
    pub session_id: Option<CompactString>,
    /// The user (PostHog `distinct_id`).
    pub user_id: Option<CompactString>,
    /// The user's email when known.
    pub email: Option<CompactString>,
    /// Batch time (ISO-8601).
    pub ts: Option<CompactString>,
    /// When the connector forwarded the batch, unix seconds.
    pub forwarded_at: Option<f64>,
    /// The actions, in order.
    pub actions: Vec<SlimAction>,
    /// The chat conversation the session is linked to (0.13.0's payload-level
    /// `conversation_id`); `None` before a link. Left out of the JSON when `None`.
    pub conversation_id: Option<CompactString>,
}

impl ActionsPayload {
    /// The number of actions (the wire's `count`, reconciled to the list).
    pub fn count(&self) -> usize {
        self.actions.len()
    }

    /// `Session <session_id or unknown> — <N> actions`, then one numbered line per
    /// action: ready to embed.
    pub fn to_text(&self) -> String {
        let mut text = String::with_capacity(48 + self.actions.len() * 96);
        let session = self.session_id.as_deref().unwrap_or("unknown");
        let _ = write!(
            text,
            "Session {session} \u{2014} {} actions",
            self.actions.len()
        );
        for (i, action) in self.actions.iter().enumerate() {
            let _ = write!(text, "\n{}. ", i + 1);
            action.write_text(&mut text);
        }
        text
    }

    /// Several batches of one session as one (0.13.0's `ActionsPayload.merge`): the
    /// actions in order, re-indexed from 0; product and session from the first; user,
    /// email, `ts` and `conversation_id` from the first batch that has them (not empty);
    /// `forwarded_at` the latest.
    /// `None` for no batches.
    pub fn merge(payloads: &[ActionsPayload]) -> Option<ActionsPayload> {
        let first = payloads.first()?;
        let first_some = |get: fn(&ActionsPayload) -> &Option<CompactString>| {
            payloads
                .iter()
                .find_map(|p| get(p).clone().filter(|v| !v.is_empty()))
        };
        let actions = payloads
            .iter()
            .flat_map(|p| p.actions.iter())
            .enumerate()
            .map(|(i, a)| SlimAction {
                index: Some(i as u64),
                ..a.clone()
            })
            .collect();
        Some(ActionsPayload {
            product_id: first.product_id.clone(),
            session_id: first.session_id.clone(),
            user_id: first_some(|p| &p.user_id),
            email: first_some(|p| &p.email),
            ts: first_some(|p| &p.ts),
            forwarded_at: payloads
                .iter()
                .filter_map(|p| p.forwarded_at)
                .reduce(f64::max),
            actions,
            conversation_id: first_some(|p| &p.conversation_id),
        })
    }

    /// [`to_text`](Self::to_text) in either style: with [`TextStyle::Indexed`] the
    /// action lines are 0.13.0's `[<index>] <type>: <description> — <canonical_url>`
    /// under the same `Session ...` line.
    pub fn to_text_styled(&self, style: TextStyle) -> String {
        if style == TextStyle::Numbered {
            return self.to_text();
        }
        let mut text = String::with_capacity(48 + self.actions.len() * 96);
        let session = self.session_id.as_deref().unwrap_or("unknown");
        let _ = write!(
            text,
            "Session {session} \u{2014} {} actions",
            self.actions.len()
        );
        for action in &self.actions {
            text.push('\n');
            action.write_indexed(&mut text);
        }
        text
    }

    /// The canonical JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a payload always serialises")
    }

    /// The JSON the connector streams, which both generations of clients read:
    /// the canonical JSON with `type` (= `event_type`) on every action as well,
    /// the name the published 0.13.0 client reads. Decoding it gives the same
    /// payload as decoding [`to_json`](Self::to_json).
    pub fn to_stream_json(&self) -> String {
        let mut out = Vec::with_capacity(256 + self.actions.len() * 320);
        self.serialize_as(&mut serde_json::Serializer::new(&mut out), true)
            .expect("a payload always serialises");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    fn serialize_as<S: Serializer>(
        &self,
        serializer: S,
        with_type: bool,
    ) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("ActionsPayload", 10)?;
        s.serialize_field("type", ACTIONS_TYPE)?;
        s.serialize_field("product_id", &self.product_id)?;
        s.serialize_field("session_id", &self.session_id)?;
        s.serialize_field("user_id", &self.user_id)?;
        s.serialize_field("email", &self.email)?;
        s.serialize_field("ts", &self.ts)?;
        s.serialize_field("forwarded_at", &self.forwarded_at)?;
        s.serialize_field("count", &self.actions.len())?;
        s.serialize_field(
            "actions",
            &ActionsAs {
                actions: &self.actions,
                with_type,
            },
        )?;
        // Last and only when set, as on an action: the canonical shape is unchanged.
        match &self.conversation_id {
            Some(id) => s.serialize_field("conversation_id", id)?,
            None => s.skip_field("conversation_id")?,
        }
        s.end()
    }
}

impl Serialize for ActionsPayload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.serialize_as(serializer, false)
    }
}

impl<'de> Deserialize<'de> for ActionsPayload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match WirePayload::deserialize(deserializer)?.into_event(Some(ACTIONS_TYPE)) {
            Ok(Event::Actions(payload)) => Ok(payload),
            Ok(Event::Summary(_)) => Err(de::Error::custom(
                "expected an actions payload, found a summary",
            )),
            Err(e) => Err(de::Error::custom(e)),
        }
    }
}

/// A prose summary of a session's actions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SummaryPayload {
    /// The product the session belongs to.
    pub product_id: Option<CompactString>,
    /// The browser session.
    pub session_id: Option<CompactString>,
    /// The summary (`content` in the README shape).
    pub summary: CompactString,
    /// How many actions this summary stands for.
    pub replaces: u64,
    /// When it was written (ISO-8601).
    pub ts: Option<CompactString>,
    /// When the connector forwarded it, unix seconds.
    pub forwarded_at: Option<f64>,
}

impl SummaryPayload {
    /// The summary text itself.
    pub fn to_text(&self) -> String {
        self.summary.to_string()
    }

    /// The canonical JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a payload always serialises")
    }
}

impl Serialize for SummaryPayload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("SummaryPayload", 7)?;
        s.serialize_field("type", SUMMARY_TYPE)?;
        s.serialize_field("product_id", &self.product_id)?;
        s.serialize_field("session_id", &self.session_id)?;
        s.serialize_field("summary", &self.summary)?;
        s.serialize_field("replaces", &self.replaces)?;
        s.serialize_field("ts", &self.ts)?;
        s.serialize_field("forwarded_at", &self.forwarded_at)?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for SummaryPayload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match WirePayload::deserialize(deserializer)?.into_event(Some(SUMMARY_TYPE)) {
            Ok(Event::Summary(payload)) => Ok(payload),
            Ok(Event::Actions(_)) => Err(de::Error::custom(
                "expected a summary payload, found actions",
            )),
            Err(e) => Err(de::Error::custom(e)),
        }
    }
}

/// Any payload the stream carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A batch of UI actions.
    Actions(ActionsPayload),
    /// A session summary.
    Summary(SummaryPayload),
}

impl Event {
    /// Decodes a payload whose JSON `type` says what it is.
    pub fn from_json(json: &str) -> Result<Self, DecodeError> {
        Self::decode(json, "")
    }

    /// Decodes an SSE event's data. The JSON `type` decides the kind; the SSE event
    /// name is only a fallback for payloads without one (`message` says nothing).
    pub fn decode(data: &str, event_name: &str) -> Result<Self, DecodeError> {
        let fallback = match event_name {
            ACTIONS_TYPE => Some(ACTIONS_TYPE),
            SUMMARY_TYPE => Some(SUMMARY_TYPE),
            _ => None,
        };
        // The connector's own shape first; anything else (and every error) takes
        // the serde path from the start.
        if let Some(event) = fast::decode(data, fallback) {
            return Ok(event);
        }
        Self::decode_with_serde(data, fallback)
    }

    /// The general decoder, which [`Event::decode`]'s fast path must agree with.
    fn decode_with_serde(data: &str, fallback: Option<&'static str>) -> Result<Self, DecodeError> {
        let wire: WirePayload<'_> = serde_json::from_str(data)?;
        wire.into_event(fallback)
    }

    /// `"actions"` or `"summary"`: the wire `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Actions(_) => ACTIONS_TYPE,
            Event::Summary(_) => SUMMARY_TYPE,
        }
    }

    /// The session the payload belongs to.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            Event::Actions(p) => p.session_id.as_deref(),
            Event::Summary(p) => p.session_id.as_deref(),
        }
    }

    /// The payload's `to_text()`.
    pub fn to_text(&self) -> String {
        match self {
            Event::Actions(p) => p.to_text(),
            Event::Summary(p) => p.to_text(),
        }
    }

    /// The canonical JSON, with `type`.
    pub fn to_json(&self) -> String {
        match self {
            Event::Actions(p) => p.to_json(),
            Event::Summary(p) => p.to_json(),
        }
    }

    /// What the connector streams (see [`ActionsPayload::to_stream_json`]); a
    /// summary's is its canonical JSON.
    pub fn to_stream_json(&self) -> String {
        match self {
            Event::Actions(p) => p.to_stream_json(),
            Event::Summary(p) => p.to_json(),
        }
    }
}

impl From<ActionsPayload> for Event {
    fn from(payload: ActionsPayload) -> Self {
        Event::Actions(payload)
    }
}

impl From<SummaryPayload> for Event {
    fn from(payload: SummaryPayload) -> Self {
        Event::Summary(payload)
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Event::Actions(p) => p.serialize(serializer),
            Event::Summary(p) => p.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        WirePayload::deserialize(deserializer)?
            .into_event(None)
            .map_err(de::Error::custom)
    }
}

/// Every field of every payload shape, read in one pass; the `type` then decides
/// which payload is built. (An internally tagged enum would buffer the whole
/// object first.)
#[derive(Deserialize)]
struct WirePayload<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient_id")]
    product_id: Option<CompactString>,
    #[serde(default, deserialize_with = "lenient_id")]
    session_id: Option<CompactString>,
    #[serde(default, deserialize_with = "lenient_id")]
    user_id: Option<CompactString>,
    #[serde(default)]
    email: Option<CompactString>,
    #[serde(default)]
    ts: Option<CompactString>,
    #[serde(default)]
    forwarded_at: Option<f64>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default, deserialize_with = "lenient_id")]
    conversation_id: Option<CompactString>,
    #[serde(default, deserialize_with = "action_list")]
    actions: Option<Vec<SlimAction>>,
    #[serde(default)]
    summary: Option<CompactString>,
    #[serde(default)]
    content: Option<CompactString>,
    #[serde(default)]
    replaces: Option<u64>,
}

impl WirePayload<'_> {
    fn into_event(self, fallback: Option<&'static str>) -> Result<Event, DecodeError> {
        let kind = match (&self.kind, fallback) {
            (Some(kind), _) => kind.as_ref(),
            (None, Some(fallback)) => fallback,
            (None, None) => return Err(DecodeError::MissingType),
        };
        match kind {
            ACTIONS_TYPE => {
                let actions = self.actions.unwrap_or_default();
                if let Some(count) = self.count
                    && count != actions.len() as u64
                {
                    warn!(
                        session_id = self.session_id.as_deref(),
                        count,
                        actions = actions.len(),
                        "payload count disagrees with its action list; trusting the list"
                    );
                }
                Ok(Event::Actions(ActionsPayload {
                    product_id: self.product_id,
                    session_id: self.session_id,
                    user_id: self.user_id,
                    email: self.email,
                    ts: self.ts,
                    forwarded_at: self.forwarded_at,
                    actions,
                    conversation_id: self.conversation_id,
                }))
            }
            SUMMARY_TYPE => Ok(Event::Summary(SummaryPayload {
                product_id: self.product_id,
                session_id: self.session_id,
                summary: self.summary.or(self.content).unwrap_or_default(),
                replaces: self.replaces.unwrap_or(0),
                ts: self.ts,
                forwarded_at: self.forwarded_at,
            })),
            other => Err(DecodeError::UnknownType(other.to_owned())),
        }
    }
}

/// An id read with [`lenient_id`], for decoders that take values by type.
struct LenientId(Option<CompactString>);

impl<'de> Deserialize<'de> for LenientId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        lenient_id(deserializer).map(LenientId)
    }
}

/// Ids are strings, but some sources send numbers (a numeric `distinct_id`):
/// take those as their decimal text rather than reject the payload.
fn lenient_id<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<CompactString>, D::Error> {
    struct IdVisitor;

    impl de::Visitor<'_> for IdVisitor {
        type Value = Option<CompactString>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string, a number or null")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(CompactString::from(v)))
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(CompactString::from(v)))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_compact_string()))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_compact_string()))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v.to_compact_string()))
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    deserializer.deserialize_any(IdVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_joins_one_sessions_batches_as_0_13_did() {
        let batch = |user: Option<&str>, at: Option<f64>, titles: &[&str]| ActionsPayload {
            product_id: Some("p".into()),
            session_id: Some("s".into()),
            user_id: user.map(Into::into),
            forwarded_at: at,
            actions: titles
                .iter()
                .map(|t| SlimAction {
                    title: (*t).into(),
                    index: Some(9),
                    ..SlimAction::default()
                })
                .collect(),
            ..ActionsPayload::default()
        };
        assert_eq!(ActionsPayload::merge(&[]), None);
        let merged = ActionsPayload::merge(&[
            batch(Some(""), Some(2.0), &["a", "b"]),
            batch(Some("u"), None, &["c"]),
            batch(Some("v"), Some(1.0), &[]),
        ])
        .unwrap();
        let titles: Vec<_> = merged.actions.iter().map(|a| a.title.as_str()).collect();
        assert_eq!(titles, ["a", "b", "c"]);
        let indexes: Vec<_> = merged.actions.iter().map(|a| a.index).collect();
        assert_eq!(indexes, [Some(0), Some(1), Some(2)]);
        assert_eq!(
            merged.user_id.as_deref(),
            Some("u"),
            "the first non-empty one"
        );
        assert_eq!(merged.forwarded_at, Some(2.0));
        assert_eq!(merged.session_id.as_deref(), Some("s"));
    }

    #[test]
    fn numeric_ids_become_text() {
        let event =
            Event::from_json(r#"{"type":"actions","session_id":42,"user_id":null,"actions":[]}"#)
                .unwrap();
        assert_eq!(event.session_id(), Some("42"));
    }

    #[test]
    fn properties_that_are_not_objects_are_dropped() {
        let action: SlimAction = serde_json::from_str(r#"{"properties":[1,2]}"#).unwrap();
        assert!(action.properties.is_empty());
        let action: SlimAction = serde_json::from_str(r#"{"properties":null}"#).unwrap();
        assert_eq!(action.properties.as_json(), "{}");
        let action: SlimAction = serde_json::from_str(r#"{"properties":{ "a" : 1 }}"#).unwrap();
        assert!(!action.properties.is_empty());
        assert_eq!(action.properties.to_map()["a"], 1);
    }

    #[test]
    fn action_fields_from_every_shape() {
        let action: SlimAction = serde_json::from_str(
            r#"{"type":"click","event_type":null,"title":null,"extra":{"deep":[1,{"x":null}]},
                "index":3,"timestamp_start":1.5,"session_id":7,"user_id":"u","email":"e@x"}"#,
        )
        .unwrap();
        assert_eq!(
            action.event_type, "click",
            "`type` stands in for a null event_type"
        );
        assert_eq!(action.title, "");
        assert_eq!(action.index, Some(3));
        assert_eq!(action.timestamp_start, Some(1.5));
        assert_eq!(action.timestamp_end, None);
        assert_eq!(action.session_id.as_deref(), Some("7"));
        assert_eq!(action.user_id.as_deref(), Some("u"));
        assert_eq!(action.email.as_deref(), Some("e@x"));

        for json in [
            r#"{"type":"custom","event_type":"click"}"#,
            r#"{"event_type":"click","type":"custom"}"#,
        ] {
            let action: SlimAction = serde_json::from_str(json).unwrap();
            assert_eq!(action.event_type, "click", "event_type wins in {json}");
        }
        assert_eq!(
            serde_json::from_str::<SlimAction>("{}").unwrap(),
            SlimAction::default()
        );
    }

    #[test]
    fn action_lists_of_any_length_keep_their_order() {
        let titles: Vec<String> = (0..10).map(|i| format!(r#"{{"title":"t{i}"}}"#)).collect();
        let json = format!(r#"{{"type":"actions","actions":[{}]}}"#, titles.join(","));
        let Event::Actions(payload) = Event::from_json(&json).unwrap() else {
            panic!("an actions payload")
        };
        let got: Vec<&str> = payload.actions.iter().map(|a| a.title.as_str()).collect();
        assert_eq!(got, (0..10).map(|i| format!("t{i}")).collect::<Vec<_>>());
        for empty in [r#""actions":[]"#, r#""actions":null"#, r#""count":0"#] {
            let json = format!(r#"{{"type":"actions",{empty}}}"#);
            assert_eq!(
                Event::from_json(&json).unwrap().to_text(),
                "Session unknown \u{2014} 0 actions"
            );
        }
        assert!(Event::from_json(r#"{"type":"actions","actions":{}}"#).is_err());
        assert!(Event::from_json(r#"{"type":"actions","actions":[{"title":"a"},3]}"#).is_err());
    }

    #[test]
    fn malformed_actions_are_errors() {
        let twice = serde_json::from_str::<SlimAction>(r#"{"title":"a","title":"b"}"#);
        assert!(
            twice
                .unwrap_err()
                .to_string()
                .contains("duplicate field `title`")
        );
        assert!(serde_json::from_str::<SlimAction>(r#"{"title":5}"#).is_err());
        assert!(serde_json::from_str::<SlimAction>(r#""click""#).is_err());
        assert!(Event::from_json(r#"{"type":"actions","actions":[{"index":"x"}]}"#).is_err());
    }

    #[test]
    fn type_field_wins_over_event_name() {
        let event = Event::decode(r#"{"type":"summary","summary":"s"}"#, "actions").unwrap();
        assert_eq!(event.kind(), "summary");
        let event = Event::decode(r#"{"summary":"s"}"#, "summary").unwrap();
        assert_eq!(event.kind(), "summary");
        assert!(matches!(
            Event::decode(r#"{"summary":"s"}"#, "message"),
            Err(DecodeError::MissingType)
        ));
    }
}
