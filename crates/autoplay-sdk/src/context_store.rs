//! Query-time session context: a session's recent actions and its latest summary,
//! ready to put in front of a user's question (the published SDK's `ContextStore`).
//!
//! Wire [`ContextStore::add`] to `on_actions` and [`ContextStore::set_summary`] to a
//! summarizer's `on_summary`; then [`ContextStore::enrich`] turns a chat message
//! into a retrieval query that carries what the user was doing:
//!
//! ```
//! use autoplay_sdk::context_store::{ContextQuery, ContextStore};
//! use autoplay_sdk::{ActionsPayload, SlimAction};
//!
//! let store = ContextStore::builder().max_actions(20).build()?;
//! store.add(&ActionsPayload {
//!     session_id: Some("ps_1".into()),
//!     actions: vec![SlimAction {
//!         description: "Opened billing".into(),
//!         canonical_url: "/settings/billing".into(),
//!         ..Default::default()
//!     }],
//!     ..Default::default()
//! });
//! store.set_summary("ps_1", "The user is looking at their plan.");
//! assert_eq!(
//!     store.enrich("ps_1", "How do I upgrade?", &ContextQuery::default()),
//!     "[Session context]\nSummary: The user is looking at their plan.\n\n\
//!      Recent activity:\n1. Opened billing \u{2014} /settings/billing\n\n\
//!      [Query]\nHow do I upgrade?"
//! );
//! # Ok::<(), autoplay_sdk::Error>(())
//! ```
//!
//! Actions are kept per product and session (`product_id` and `session_id` of the
//! payload); summaries per session. Memory is bounded: `lookback` evicts old
//! payloads on each `add`, at most `max_stored_actions` actions are kept per
//! session, and `max_sessions` forgets the least recently used session.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{debug, warn};

use crate::error::Error;
use crate::models::ActionsPayload;
use crate::summarizer::format_actions;

/// The session key for payloads without a session id.
const UNKNOWN_SESSION: &str = "unknown";

/// The separator between product and session in a bucket id (0.13.0's).
const BUCKET_SEPARATOR: char = '\u{1f}';

/// Actions kept per session by default, whatever the lookback.
pub const DEFAULT_MAX_STORED_ACTIONS: usize = 1000;

/// Sessions warned about a product-less read, beyond which no more are remembered
/// (the warning may then repeat; memory stays bounded).
const MAX_WARNED: usize = 10_000;

type Clock = Arc<dyn Fn() -> f64 + Send + Sync>;

/// The bucket of a product's session: `"{product_id}\x1f{session_id}"`, or the
/// session id alone without a product (0.13.0's `actions_bucket_id`).
pub fn bucket_id(product_id: Option<&str>, session_id: Option<&str>) -> String {
    let session = session_id.unwrap_or(UNKNOWN_SESSION).trim();
    match product_id.map(str::trim).filter(|p| !p.is_empty()) {
        Some(product) => format!("{product}{BUCKET_SEPARATOR}{session}"),
        None => session.to_owned(),
    }
}

/// Per-call overrides of a [`ContextStore`]'s defaults; `None` keeps the default.
#[derive(Debug, Clone, Default)]
pub struct ContextQuery<'a> {
    /// Reads the actions of this product's session (payloads that carried it).
    pub product_id: Option<&'a str>,
    /// Whether the latest summary is shown.
    pub include_summary: Option<bool>,
    /// Whether the recent actions are shown.
    pub include_actions: Option<bool>,
    /// Only actions forwarded within this window (`Some(None)`: no window).
    pub lookback: Option<Option<Duration>>,
    /// At most this many of the most recent actions (`Some(None)`: no cap).
    pub max_actions: Option<Option<usize>>,
}

/// One payload as stored, with the time it counts from.
#[derive(Debug)]
struct Stored {
    payload: ActionsPayload,
    /// `forwarded_at`, or when it was added for payloads without one.
    at: f64,
}

#[derive(Debug, Default)]
struct Bucket {
    payloads: Vec<Stored>,
    actions: usize,
}

