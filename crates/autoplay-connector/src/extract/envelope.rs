//! The shapes PostHog sends a webhook body in: one event (capture form or the
//! flat form of the Hog destination), the CDP envelope, arrays, `{"batch": [...]}`;
//! and what every event is read for whatever its shape: its ids and its email.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// A webhook body that is JSON but not of a shape PostHog sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

/// One PostHog event, from whichever envelope it came in.
pub(super) struct RawEvent<'a> {
    pub name: &'a str,
    pub uuid: Option<&'a str>,
    pub user_id: Option<String>,
    pub timestamp: Option<String>,
    /// The capture form's own; made up from the top-level fields of the flat form.
    pub properties: Option<Cow<'a, Map<String, Value>>>,
    pub elements_chain: Option<&'a str>,
    pub person: Option<&'a Map<String, Value>>,
    /// What the flat form's sender read off the element (its text, field name or
    /// id), for when `elements_chain` names nothing better.
    pub element_hint: Option<&'a str>,
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

pub(super) fn collect<'a>(
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
pub(super) fn id_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn nonempty_str(value: Option<&Value>) -> Option<&str> {
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
pub(super) fn event_email(event: &RawEvent<'_>) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::extract::tests::fixture;
    use crate::extract::{NoEmails, extract};

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
}
