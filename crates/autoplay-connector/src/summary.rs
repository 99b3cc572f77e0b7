//! Session summaries: every N actions of a (product, session), one
//! [`SummaryPayload`](autoplay_sdk::models::SummaryPayload) whose `replaces` is the number of
//! actions it covers.
//!
//! Counting happens inline (a map lookup under a short lock); writing the summary
//! happens in a spawned task, so neither a slow LLM nor a failing one ever holds
//! up ingestion. The LLM requests of one session run concurrently, but their
//! summaries are published in the order they fell due. Sessions idle longer than
//! the configured time are forgotten with their pending actions, so memory follows
//! the number of *active* sessions.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use autoplay_sdk::models::{ActionsPayload, CompactString, SlimAction};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tracing::warn;

use crate::config::LlmConfig;
use crate::metrics::{self, Metrics};
use crate::store::SessionRecord;

/// Actions of one session waiting to be summarised.
#[derive(Debug, Clone)]
pub struct SessionActions {
    /// The session.
    pub session_id: CompactString,
    /// Its user, when known.
    pub user_id: Option<CompactString>,
    /// Its user's email, when known.
    pub email: Option<CompactString>,
    /// The actions, oldest first.
    pub actions: Vec<SlimAction>,
}

struct SessionState {
    user_id: Option<CompactString>,
    email: Option<CompactString>,
    pending: Vec<SlimAction>,
    /// With a durable store only: the batches whose summary fell due and is
    /// not out yet, oldest first, so a restart can still write them.
    due: VecDeque<Vec<SlimAction>>,
    last_seen: Instant,
    /// Resolves once the session's latest summary is published.
    last_summary: Option<oneshot::Receiver<()>>,
}

impl SessionState {
    fn new() -> Self {
        Self {
            user_id: None,
            email: None,
            pending: Vec::new(),
            due: VecDeque::new(),
            last_seen: Instant::now(),
            last_summary: None,
        }
    }

    fn record(&self) -> SessionRecord {
        SessionRecord {
            user_id: self.user_id.clone(),
            email: self.email.clone(),
            due: self.due.iter().cloned().collect(),
            pending: self.pending.clone(),
        }
    }

    /// The next summary of this session, on `actions`.
    fn fall_due(&mut self, session_id: CompactString, actions: Vec<SlimAction>) -> DueSummary {
        let (published, next) = oneshot::channel();
        DueSummary {
            session: SessionActions {
                session_id,
                user_id: self.user_id.clone(),
                email: self.email.clone(),
                actions,
            },
            after: self.last_summary.replace(next),
            published,
            seq: None,
        }
    }
}

/// A summary that fell due, with its place in the session's order.
///
/// Summaries are written in their own tasks, and an LLM may answer a later request
/// before an earlier one; a session's summaries are still published in the order
/// they fell due: each waits for the previous one (which its writer's timeout
/// bounds) before it goes out.
pub(crate) struct DueSummary {
    /// The actions to summarise.
    pub session: SessionActions,
    /// Resolves when the session's previous summary is out (or was given up).
    pub after: Option<oneshot::Receiver<()>>,
    /// Sent, or dropped, once this summary is out, to let the next one go.
    pub published: oneshot::Sender<()>,
    /// Its place among the session's summaries when Redis counts the session
    /// (several replicas): published in that order across replicas.
    pub seq: Option<u64>,
}

/// (product, session).
pub(crate) type SessionKey = (Arc<str>, CompactString);

/// Counts actions per (product, session) and says when a summary is due.
#[derive(Default)]
pub(crate) struct SessionTracker {
    sessions: Mutex<HashMap<SessionKey, SessionState>>,
    /// Whether the store keeps session state: then the tracker also keeps the
    /// batches due but not yet summarised, for [`SessionTracker::write_state`].
    durable: bool,
}