#[derive(Debug, Default)]
struct State {
    buckets: HashMap<String, Bucket>,
    summaries: HashMap<String, String>,
    /// Least-recently-used order of buckets and summary keys (by `used` tick).
    order: BTreeMap<u64, String>,
    ticks: HashMap<String, u64>,
    tick: u64,
    warned: HashSet<String>,
}

impl State {
    /// Marks `key` most recently used; a new key evicts the least recently used one
    /// beyond `max_sessions`.
    fn touch(&mut self, key: &str, max_sessions: Option<usize>) {
        self.tick += 1;
        if let Some(old) = self.ticks.insert(key.to_owned(), self.tick) {
            self.order.remove(&old);
        } else if let Some(max) = max_sessions {
            while self.ticks.len() > max {
                let Some((_, oldest)) = self.order.pop_first() else {
                    break;
                };
                self.ticks.remove(&oldest);
                self.buckets.remove(&oldest);
                self.summaries.remove(&oldest);
                debug!(session_id = %oldest, "context_store: evicted the least recently used session (max_sessions)");
            }
        }
        self.order.insert(self.tick, key.to_owned());
    }

    fn forget(&mut self, key: &str) {
        if let Some(tick) = self.ticks.remove(key) {
            self.order.remove(&tick);
        }
        self.buckets.remove(key);
        self.summaries.remove(key);
    }
}

/// A store of per-session context for query-time enrichment. Thread-safe; reads
/// and writes hold its lock only for in-memory work.
pub struct ContextStore {
    include_summary: bool,
    include_actions: bool,
    lookback: Option<Duration>,
    max_actions: Option<usize>,
    max_sessions: Option<usize>,
    max_stored_actions: usize,
    clock: Clock,
    state: Mutex<State>,
}

impl std::fmt::Debug for ContextStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextStore")
            .field("include_summary", &self.include_summary)
            .field("include_actions", &self.include_actions)
            .field("lookback", &self.lookback)
            .field("max_actions", &self.max_actions)
            .field("max_sessions", &self.max_sessions)
            .field("max_stored_actions", &self.max_stored_actions)
            .finish_non_exhaustive()
    }
}

/// Builds a [`ContextStore`].
pub struct ContextStoreBuilder {
    include_summary: bool,
    include_actions: bool,
    lookback: Option<Duration>,
    max_actions: Option<usize>,
    max_sessions: Option<usize>,
    max_stored_actions: usize,
    clock: Clock,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl ContextStoreBuilder {
    /// Whether context shows the latest summary by default (default true).
    pub fn include_summary(mut self, yes: bool) -> Self {
        self.include_summary = yes;
        self
    }

    /// Whether context shows the recent actions by default (default true).
    pub fn include_actions(mut self, yes: bool) -> Self {
        self.include_actions = yes;
        self
    }

    /// Only actions forwarded within this window are shown, and older payloads are
    /// evicted on each `add` (default: no window). Must be positive.
    pub fn lookback(mut self, window: Duration) -> Self {
        self.lookback = Some(window);
        self
    }

    /// At most this many of the most recent actions are shown (default: no cap; at
    /// least 1).
    pub fn max_actions(mut self, n: usize) -> Self {
        self.max_actions = Some(n);
        self
    }

    /// The most sessions kept; the least recently used is forgotten beyond that
    /// (default: no bound; at least 1).
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = Some(n);
        self
    }

    /// The most actions kept per session, oldest payloads evicted first (default
    /// [`DEFAULT_MAX_STORED_ACTIONS`]; at least 1). Bounds memory when no lookback is
    /// set.
    pub fn max_stored_actions(mut self, n: usize) -> Self {
        self.max_stored_actions = n;
        self
    }

