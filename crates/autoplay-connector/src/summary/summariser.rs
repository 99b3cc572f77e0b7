//! Writes a summary: an OpenAI-compatible LLM when configured, the embedded
//! summariser otherwise and whenever the LLM fails or is saturated.

use std::sync::Arc;

use serde_json::{Value, json};
use tracing::warn;

use super::tracker::SessionActions;
use crate::config::LlmConfig;
use crate::metrics::{self, Metrics};

/// LLM requests in flight at most. Past this, summaries fall back to the embedded
/// summariser at once: a stalled LLM must not pile up tasks and memory.
pub const MAX_LLM_IN_FLIGHT: usize = 32;

/// Writes summaries: the LLM when configured, the embedded summariser otherwise
/// and whenever the LLM fails or is saturated.
pub(crate) struct Summariser {
    llm: Option<(LlmConfig, reqwest::Client)>,
    in_flight: Arc<tokio::sync::Semaphore>,
    metrics: Arc<Metrics>,
}

impl Summariser {
    pub fn new(llm: Option<LlmConfig>, metrics: Arc<Metrics>) -> Self {
        let llm = llm.map(|config| {
            let client = reqwest::Client::builder()
                .timeout(config.timeout)
                .build()
                .unwrap_or_else(|_| reqwest::Client::new());
            (config, client)
        });
        Self {
            llm,
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_LLM_IN_FLIGHT)),
            metrics,
        }
    }

    pub async fn summarise(&self, session: &SessionActions) -> String {
        if let Some((config, client)) = &self.llm {
            let outcome = match self.in_flight.try_acquire() {
                Ok(_permit) => llm_summary(config, client, session).await,
                Err(_) => Err(format!(
                    "{MAX_LLM_IN_FLIGHT} LLM requests already in flight"
                )),
            };
            match outcome {
                Ok(text) => return text,
                Err(e) => {
                    metrics::inc(&self.metrics.llm_failures);
                    warn!(session_id = session.session_id.as_str(), error = %e, "LLM summary failed; using the embedded summariser");
                }
            }
        }
        embedded_summary(session)
    }
}

async fn llm_summary(
    config: &LlmConfig,
    client: &reqwest::Client,
    session: &SessionActions,
) -> Result<String, String> {
    let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
    let mut prompt = String::from("Actions, oldest first:\n");
    for (i, action) in session.actions.iter().enumerate() {
        prompt.push_str(&format!("{}. {}\n", i + 1, action.to_text()));
    }
    let body = json!({
        "model": config.model,
        "temperature": 0.2,
        "max_tokens": 200,
        "messages": [
            {"role": "system", "content": "You summarise what a user did in a web app for a support and analytics team. \
                Answer with one to three plain sentences, no lists, no preamble."},
            {"role": "user", "content": prompt},
        ],
    });
    let mut request = client.post(&url).timeout(config.timeout).json(&body);
    if let Some(key) = &config.api_key {
        request = request.bearer_auth(key.expose());
    }
    let response = request
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let reply: Value = response
        .json()
        .await
        .map_err(|e| e.without_url().to_string())?;
    reply
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| "the reply has no choices[0].message.content".to_owned())
}

/// One to three sentences from the actions alone: who, which pages, what they
/// did there. Deterministic, so tests and offline demos can rely on it.
pub fn embedded_summary(session: &SessionActions) -> String {
    let who = match (&session.email, &session.user_id) {
        (Some(email), _) => email.to_string(),
        (None, Some(user)) => format!("User {user}"),
        (None, None) => "An anonymous user".to_owned(),
    };
    let actions = &session.actions;
    let mut pages = Vec::new();
    let mut clicked = Vec::new();
    let mut changed = Vec::new();
    let mut submitted = Vec::new();
    let mut custom = Vec::new();
    for action in actions {
        let list = match action.event_type.as_str() {
            "pageview" => &mut pages,
            "click" => &mut clicked,
            "input" => &mut changed,
            "submit" => &mut submitted,
            _ => &mut custom,
        };
        let name = match action.event_type.as_str() {
            "pageview" => action.title.to_string(),
            "click" | "input" | "submit" => format!("'{}'", action.title),
            other => other.to_owned(),
        };
        if !list.contains(&name) {
            list.push(name);
        }
    }

    let n = actions.len();
    let plural = if n == 1 { "action" } else { "actions" };
    let mut sentences = vec![if pages.is_empty() {
        format!("{who} took {n} {plural}.")
    } else {
        format!("{who} viewed {} ({n} {plural}).", join_list(&pages))
    }];
    let mut deeds = Vec::new();
    if !clicked.is_empty() {
        deeds.push(format!("clicked {}", join_list(&clicked)));
    }
    if !changed.is_empty() {
        deeds.push(format!("filled in {}", join_list(&changed)));
    }
    if !submitted.is_empty() {
        deeds.push(format!("submitted {}", join_list(&submitted)));
    }
    if !deeds.is_empty() {
        sentences.push(format!("They {}.", join_clauses(&deeds)));
    }
    if !custom.is_empty() {
        let also = if deeds.is_empty() { "" } else { "also " };
        sentences.push(format!("They {also}triggered {}.", join_list(&custom)));
    }
    sentences.join(" ")
}

/// `a`, `a and b`, `a, b and c`, `a, b, c, d and 3 more`.
fn join_list(items: &[String]) -> String {
    const SHOWN: usize = 4;
    if items.len() > SHOWN {
        return format!(
            "{} and {} more",
            items[..SHOWN].join(", "),
            items.len() - SHOWN
        );
    }
    join_clauses(items)
}

fn join_clauses(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::tests::action;
    use autoplay_sdk::models::SlimAction;

    fn session(actions: Vec<SlimAction>) -> SessionActions {
        SessionActions {
            session_id: "s".into(),
            user_id: Some("user_456".into()),
            email: Some("alice@example.com".into()),
            actions,
        }
    }

    #[test]
    fn embedded_sentences() {
        let text = embedded_summary(&session(vec![
            action("pageview", "Dashboard"),
            action("click", "Export CSV"),
            action("pageview", "Billing"),
            action("input", "company_vat_id"),
            action("submit", "Billing details"),
            action("invoice_paid", "invoice_paid"),
            action("click", "Export CSV"),
        ]));
        assert_eq!(
            text,
            "alice@example.com viewed Dashboard and Billing (7 actions). They clicked 'Export CSV', \
             filled in 'company_vat_id' and submitted 'Billing details'. They also triggered invoice_paid."
        );
        let mut anon = session(vec![action("click", "Go")]);
        anon.email = None;
        anon.user_id = None;
        assert_eq!(
            embedded_summary(&anon),
            "An anonymous user took 1 action. They clicked 'Go'."
        );
        let many: Vec<_> = (0..6)
            .map(|i| action("pageview", &format!("P{i}")))
            .collect();
        assert_eq!(
            embedded_summary(&session(many)),
            "alice@example.com viewed P0, P1, P2, P3 and 2 more (6 actions)."
        );
    }
}