impl SessionTracker {
    /// Adds a payload's actions; returns the batch to summarise once `threshold`
    /// actions are pending (all pending ones, so `replaces` can exceed the
    /// threshold when a payload crosses it).
    pub fn record(
        &self,
        product_id: &Arc<str>,
        threshold: usize,
        payload: &ActionsPayload,
    ) -> Option<DueSummary> {
        if threshold == 0 || payload.actions.is_empty() {
            return None;
        }
        let session_id = payload.session_id.clone()?;
        let mut sessions = self.lock();
        let state = sessions
            .entry((product_id.clone(), session_id.clone()))
            .or_insert_with(SessionState::new);
        state.last_seen = Instant::now();
        if payload.user_id.is_some() {
            state.user_id = payload.user_id.clone();
        }
        if payload.email.is_some() {
            state.email = payload.email.clone();
        }
        state.pending.extend(payload.actions.iter().cloned());
        if state.pending.len() < threshold {
            return None;
        }
        let actions = std::mem::take(&mut state.pending);
        if self.durable {
            state.due.push_back(actions.clone());
        }
        Some(state.fall_due(session_id, actions))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, SessionState>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A tracker that keeps what a durable store needs ([`Self::write_state`]).
    pub fn durable() -> Self {
        Self {
            durable: true,
            ..Self::default()
        }
    }

    /// Hands the session's state, as a durable store keeps it, to `write`,
    /// under the tracker's lock: the writes of one session reach the store in
    /// the order of its changes, so an older state never overwrites a newer one.
    pub fn write_state<T>(
        &self,
        product_id: &Arc<str>,
        session_id: &str,
        write: impl FnOnce(SessionRecord) -> T,
    ) -> Option<T> {
        let sessions = self.lock();
        let state = sessions.get(&(product_id.clone(), session_id.into()))?;
        Some(write(state.record()))
    }

    /// The session's oldest due summary is out: `write` gets its state now
    /// (`None` when it was forgotten meanwhile), under the lock as in
    /// [`Self::write_state`].
    pub fn published<T>(
        &self,
        product_id: &Arc<str>,
        session_id: &str,
        write: impl FnOnce(Option<SessionRecord>) -> T,
    ) -> T {
        let mut sessions = self.lock();
        let record = sessions
            .get_mut(&(product_id.clone(), session_id.into()))
            .map(|state| {
                state.due.pop_front();
                state.record()
            });
        write(record)
    }

    /// Takes back a session a durable store kept; returns the summaries that
    /// were due and not yet out, in order, to write now.
    pub fn restore(
        &self,
        product_id: Arc<str>,
        session_id: CompactString,
        record: SessionRecord,
    ) -> Vec<DueSummary> {
        let mut sessions = self.lock();
        let state = sessions
            .entry((product_id, session_id.clone()))
            .or_insert_with(SessionState::new);
        state.user_id = record.user_id;
        state.email = record.email;
        state.pending = record.pending;
        let mut due = Vec::new();
        for actions in record.due {
            if self.durable {
                state.due.push_back(actions.clone());
            }
            due.push(state.fall_due(session_id.clone(), actions));
        }
        due
    }

    /// A batch the store counted and found due (Redis, whose sessions every
    /// replica shares), put in this replica's order of the session's summaries.
    pub fn due_elsewhere(
        &self,
        product_id: &Arc<str>,
        session_id: CompactString,
        due: crate::store::redis::SharedDue,
    ) -> DueSummary {
        let mut sessions = self.lock();
        let state = sessions
            .entry((product_id.clone(), session_id.clone()))
            .or_insert_with(SessionState::new);
        state.last_seen = Instant::now();
        state.user_id = due.user_id.map(Into::into);
        state.email = due.email.map(Into::into);
        let mut summary = state.fall_due(session_id, due.actions);
        summary.seq = Some(due.seq);
        summary
    }

    /// Forgets sessions idle for longer than `idle`; returns which.
    pub fn evict_idle(&self, idle: Duration) -> Vec<SessionKey> {
        let mut sessions = self.lock();
        let mut evicted = Vec::new();
        sessions.retain(|key, state| {
            let keep = state.last_seen.elapsed() < idle;
            if !keep {
                evicted.push(key.clone());
            }
            keep
        });
        evicted
    }

    /// Sessions tracked now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

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

    fn action(kind: &str, title: &str) -> SlimAction {
        SlimAction {
            event_type: kind.into(),
            title: title.into(),
            ..SlimAction::default()
        }
    }

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

    #[test]
    fn threshold_and_eviction() {
        let tracker = SessionTracker::default();
        let product: Arc<str> = Arc::from("p");
        let payload = |n: usize| ActionsPayload {
            session_id: Some("s1".into()),
            actions: (0..n).map(|_| action("click", "x")).collect(),
            ..ActionsPayload::default()
        };
        assert!(tracker.record(&product, 3, &payload(2)).is_none());
        let due = tracker.record(&product, 3, &payload(2)).unwrap();
        assert_eq!(due.session.actions.len(), 4);
        assert!(
            due.after.is_none(),
            "the session's first summary waits for none"
        );
        assert!(tracker.record(&product, 3, &payload(1)).is_none());
        let mut next = tracker.record(&product, 3, &payload(2)).unwrap();
        let mut after = next.after.take().expect("the second waits for the first");
        assert!(after.try_recv().is_err(), "the first is not out yet");
        due.published.send(()).unwrap();
        assert!(after.try_recv().is_ok());
        assert!(tracker.record(&product, 0, &payload(10)).is_none());
        assert_eq!(tracker.len(), 1);
        assert!(tracker.evict_idle(Duration::from_secs(60)).is_empty());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(tracker.evict_idle(Duration::from_millis(1)).len(), 1);
        assert_eq!(tracker.len(), 0);
    }
}
