//! PostHog events → [`SlimAction`](autoplay_sdk::models::SlimAction)s, grouped into
//! one [`ActionsPayload`] per session.
//!
//! The rules are documented in the crate docs ("Extraction"); this module is the
//! single place that implements them, one concern per file:
//!
//! - `mod.rs`: [`extract`], which reads the events, learns emails, and groups
//!   the actions into payloads by session in timestamp order;
//! - `envelope.rs`: the body shapes PostHog sends (capture form, the flat form
//!   of the Hog destination, the CDP envelope, arrays, batches) and what every
//!   event gives whatever its shape (ids, email);
//! - `rules.rs`: which event becomes which action, its title and description;
//! - `title.rs`: what a user would call the element acted on;
//! - `elements_chain.rs`: PostHog's `elements_chain` string;
//! - `url.rs`: [`canonical_url`] and which path segments are ids;
//! - `time.rs`: RFC 3339 to and from unix seconds.
//!
//! It is pure: no clock other than the `received_at` fallback passed in, no
//! I/O, no shared state. What the connector learns across requests (a user's
//! email) goes in through [`EmailLookup`] and comes out in
//! [`Extraction::learned_emails`].

mod elements_chain;
mod envelope;
mod rules;
mod time;
mod title;
mod url;

use std::collections::HashMap;

use autoplay_sdk::models::{ActionsPayload, CompactString};
use serde_json::Value;

pub use elements_chain::parse_elements_chain;
pub use envelope::ShapeError;
pub use rules::DROPPED_EVENTS;
pub use time::{format_rfc3339, parse_rfc3339};
pub use url::{canonical_url, is_id_segment};

use envelope::{collect, event_email};
use rules::{Extracted, to_action};

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

#[cfg(test)]
mod tests {
    use super::*;
    use autoplay_sdk::models::SlimAction;

    /// A fixture of `tests/fixtures/posthog`, parsed.
    pub(super) fn fixture(name: &str) -> Value {
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
}
