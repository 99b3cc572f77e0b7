//! PostHog events → [`SlimAction`]s, grouped into one [`ActionsPayload`] per session.
//!
//! The rules are documented in the crate docs ("Extraction"); this module is the
//! single place that implements them. It is pure: no clock other than the
//! `received_at` fallback passed in, no I/O, no shared state. What the connector
//! learns across requests (a user's email) goes in through [`EmailLookup`] and comes
//! out in [`Extraction::learned_emails`].

use std::borrow::Cow;
use std::collections::HashMap;

use autoplay_sdk::models::{ActionsPayload, CompactString, Properties, SlimAction};
use serde_json::{Map, Value};

/// PostHog events that carry no user intent. `$identify`, `$set` and friends are
/// still read for the email they teach.
pub const DROPPED_EVENTS: &[&str] = &[
    "$pageleave",
    "$identify",
    "$set",
    "$groupidentify",
    "$feature_flag_called",
    "$web_vitals",
    "$create_alias",
    "$merge_dangerously",
    "$snapshot",
    "$performance_event",
    "$opt_in",
];

/// A webhook body that is JSON but not of a shape PostHog sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

/// Emails the connector already knows, by PostHog `distinct_id`.
pub trait EmailLookup {
    /// The email of `user_id`, if known.
    fn email_of(&self, user_id: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> EmailLookup for F {
    fn email_of(&self, user_id: &str) -> Option<String> {
        self(user_id)
    }
}

/// No emails known: for one-off extraction.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEmails;

impl EmailLookup for NoEmails {
    fn email_of(&self, _user_id: &str) -> Option<String> {
        None
    }
}

/// What one webhook body gave.
#[derive(Debug, Clone, Default)]
pub struct Extraction {
    /// PostHog events in the body, dropped ones included.
    pub events: usize,
    /// One payload per session, ordered by each session's first action. `product_id`,
    /// `ts` and `forwarded_at` are left for the caller to stamp.
    pub payloads: Vec<ActionsPayload>,
    /// `(user_id, email)` pairs the body taught, to remember for later requests.
    pub learned_emails: Vec<(String, String)>,
    /// The PostHog `uuid` of each event that has one, in body order: what
    /// makes a retried body recognisable (the Redis store's dedupe).
    pub event_uuids: Vec<String>,
}

impl Extraction {
    /// Actions over all payloads.
    pub fn action_count(&self) -> usize {
        self.payloads.iter().map(|p| p.actions.len()).sum()
    }
}

/// Extracts the actions of a webhook body: one event (raw capture form), the CDP
/// envelope `{"event": {...}, "person": {...}}`, an array of either, or
/// `{"batch": [...]}`.
///
/// `received_at` (unix seconds) orders events that carry no timestamp.
pub fn extract(
    body: &Value,
    known: &dyn EmailLookup,
    received_at: f64,
) -> Result<Extraction, ShapeError> {
    let mut raw = Vec::new();
    collect(body, &mut raw, 0)?;

    let mut learned: Vec<(String, String)> = Vec::new();
    for event in &raw {
        if let (Some(user), Some(email)) = (&event.user_id, event_email(event))
            && !learned.iter().any(|(u, e)| u == user && *e == email)
        {
            learned.push((user.clone(), email));
        }
    }

    let mut extracted: Vec<(f64, usize, Extracted)> = raw
        .iter()
        .enumerate()
        .filter_map(|(i, event)| {
            let action = to_action(event)?;
            let at = event
                .timestamp
                .as_deref()
                .and_then(parse_rfc3339)
                .unwrap_or(received_at);
            Some((at, i, action))
        })
        .collect();
    // Stable by arrival among equal timestamps, so a batch without timestamps keeps
    // its order.
    extracted.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));

    let mut payloads: Vec<ActionsPayload> = Vec::new();
    let mut by_session: HashMap<Option<CompactString>, usize> = HashMap::new();
    for (_, _, item) in extracted {
        let index = *by_session
            .entry(item.session_id.clone())
            .or_insert_with(|| {
                payloads.push(ActionsPayload {
                    session_id: item.session_id.clone(),
                    ..ActionsPayload::default()
                });
                payloads.len() - 1
            });
        let payload = &mut payloads[index];
        if payload.user_id.is_none() {
            payload.user_id = item.user_id.clone();
        }
        if payload.email.is_none() {
            payload.email = item.email.clone();
        }
        payload.actions.push(item.action);
    }