    /// The clock `lookback` is measured with, in Unix seconds (default: the system
    /// clock); for tests.
    pub fn clock(mut self, clock: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the settings and builds the store.
    pub fn build(self) -> Result<ContextStore, Error> {
        let invalid = |m: &str| Err(Error::InvalidConfig(m.to_owned()));
        if self.lookback.is_some_and(|d| d.is_zero()) {
            return invalid("context store lookback must be more than 0 seconds");
        }
        if self.max_actions == Some(0) {
            return invalid("context store max_actions must be at least 1 (or unset)");
        }
        if self.max_sessions == Some(0) {
            return invalid("context store max_sessions must be at least 1 (or unset)");
        }
        if self.max_stored_actions == 0 {
            return invalid("context store max_stored_actions must be at least 1");
        }
        Ok(ContextStore {
            include_summary: self.include_summary,
            include_actions: self.include_actions,
            lookback: self.lookback,
            max_actions: self.max_actions,
            max_sessions: self.max_sessions,
            max_stored_actions: self.max_stored_actions,
            clock: self.clock,
            state: Mutex::default(),
        })
    }
}

impl ContextStore {
    /// Starts a store with the defaults: summary and actions shown, no lookback, no
    /// action cap, no session bound.
    pub fn builder() -> ContextStoreBuilder {
        ContextStoreBuilder {
            include_summary: true,
            include_actions: true,
            lookback: None,
            max_actions: None,
            max_sessions: None,
            max_stored_actions: DEFAULT_MAX_STORED_ACTIONS,
            clock: Arc::new(unix_now),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The default lookback window.
    pub fn lookback(&self) -> Option<Duration> {
        self.lookback
    }

    /// The default action cap.
    pub fn max_actions(&self) -> Option<usize> {
        self.max_actions
    }

    /// The session bound.
    pub fn max_sessions(&self) -> Option<usize> {
        self.max_sessions
    }

    /// Whether the summary is shown by default.
    pub fn include_summary(&self) -> bool {
        self.include_summary
    }

    /// Whether the actions are shown by default.
    pub fn include_actions(&self) -> bool {
        self.include_actions
    }

    /// The most actions kept per session.
    pub fn max_stored_actions(&self) -> usize {
        self.max_stored_actions
    }

    /// Stores an actions payload for its product's session, evicting what is older
    /// than the lookback and beyond `max_stored_actions`.
    pub fn add(&self, payload: &ActionsPayload) {
        let now = (self.clock)();
        let key = bucket_id(payload.product_id.as_deref(), payload.session_id.as_deref());
        let at = payload.forwarded_at.unwrap_or(now);
        let mut state = self.lock();
        state.touch(&key, self.max_sessions);
        let bucket = state.buckets.entry(key).or_default();
        bucket.actions += payload.actions.len();
        bucket.payloads.push(Stored {
            payload: payload.clone(),
            at,
        });
        let cutoff = self.lookback.map(|w| now - w.as_secs_f64());
        let mut first = 0;
        while first + 1 < bucket.payloads.len() {
            let oldest = &bucket.payloads[first];
            let stale = cutoff.is_some_and(|c| oldest.at < c);
            let over = bucket.actions > self.max_stored_actions;
            if !stale && !over {
                break;
            }
            bucket.actions -= oldest.payload.actions.len();
            first += 1;
        }
        bucket.payloads.drain(..first);
        if cutoff.is_some_and(|c| bucket.payloads.last().is_some_and(|p| p.at < c)) {
            // The newest is stale too (a late replay): nothing of it is context.
            bucket.payloads.clear();
            bucket.actions = 0;
        }
    }

    /// Stores the latest summary of a session (replacing the previous one); the
    /// session's actions stay, since they may be newer than what it covers.
    pub fn set_summary(&self, session_id: &str, summary: &str) {
        let mut state = self.lock();
        state.touch(session_id, self.max_sessions);
        state
            .summaries
            .insert(session_id.to_owned(), summary.to_owned());
    }

    /// The session's context: `Summary: <summary>` and `Recent activity:` with the
    /// numbered actions, separated by a blank line; empty when there is none.
    pub fn get(&self, session_id: &str, query: &ContextQuery<'_>) -> String {
        let include_summary = query.include_summary.unwrap_or(self.include_summary);
        let include_actions = query.include_actions.unwrap_or(self.include_actions);
        let lookback = query.lookback.unwrap_or(self.lookback);
        let max_actions = query.max_actions.unwrap_or(self.max_actions);
        let cutoff = lookback.map(|w| (self.clock)() - w.as_secs_f64());

        let mut state = self.lock();
        let summary = if include_summary {
            state.summaries.get(session_id).cloned().unwrap_or_default()
        } else {
            String::new()
        };
        let mut recent: Vec<ActionsPayload> = Vec::new();
        if include_actions {
            let key = bucket_id(query.product_id, Some(session_id));
            let mut bucket = state.buckets.get(&key).filter(|b| !b.payloads.is_empty());
            if bucket.is_none() && query.product_id.is_none_or(|p| p.trim().is_empty()) {
                bucket = self.scoped_fallback(&mut state, session_id);
            }
            if let Some(bucket) = bucket {
                recent = bucket
                    .payloads
                    .iter()
                    .filter(|p| cutoff.is_none_or(|c| p.at >= c))
                    .map(|p| p.payload.clone())
                    .collect();
            }
        }
        drop(state);
        if let Some(max) = max_actions {
            keep_last_actions(&mut recent, max);
        }
        let actions = format_actions(&recent);
        let mut parts = Vec::with_capacity(2);
        if !summary.is_empty() {
            parts.push(format!("Summary: {summary}"));
        }
        if !actions.is_empty() {
            parts.push(format!("Recent activity:\n{actions}"));
        }
        parts.join("\n\n")
    }

    /// A read without a product finds the session's actions under a product when
    /// exactly one product has them (and warns once per session: pass the product);
    /// with several, it finds none and warns.
    fn scoped_fallback<'s>(&self, state: &'s mut State, session_id: &str) -> Option<&'s Bucket> {
        let suffix = format!("{BUCKET_SEPARATOR}{session_id}");
        let scoped: Vec<&String> = state
            .buckets
            .iter()
            .filter(|(k, b)| k.ends_with(&suffix) && !b.payloads.is_empty())
            .map(|(k, _)| k)
            .collect();
        let found = (scoped.len() == 1).then(|| scoped[0].clone());
        let count = scoped.len();
        if count > 0 && !state.warned.contains(session_id) {
            if count == 1 {
                warn!(
                    session_id,
                    "context_store: read without a product_id fell back to the session's only product; pass product_id to read it directly"
                );
            } else {
                warn!(
                    session_id,
                    products = count,
                    "context_store: read without a product_id finds the session under several products; pass product_id to choose"
                );
            }
            if state.warned.len() >= MAX_WARNED {
                state.warned.clear();
            }
            state.warned.insert(session_id.to_owned());
        }
        found.and_then(|k| state.buckets.get(&k))
    }

