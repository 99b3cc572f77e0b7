//! What a user would call the element they acted on.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::elements_chain::parse_elements_chain;
use super::envelope::nonempty_str;

/// Attributes of one DOM element, in the `$elements` naming (`$el_text`,
/// `attr__aria-label`, `tag_name`, ...).
type Element = HashMap<String, String>;

/// What a user would call the element acted on. `hint` (the flat form's element
/// fields) comes after everything the elements say but before a bare tag name.
pub(super) fn element_title(
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

#[cfg(test)]
mod tests {
    use crate::extract::{NoEmails, extract};

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
}