    for payload in &mut payloads {
        if payload.email.is_none()
            && let Some(user) = &payload.user_id
        {
            payload.email = learned
                .iter()
                .find(|(u, _)| u == user)
                .map(|(_, e)| e.as_str().into())
                .or_else(|| known.email_of(user).map(Into::into));
        }
    }

    Ok(Extraction {
        events: raw.len(),
        payloads,
        learned_emails: learned,
        event_uuids: raw
            .iter()
            .filter_map(|e| e.uuid.map(str::to_owned))
            .collect(),
    })
}

/// One PostHog event, from whichever envelope it came in.
struct RawEvent<'a> {
    name: &'a str,
    uuid: Option<&'a str>,
    user_id: Option<String>,
    timestamp: Option<String>,
    /// The capture form's own; made up from the top-level fields of the flat form.
    properties: Option<Cow<'a, Map<String, Value>>>,
    elements_chain: Option<&'a str>,
    person: Option<&'a Map<String, Value>>,
    /// What the flat form's sender read off the element (its text, field name or
    /// id), for when `elements_chain` names nothing better.
    element_hint: Option<&'a str>,
}

/// Top-level fields of the flat form (the Hog destination of `autoplay-setup`)
/// and the capture-form properties they stand for.
const FLAT_FIELDS: &[(&str, &str)] = &[
    ("session_id", "$session_id"),
    ("current_url", "$current_url"),
    ("event_type", "$event_type"),
    ("referrer", "$referrer"),
    ("email", "email"),
    ("link_destination", "link_destination"),
];

/// The flat form's element fields, best first, as [`RawEvent::element_hint`].
const FLAT_ELEMENT_HINTS: &[&str] = &["button_or_link_text", "input_field_name", "element_id"];

/// The properties a flat body stands for, or `None` when it has none of the flat
/// fields. Empty strings are how the sender says "absent", so they are left out.
fn flat_properties(map: &Map<String, Value>) -> Option<Map<String, Value>> {
    let mut props = Map::new();
    let mut flat = false;
    for (field, property) in FLAT_FIELDS {
        let Some(value) = map.get(*field) else {
            continue;
        };
        flat = true;
        let present = match value {
            Value::Null => false,
            Value::String(s) => !s.trim().is_empty(),
            _ => true,
        };
        if present {
            props.insert((*property).to_owned(), value.clone());
        }
    }
    flat |= map.contains_key("elements_chain") || map.contains_key("button_or_link_text");
    flat.then_some(props)
}

/// Nesting allowed between arrays and batches; PostHog never nests more than once.
const MAX_DEPTH: usize = 4;

fn collect<'a>(
    value: &'a Value,
    out: &mut Vec<RawEvent<'a>>,
    depth: usize,
) -> Result<(), ShapeError> {
    if depth > MAX_DEPTH {
        return Err(ShapeError("events nested too deeply".into()));
    }
    match value {
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| collect(item, out, depth + 1)),
        Value::Object(map) => {
            if let Some(batch) = map.get("batch") {
                if !batch.is_array() {
                    return Err(ShapeError("\"batch\" must be an array of events".into()));
                }
                return collect(batch, out, depth + 1);
            }
            match map.get("event") {
                Some(Value::String(_)) => {
                    out.push(raw_event(map, None)?);
                    Ok(())
                }
                Some(Value::Object(inner)) => {
                    let person = map.get("person").and_then(Value::as_object);
                    out.push(raw_event(inner, person)?);
                    Ok(())
                }
                Some(_) => Err(ShapeError(
                    "\"event\" must be an event name or an event object".into(),
                )),
                None => Err(ShapeError("an event needs an \"event\" field".into())),
            }
        }
        _ => Err(ShapeError(
            "expected an event object, an array of events or {\"batch\": [...]}".into(),
        )),
    }
}

fn raw_event<'a>(
    map: &'a Map<String, Value>,
    person: Option<&'a Map<String, Value>>,
) -> Result<RawEvent<'a>, ShapeError> {
    let name = map
        .get("event")
        .and_then(Value::as_str)
        .ok_or_else(|| ShapeError("an event's \"event\" must be its name".into()))?;
    let properties = match map.get("properties") {
        None | Some(Value::Null) => flat_properties(map).map(Cow::Owned),
        Some(Value::Object(props)) => Some(Cow::Borrowed(props)),
        Some(_) => {
            return Err(ShapeError(
                "an event's \"properties\" must be an object".into(),
            ));
        }
    };
    let user_id = id_text(map.get("distinct_id")).or_else(|| {
        properties
            .as_deref()
            .and_then(|p| id_text(p.get("distinct_id")))
    });
    let elements_chain = nonempty_str(map.get("elements_chain")).or_else(|| {
        map.get("properties")
            .and_then(|p| p.get("$elements_chain"))
            .and_then(Value::as_str)
    });
    let element_hint = FLAT_ELEMENT_HINTS
        .iter()
        .find_map(|field| nonempty_str(map.get(*field)));
    Ok(RawEvent {
        name,
        uuid: nonempty_str(map.get("uuid")),
        user_id,
        timestamp: nonempty_str(map.get("timestamp")).map(str::to_owned),
        elements_chain,
        person: person.or_else(|| map.get("person").and_then(Value::as_object)),
        element_hint,
        properties,
    })
}

