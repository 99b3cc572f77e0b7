//! Which PostHog events become which action, with what title and description.

use autoplay_sdk::models::{CompactString, Properties, SlimAction};
use serde_json::{Map, Value};

use super::envelope::{RawEvent, event_email, id_text, nonempty_str};
use super::title::element_title;
use super::url::{canonical_url, path_of};

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

pub(super) struct Extracted {
    pub session_id: Option<CompactString>,
    pub user_id: Option<CompactString>,
    pub email: Option<CompactString>,
    pub action: SlimAction,
}

pub(super) fn to_action(event: &RawEvent<'_>) -> Option<Extracted> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{NoEmails, extract};

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
}