    /// `query` with the session's context in front:
    /// `[Session context]\n<context>\n\n[Query]\n<query>`; the query unchanged when
    /// there is no context.
    pub fn enrich(&self, session_id: &str, query: &str, options: &ContextQuery<'_>) -> String {
        let context = self.get(session_id, options);
        if context.is_empty() {
            return query.to_owned();
        }
        format!("[Session context]\n{context}\n\n[Query]\n{query}")
    }

    /// Forgets a session: its summary, and its actions under `product_id` (or
    /// without a product), both.
    pub fn reset(&self, session_id: &str, product_id: Option<&str>) {
        let key = bucket_id(product_id, Some(session_id));
        let mut state = self.lock();
        state.forget(&key);
        if key != session_id {
            state.forget(session_id);
        }
    }

    /// Sessions with stored actions or a summary, sorted (product-scoped ones once
    /// per session).
    pub fn active_sessions(&self) -> Vec<String> {
        let state = self.lock();
        let mut sessions: Vec<String> = state
            .buckets
            .iter()
            .filter(|(_, b)| !b.payloads.is_empty())
            .map(|(k, _)| match k.split_once(BUCKET_SEPARATOR) {
                Some((_, session)) => session.to_owned(),
                None => k.clone(),
            })
            .chain(state.summaries.keys().cloned())
            .collect();
        sessions.sort_unstable();
        sessions.dedup();
        sessions
    }
}

/// Keeps only the last `max` actions across `payloads` (the oldest payload kept may
/// lose its first actions).
fn keep_last_actions(payloads: &mut Vec<ActionsPayload>, max: usize) {
    let mut remaining = max;
    let mut first = payloads.len();
    while first > 0 && remaining > 0 {
        let n = payloads[first - 1].actions.len();
        first -= 1;
        if n > remaining {
            let p = &mut payloads[first];
            p.actions.drain(..n - remaining);
            remaining = 0;
        } else {
            remaining -= n;
        }
    }
    payloads.drain(..first);
}