/// Ids may come as numbers; take them as their text.
fn id_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn nonempty_str(value: Option<&Value>) -> Option<&str> {
    value
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn email_in(map: Option<&Map<String, Value>>) -> Option<String> {
    let map = map?;
    nonempty_str(map.get("email"))
        .or_else(|| nonempty_str(map.get("$email")))
        .map(str::to_owned)
}

/// The email an event tells: its properties, its `$set`/`$set_once`, or its person.
fn event_email(event: &RawEvent<'_>) -> Option<String> {
    let props = event.properties.as_deref();
    email_in(props)
        .or_else(|| email_in(props.and_then(|p| p.get("$set")).and_then(Value::as_object)))
        .or_else(|| {
            email_in(
                props
                    .and_then(|p| p.get("$set_once"))
                    .and_then(Value::as_object),
            )
        })
        .or_else(|| {
            email_in(
                event
                    .person
                    .and_then(|p| p.get("properties"))
                    .and_then(Value::as_object),
            )
        })
}

struct Extracted {
    session_id: Option<CompactString>,
    user_id: Option<CompactString>,
    email: Option<CompactString>,
    action: SlimAction,
}

fn to_action(event: &RawEvent<'_>) -> Option<Extracted> {
    let props = event.properties.as_deref();
    let prop = |key: &str| props.and_then(|p| p.get(key));

    let (event_type, title, description) = match event.name {
        "$pageview" | "$screen" => {
            let title = nonempty_str(prop("title"))
                .or_else(|| nonempty_str(prop("$title")))
                .or_else(|| nonempty_str(prop("$screen_name")))
                .map(str::to_owned)
                .or_else(|| page_url(props).map(|u| path_of(&u).to_owned()))
                .unwrap_or_else(|| "page".to_owned());
            let description = format!("Viewed {title}");
            ("pageview".to_owned(), title, description)
        }
        "$autocapture" | "$rageclick" => {
            let kind = match nonempty_str(prop("$event_type")) {
                _ if event.name == "$rageclick" => "click".to_owned(),
                None | Some("click" | "tap" | "touch") => "click".to_owned(),
                Some("change" | "input") => "input".to_owned(),
                Some("submit") => "submit".to_owned(),
                Some(other) => other.to_owned(),
            };
            let title = element_title(props, event.elements_chain, event.element_hint)
                .unwrap_or_else(|| "element".to_owned());
            let verb = match kind.as_str() {
                "click" if event.name == "$rageclick" => "Rage-clicked".to_owned(),
                "click" => "Clicked".to_owned(),
                "input" => "Changed".to_owned(),
                "submit" => "Submitted".to_owned(),
                other => capitalise(other),
            };
            let description = format!("{verb} '{title}'");
            (kind, title, description)
        }
        // The drop list and every other PostHog-internal event: `$` names are
        // PostHog's own, and the ones above are the only ones a user did.
        name if name.starts_with('$') => return None,
        name => (
            name.to_owned(),
            name.to_owned(),
            format!("Triggered {name}"),
        ),
    };
    let raw_url = page_url(props);
    let canonical_url = raw_url.as_deref().map(canonical_url).unwrap_or_default();
    let session_id = id_text(prop("$session_id")).or_else(|| event.user_id.clone());

    Some(Extracted {
        session_id: session_id.map(Into::into),
        user_id: event.user_id.as_deref().map(Into::into),
        email: event_email(event).map(Into::into),
        action: SlimAction {
            event_type: event_type.into(),
            title: title.into(),
            description: description.into(),
            canonical_url: canonical_url.into(),
            raw_url: raw_url.map(Into::into),
            ts: event.timestamp.as_deref().map(Into::into),
            properties: Properties::from_map(&kept_properties(props)),
            ..SlimAction::default()
        },
    })
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The page the event happened on, as visited.
fn page_url(props: Option<&Map<String, Value>>) -> Option<String> {
    let props = props?;
    if let Some(url) = nonempty_str(props.get("$current_url")) {
        return Some(url.to_owned());
    }
    let path = nonempty_str(props.get("$pathname"))?;
    Some(match nonempty_str(props.get("$host")) {
        Some(host) => format!("https://{host}{path}"),
        None => path.to_owned(),
    })
}

/// The properties worth passing on: the event's own (non-`$`) ones, without the
/// ones already lifted into the action or payload, plus the referrer.
fn kept_properties(props: Option<&Map<String, Value>>) -> Map<String, Value> {
    const LIFTED: &[&str] = &["title", "email", "distinct_id", "token"];
    let mut kept = Map::new();
    let Some(props) = props else { return kept };
    if let Some(referrer) = nonempty_str(props.get("$referrer")).filter(|r| *r != "$direct") {
        kept.insert("referrer".to_owned(), Value::String(referrer.to_owned()));
    }
    for (key, value) in props {
        if !key.starts_with('$') && !LIFTED.contains(&key.as_str()) {
            kept.insert(key.clone(), value.clone());
        }
    }
    kept
}

/// Attributes of one DOM element, in the `$elements` naming (`$el_text`,
/// `attr__aria-label`, `tag_name`, ...).
type Element = HashMap<String, String>;

/// What a user would call the element acted on. `hint` (the flat form's element
/// fields) comes after everything the elements say but before a bare tag name.
fn element_title(
    props: Option<&Map<String, Value>>,
    chain: Option<&str>,
    hint: Option<&str>,
) -> Option<String> {
    let elements: Vec<Element> = match props
        .and_then(|p| p.get("$elements"))
        .and_then(Value::as_array)
    {
        Some(list) => list
            .iter()
            .filter_map(Value::as_object)
            .map(|el| {
                el.iter()
                    .filter_map(|(k, v)| match v {
                        Value::String(s) => Some((k.clone(), s.clone())),
                        Value::Number(n) => Some((k.clone(), n.to_string())),
                        _ => None,
                    })
                    .collect()
            })
            .collect(),
        None => chain.map(parse_elements_chain).unwrap_or_default(),
    };

    // The target's own text first: it is what the user read when acting.
    if let Some(text) = props.and_then(|p| nonempty_str(p.get("$el_text"))) {
        return Some(clean(text));
    }
    const OWN: &[&str] = &[
        "$el_text",
        "text",
        "attr__aria-label",
        "attr__name",
        "attr__placeholder",
        "attr__title",
        "attr__alt",
        "attr__id",
    ];
    if let Some(target) = elements.first()
        && let Some(found) = OWN
            .iter()
            .find_map(|key| target.get(*key).map(|s| s.trim()).filter(|s| !s.is_empty()))
    {
        return Some(clean(found));
    }
    // A click on an icon inside a labelled button: the nearest labelled ancestor.
    for ancestor in elements.iter().skip(1).take(3) {
        for key in ["$el_text", "text", "attr__aria-label"] {
            if let Some(found) = ancestor
                .get(key)
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
            {
                return Some(clean(found));
            }
        }
    }
    hint.map(clean).or_else(|| {
        elements
            .first()
            .and_then(|t| t.get("tag_name"))
            .map(|tag| clean(tag))
    })
}

/// Element text can be long and multi-line; a title is one short line.
fn clean(text: &str) -> String {
    const MAX_CHARS: usize = 80;
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX_CHARS {
        one_line
    } else {
        let mut cut: String = one_line.chars().take(MAX_CHARS - 1).collect();
        cut.push('\u{2026}');
        cut
    }
}

/// Parses PostHog's `elements_chain`: elements separated by `;`, each
/// `tag.class1.class2:key="value"key2="value2"`, target first. Quotes inside values
/// are escaped with a backslash.
pub fn parse_elements_chain(chain: &str) -> Vec<HashMap<String, String>> {
    let mut elements = Vec::new();
    for part in split_outside_quotes(chain, ';') {
        let mut element = HashMap::new();
        let (head, attrs) = match find_outside_quotes(part, ':') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, ""),
        };
        let tag = head.split('.').next().unwrap_or("").trim();
        if !tag.is_empty() {
            element.insert("tag_name".to_owned(), tag.to_owned());
        }
        let mut rest = attrs;
        while let Some(eq) = rest.find("=\"") {
            let key = rest[..eq].trim();
            let value_start = eq + 2;
            let mut value = String::new();
            let mut end = None;
            let mut chars = rest[value_start..].char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = Some(value_start + i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let name = if key == "text" { "$el_text" } else { key };
            if !name.is_empty() {
                element.insert(name.to_owned(), value);
            }
            match end {
                Some(end) => rest = &rest[end..],
                None => break,
            }
        }
        if !element.is_empty() {
            elements.push(element);
        }
    }
    elements
}

fn find_outside_quotes(s: &str, needle: char) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            c if c == needle && !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(i) = find_outside_quotes(rest, sep) {
        parts.push(&rest[..i]);
        rest = &rest[i + 1..];
    }
    parts.push(rest);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// The path of a URL (everything from the first `/` after the host), without
/// query or fragment.
fn path_of(url: &str) -> &str {
    let without_query = strip_query(url);
    match without_query.find("://") {
        Some(i) => {
            let after = &without_query[i + 3..];
            match after.find('/') {
                Some(j) => &after[j..],
                None => "/",
            }
        }
        None => without_query,
    }
}

fn strip_query(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

/// The URL without query or fragment, with id-like path segments collapsed to
/// `:id` (see the crate docs for which segments count as ids).
pub fn canonical_url(url: &str) -> String {
    let base = strip_query(url.trim());
    let (origin, path) = match base.find("://") {
        Some(i) => match base[i + 3..].find('/') {
            Some(j) => base.split_at(i + 3 + j),
            None => (base, ""),
        },
        None => ("", base),
    };
    let mut out = String::with_capacity(base.len());
    out.push_str(origin);
    let mut first = true;
    for segment in path.split('/') {
        if !first {
            out.push('/');
        }
        first = false;
        if is_id_segment(segment) {
            out.push_str(":id");
        } else {
            out.push_str(segment);
        }
    }
    out
}

/// Whether a path segment is an identifier rather than a route name.
pub fn is_id_segment(segment: &str) -> bool {
    if segment.is_empty() {
        return false;
    }
    let bytes = segment.as_bytes();
    if bytes.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if is_uuid(segment) {
        return true;
    }
    if bytes.len() >= 16 && bytes.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    // Mixed alphanumeric ids (Stripe-, Nano- or hash-style): long, one token, with
    // both letters and several digits, which route names rarely have.
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    let letters = bytes.iter().filter(|b| b.is_ascii_alphabetic()).count();
    bytes.len() >= 10
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
        && digits >= 2
        && letters >= 1
        && !segment.contains("--")
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// RFC 3339 / ISO-8601 date-time to unix seconds (`2024-01-15T10:30:00.000Z`,
/// with `Z` or a `±hh:mm` offset). `None` for anything else.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut fraction = 0.0;
    if let Some(after_dot) = rest.strip_prefix('.') {
        let digits = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        fraction = format!("0.{}", &after_dot[..digits]).parse().ok()?;
        rest = &after_dot[digits..];
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hm = &rest[1..];
            let (h, m) = match hm.len() {
                5 if hm.as_bytes()[2] == b':' => {
                    (hm[..2].parse::<i64>().ok()?, hm[3..].parse::<i64>().ok()?)
                }
                4 => (hm[..2].parse::<i64>().ok()?, hm[2..].parse::<i64>().ok()?),
                2 => (hm.parse::<i64>().ok()?, 0),
                _ => return None,
            };
            sign * (h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(secs as f64 + fraction)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds as RFC 3339 UTC with milliseconds (`2024-01-15T10:30:00.000Z`).
pub fn format_rfc3339(unix: f64) -> String {
    let millis_total = (unix * 1000.0).round() as i64;
    let secs = millis_total.div_euclid(1000);
    let millis = millis_total.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/posthog/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture"))
            .expect("fixture JSON")
    }

    fn single(name: &str) -> (ActionsPayload, SlimAction) {
        let out = extract(&fixture(name), &NoEmails, 0.0).unwrap();
        assert_eq!(out.events, 1);
        assert_eq!(out.payloads.len(), 1, "{name}");
        let payload = out.payloads[0].clone();
        assert_eq!(payload.actions.len(), 1, "{name}");
        let action = payload.actions[0].clone();
        (payload, action)
    }

    #[test]
    fn pageview_fixture() {
        let (payload, action) = single("capture-pageview");
        assert_eq!(action.event_type, "pageview");
        assert_eq!(action.title, "Project board");
        assert_eq!(action.description, "Viewed Project board");
        assert_eq!(
            action.canonical_url,
            "https://app.example.com/projects/:id/board"
        );
        assert_eq!(
            action.raw_url.as_deref(),
            Some("https://app.example.com/projects/8812/board?view=kanban#top")
        );
        assert_eq!(action.ts.as_deref(), Some("2024-01-15T10:30:00.000Z"));
        assert_eq!(
            action.properties.to_map()["referrer"],
            "https://app.example.com/projects"
        );
        assert!(!action.properties.to_map().contains_key("email"));
        assert_eq!(
            payload.session_id.as_deref(),
            Some("018d0b6a-1f2e-7c3a-9b1d-5e6f7a8b9c0d")
        );
        assert_eq!(payload.user_id.as_deref(), Some("user_456"));
        assert_eq!(payload.email.as_deref(), Some("alice@example.com"));
    }

    #[test]
    fn click_fixture() {
        let (payload, action) = single("capture-autocapture-click");
        assert_eq!(action.event_type, "click");
        assert_eq!(action.title, "Export CSV");
        assert_eq!(action.description, "Clicked 'Export CSV'");
        assert_eq!(action.canonical_url, "https://app.example.com/dashboard");
        assert_eq!(payload.user_id.as_deref(), Some("user_456"));
        assert_eq!(payload.email, None);
    }

    #[test]
    fn change_fixture() {
        let (_, action) = single("capture-autocapture-change");
        assert_eq!(action.event_type, "input");
        assert_eq!(action.title, "company_vat_id");
        assert_eq!(action.description, "Changed 'company_vat_id'");
        assert_eq!(
            action.canonical_url,
            "https://app.example.com/settings/:id/billing"
        );
    }

    #[test]
    fn submit_fixture() {
        let (_, action) = single("capture-autocapture-submit");
        assert_eq!(action.event_type, "submit");
        assert_eq!(action.title, "Billing details");
        assert_eq!(action.description, "Submitted 'Billing details'");
        assert_eq!(
            action.canonical_url,
            "https://app.example.com/settings/:id/billing"
        );
    }

    #[test]
    fn hog_envelope_fixture() {
        let (payload, action) = single("hog-webhook-envelope");
        assert_eq!(action.event_type, "click");
        assert_eq!(action.title, "Download PDF");
        assert_eq!(action.description, "Clicked 'Download PDF'");
        assert_eq!(action.canonical_url, "https://app.example.com/invoices/:id");
        assert_eq!(
            payload.session_id.as_deref(),
            Some("018d0b6b-aaaa-7bbb-8ccc-ddddeeeeffff")
        );
        assert_eq!(payload.user_id.as_deref(), Some("user_789"));
        assert_eq!(payload.email.as_deref(), Some("bob@example.com"));
    }

    /// The flat body of the Hog destination `autoplay-setup` creates: every field
    /// top-level, absent ones as empty strings.
    #[test]
    fn hog_flat_fixtures() {
        let session = "018d0b6c-1f2e-7c3a-9b1d-5e6f7a8b9c0d";
        let (payload, action) = single("hog-flat-pageview");
        assert_eq!(
            (
                action.event_type.as_str(),
                action.title.as_str(),
                action.canonical_url.as_str(),
                action.description.as_str()
            ),
            (
                "pageview",
                "/projects/8812/board",
                "https://app.example.com/projects/:id/board",
                "Viewed /projects/8812/board"
            )
        );
        assert_eq!(
            action.raw_url.as_deref(),
            Some("https://app.example.com/projects/8812/board?view=kanban#top")
        );
        assert_eq!(action.ts.as_deref(), Some("2024-01-15T10:40:00.000Z"));
        assert_eq!(
            action.properties.to_map(),
            serde_json::json!({"referrer": "https://app.example.com/projects"})
                .as_object()
                .unwrap()
                .clone()
        );
        assert_eq!(payload.session_id.as_deref(), Some(session));
        assert_eq!(payload.user_id.as_deref(), Some("user_456"));
        assert_eq!(payload.email.as_deref(), Some("alice@example.com"));

        for (name, expected) in [
            (
                "hog-flat-click",
                (
                    "click",
                    "Export CSV",
                    "https://app.example.com/dashboard",
                    "Clicked 'Export CSV'",
                ),
            ),
            (
                "hog-flat-change",
                (
                    "input",
                    "company_vat_id",
                    "https://app.example.com/settings/:id/billing",
                    "Changed 'company_vat_id'",
                ),
            ),
            (
                "hog-flat-submit",
                (
                    "submit",
                    "Billing details",
                    "https://app.example.com/settings/:id/billing",
                    "Submitted 'Billing details'",
                ),
            ),
        ] {
            let (payload, a) = single(name);
            assert_eq!(
                (
                    a.event_type.as_str(),
                    a.title.as_str(),
                    a.canonical_url.as_str(),
                    a.description.as_str()
                ),
                expected,
                "{name}"
            );
            assert_eq!(payload.session_id.as_deref(), Some(session), "{name}");
            assert_eq!(payload.email.as_deref(), Some("alice@example.com"));
            assert!(a.properties.is_empty(), "{name}: {:?}", a.properties);
        }

        // No recording session and no email: the session is the visitor, the
        // email stays unknown, `$direct` is no referrer.
        let (payload, action) = single("hog-flat-link-anonymous");
        assert_eq!(action.event_type, "click");
        assert_eq!(action.title, "Download PDF");
        assert_eq!(action.canonical_url, "https://app.example.com/invoices/:id");
        let visitor = "018d0b6b-anon-7bbb-8ccc-ddddeeeeffff";
        assert_eq!(payload.session_id.as_deref(), Some(visitor));
        assert_eq!(payload.user_id.as_deref(), Some(visitor));
        assert_eq!(payload.email, None);
        assert_eq!(
            action.properties.to_map()["link_destination"],
            "/invoices/4f9c2a7e-8b1d-4c3e-9a2f-1b2c3d4e5f60/pdf"
        );
        assert!(!action.properties.to_map().contains_key("referrer"));

        let out = extract(&fixture("hog-flat-pageleave"), &NoEmails, 0.0).unwrap();
        assert_eq!((out.events, out.payloads.len()), (1, 0));
        assert_eq!(
            out.learned_emails,
            vec![("user_456".to_owned(), "alice@example.com".to_owned())]
        );
    }

    #[test]
    fn flat_element_fields_name_what_the_chain_does_not() {
        let body = serde_json::json!({"event": "$autocapture", "event_type": "click",
            "distinct_id": "u", "session_id": "", "elements_chain": "",
            "button_or_link_text": "", "input_field_name": "", "element_id": "save-btn"});
        let out = extract(&body, &NoEmails, 0.0).unwrap();
        assert_eq!(out.payloads[0].actions[0].title, "save-btn");
        assert_eq!(out.payloads[0].session_id.as_deref(), Some("u"));
        // An icon with no text inside nothing labelled: the hint beats the tag name.
        let body = serde_json::json!({"event": "$autocapture", "event_type": "click",
            "distinct_id": "u", "elements_chain": "svg.icon:nth-child=\"1\"",
            "button_or_link_text": "Close"});
        let out = extract(&body, &NoEmails, 0.0).unwrap();
        assert_eq!(out.payloads[0].actions[0].title, "Close");
    }

    #[test]
    fn batch_fixture() {
        let out = extract(&fixture("batch-mixed"), &NoEmails, 0.0).unwrap();
        assert_eq!(out.events, 6);
        assert_eq!(out.action_count(), 4);
        assert_eq!(out.payloads.len(), 2);
        let a = &out.payloads[0];
        assert_eq!(a.session_id.as_deref(), Some("sess-A"));
        assert_eq!(a.user_id.as_deref(), Some("user_456"));
        assert_eq!(a.email.as_deref(), Some("alice@example.com"));
        let summary: Vec<_> = a
            .actions
            .iter()
            .map(|x| {
                (
                    x.event_type.as_str(),
                    x.title.as_str(),
                    x.canonical_url.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "pageview",
                    "Project board",
                    "https://app.example.com/projects/:id/board"
                ),
                ("click", "Pay now", "https://app.example.com/invoices/:id"),
                (
                    "invoice_paid",
                    "invoice_paid",
                    "https://app.example.com/invoices/:id/pay"
                ),
            ]
        );
        assert_eq!(a.actions[2].properties.to_map()["amount"], 120);
        let b = &out.payloads[1];
        assert_eq!(b.session_id.as_deref(), Some("sess-B"));
        assert_eq!(b.user_id.as_deref(), Some("user_999"));
        assert_eq!(b.email, None);
        assert_eq!(b.actions.len(), 1);
        assert_eq!(b.actions[0].event_type, "click");
        assert_eq!(b.actions[0].title, "Start free trial");
        assert_eq!(
            b.actions[0].canonical_url,
            "https://app.example.com/pricing"
        );
        assert_eq!(
            out.learned_emails,
            vec![("user_456".to_owned(), "alice@example.com".to_owned())]
        );
    }

    #[test]
    fn known_emails_fill_in() {
        let known = |user: &str| (user == "user_456").then(|| "alice@example.com".to_owned());
        let out = extract(&fixture("capture-autocapture-click"), &known, 0.0).unwrap();
        assert_eq!(out.payloads[0].email.as_deref(), Some("alice@example.com"));
    }

    #[test]
    fn arrays_of_envelopes_and_events() {
        let body = Value::Array(vec![
            fixture("hog-webhook-envelope"),
            fixture("capture-pageview"),
        ]);
        let out = extract(&body, &NoEmails, 0.0).unwrap();
        assert_eq!(out.events, 2);
        assert_eq!(out.payloads.len(), 2);
        // Ordered by first action: the pageview (10:30) precedes the envelope (11:02).
        assert_eq!(out.payloads[0].actions[0].event_type, "pageview");
    }

    #[test]
    fn shape_errors() {
        for body in [
            r#"42"#,
            r#"{"foo":1}"#,
            r#"{"batch":{}}"#,
            r#"[{"event":7}]"#,
            r#"{"event":"x","properties":[]}"#,
        ] {
            let value: Value = serde_json::from_str(body).unwrap();
            assert!(extract(&value, &NoEmails, 0.0).is_err(), "{body}");
        }
        let empty = extract(&serde_json::json!([]), &NoEmails, 0.0).unwrap();
        assert_eq!(empty.events, 0);
    }

    #[test]
    fn dropped_and_internal_events() {
        for name in DROPPED_EVENTS
            .iter()
            .chain(&["$heatmap", "$exception_internal"])
        {
            let body = serde_json::json!({"event": name, "distinct_id": "u", "properties": {"$current_url": "https://x/"}});
            let out = extract(&body, &NoEmails, 0.0).unwrap();
            assert_eq!(out.events, 1);
            assert!(out.payloads.is_empty(), "{name}");
        }
    }

    #[test]
    fn session_falls_back_to_distinct_id() {
        let body = serde_json::json!({"event": "signup", "distinct_id": 42, "properties": {}});
        let out = extract(&body, &NoEmails, 0.0).unwrap();
        assert_eq!(out.payloads[0].session_id.as_deref(), Some("42"));
        assert_eq!(out.payloads[0].user_id.as_deref(), Some("42"));
        assert_eq!(out.payloads[0].actions[0].canonical_url, "");
    }

    #[test]
    fn pageview_title_falls_back_to_path() {
        let body = serde_json::json!({"event": "$pageview", "distinct_id": "u",
            "properties": {"$current_url": "https://app.example.com/orders/123?x=1"}});
        let out = extract(&body, &NoEmails, 0.0).unwrap();
        assert_eq!(out.payloads[0].actions[0].title, "/orders/123");
    }

    #[test]
    fn ids_in_paths() {
        for id in [
            "8812",
            "4f9c2a7e-8b1d-4c3e-9a2f-1b2c3d4e5f60",
            "507f1f77bcf86cd799439011",
            "ch_3MmlLrLkdIwHu7ix0snN0B4F",
            "cus_9s6XKzkNRiz8i3",
        ] {
            assert!(is_id_segment(id), "{id}");
        }
        for word in [
            "settings",
            "billing",
            "v2",
            "oauth2",
            "user-profile-v2",
            "i18n",
            "2fa-setup",
            "",
        ] {
            assert!(!is_id_segment(word), "{word}");
        }
        assert_eq!(
            canonical_url("https://a.b/x/12/y/?q=1#f"),
            "https://a.b/x/:id/y/"
        );
        assert_eq!(canonical_url("https://a.b"), "https://a.b");
        assert_eq!(canonical_url("/p/99"), "/p/:id");
    }

    #[test]
    fn elements_chain_parsing() {
        let chain = r#"button.btn.primary:text="Say \"hi\"; now"attr__aria-label="Greet"nth-child="1";div.row:nth-child="2""#;
        let els = parse_elements_chain(chain);
        assert_eq!(els.len(), 2);
        assert_eq!(els[0]["tag_name"], "button");
        assert_eq!(els[0]["$el_text"], "Say \"hi\"; now");
        assert_eq!(els[0]["attr__aria-label"], "Greet");
        assert_eq!(els[1]["tag_name"], "div");
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            parse_rfc3339("2024-01-15T10:30:00.000Z"),
            Some(1_705_314_600.0)
        );
        assert_eq!(
            parse_rfc3339("2024-01-15T11:30:00+01:00"),
            Some(1_705_314_600.0)
        );
        assert_eq!(
            parse_rfc3339("2024-01-15T10:30:00.250Z"),
            Some(1_705_314_600.25)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(format_rfc3339(1_705_314_600.25), "2024-01-15T10:30:00.250Z");
    }
}
