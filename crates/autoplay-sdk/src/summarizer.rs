//! Client-side session summaries: accumulate a session's actions and, every
//! `threshold` actions, ask your LLM for a prose summary.
//!
//! [`SessionSummarizer`] takes a blocking LLM call, [`AsyncSessionSummarizer`] an
//! async one; both are built on [`SessionAccumulator`], which callers that make the
//! LLM call themselves (a binding's event loop, a job queue) use directly: `push`
//! hands out the batch that is due, `prompt` renders it, `conclude` turns the answer
//! into the summary or keeps the batch for the next try after a failure.
//!
//! ```
//! use autoplay_sdk::summarizer::SessionSummarizer;
//! use autoplay_sdk::{ActionsPayload, SlimAction};
//!
//! let summarizer = SessionSummarizer::builder(|prompt: &str| {
//!     // call your LLM here
//!     Ok::<_, std::convert::Infallible>(format!("{} lines of actions", prompt.lines().count()))
//! })
//! .threshold(2)
//! .prompt("Summarise:\n{actions}")
//! .build()?;
//!
//! let payload = ActionsPayload {
//!     session_id: Some("ps_1".into()),
//!     actions: vec![SlimAction::default(), SlimAction::default()],
//!     ..Default::default()
//! };
//! let summary = summarizer.add(&payload).expect("the threshold was reached");
//! assert_eq!(summary.replaces, 2);
//! # Ok::<(), autoplay_sdk::Error>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt::{Display, Write as _};
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use tracing::{debug, warn};

use crate::error::Error;
use crate::models::{ActionsPayload, CompactString, SummaryPayload};

/// The default number of actions per summary.
pub const DEFAULT_THRESHOLD: usize = 10;

/// The placeholder the prompt must contain; the numbered actions replace it.
pub const ACTIONS_PLACEHOLDER: &str = "{actions}";

/// The default prompt.
pub const DEFAULT_PROMPT: &str = "Summarise what this user did in a web app, in one to three \
sentences of plain prose, for an assistant that will help them next.\n\nActions:\n{actions}";

/// The session key for payloads without a session id.
const UNKNOWN_SESSION: &str = "unknown";

/// How many thresholds' worth of actions a session keeps after failed LLM calls, so
/// that an LLM that keeps failing cannot grow memory.
const RESTORE_THRESHOLDS: usize = 4;

type SummaryCallback = Box<dyn Fn(&str, &str) + Send + Sync>;
type Llm = Box<dyn Fn(&str) -> Result<String, String> + Send + Sync>;
type AsyncSummaryCallback = Box<dyn Fn(String, String) -> BoxFuture<'static, ()> + Send + Sync>;

/// The numbered action list the default prompt and the context store show: one
/// `N. <action text>` line per action of `payloads`, numbered across them.
pub fn format_actions<'a>(payloads: impl IntoIterator<Item = &'a ActionsPayload>) -> String {
    let mut list = String::new();
    let actions = payloads.into_iter().flat_map(|p| p.actions.iter());
    for (i, action) in actions.enumerate() {
        if i > 0 {
            list.push('\n');
        }
        let _ = write!(list, "{}. {}", i + 1, action.to_text());
    }
    list
}

/// A session's actions waiting for a summary.
#[derive(Debug, Default)]
struct Pending {
    product_id: Option<CompactString>,
    payloads: Vec<ActionsPayload>,
    actions: usize,
    /// Its place in the least-recently-used order (a key of `Sessions::order`).
    used: u64,
}

impl Pending {
    fn append(&mut self, payload: ActionsPayload) {
        if payload.product_id.is_some() {
            self.product_id.clone_from(&payload.product_id);
        }
        self.actions += payload.actions.len();
        self.payloads.push(payload);
    }
}

/// Pending sessions, with their least-recently-used order for `max_sessions`.
#[derive(Debug, Default)]
struct Sessions {
    map: HashMap<String, Pending>,
    order: BTreeMap<u64, String>,
    tick: u64,
}

impl Sessions {
    /// The session's entry, made most recently used; a new one evicts the least
    /// recently used session beyond `max_sessions`.
    fn touch(&mut self, session_id: &str, max_sessions: Option<usize>) -> &mut Pending {
        self.tick += 1;
        let tick = self.tick;
        if let Some(pending) = self.map.get(session_id) {
            self.order.remove(&pending.used);
        } else {
            if let Some(max) = max_sessions {
                while self.map.len() >= max.max(1) {
                    let Some((_, oldest)) = self.order.pop_first() else {
                        break;
                    };
                    self.map.remove(&oldest);
                    debug!(session_id = %oldest, "summarizer: evicted the least recently used session (max_sessions)");
                }
            }
            self.map.insert(session_id.to_owned(), Pending::default());
        }
        self.order.insert(tick, session_id.to_owned());
        let pending = self.map.get_mut(session_id).expect("inserted above");
        pending.used = tick;
        pending
    }

    fn remove(&mut self, session_id: &str) -> Option<Pending> {
        let pending = self.map.remove(session_id)?;
        self.order.remove(&pending.used);
        Some(pending)
    }
}

/// A session's actions due for a summary, taken out of a [`SessionAccumulator`]:
/// render its prompt, ask the LLM, then hand the answer to
/// [`SessionAccumulator::conclude`] (which puts the batch back when the LLM failed).
#[derive(Debug, Clone)]
pub struct SummaryBatch {
    session_id: String,
    product_id: Option<CompactString>,
    payloads: Vec<ActionsPayload>,
    actions: usize,
}

impl SummaryBatch {
    /// The session (`"unknown"` for payloads without one).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The payloads the batch covers, oldest first.
    pub fn payloads(&self) -> &[ActionsPayload] {
        &self.payloads
    }

    /// How many actions the batch covers (the summary's `replaces`).
    pub fn action_count(&self) -> usize {
        self.actions
    }

    fn into_summary(self, text: String) -> SummaryPayload {
        SummaryPayload {
            product_id: self.product_id,
            session_id: Some(self.session_id.into()),
            summary: text.trim().into(),
            replaces: self.actions as u64,
            ts: None,
            forwarded_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs_f64()),
        }
    }
}

/// The per-session accumulation of both summarizers, for callers that make the LLM
/// call themselves (a binding's event loop, a job queue): [`push`](Self::push)
/// returns the batch once a session reaches the threshold,
/// [`prompt`](Self::prompt) renders it, and [`conclude`](Self::conclude) turns the
/// LLM's answer into the summary, or keeps the batch for the next try when the LLM
/// failed. Thread-safe; the LLM call happens outside its lock.
#[derive(Debug)]
pub struct SessionAccumulator {
    threshold: usize,
    prompt: String,
    max_sessions: Option<usize>,
    sessions: Mutex<Sessions>,
}

impl SessionAccumulator {
    /// An accumulator summarising every `threshold` actions (at least 1) with
    /// `prompt` (it must contain `{actions}`), tracking at most `max_sessions`
    /// sessions (the least recently used is forgotten beyond that; `None`: no
    /// bound).
    pub fn new(
        threshold: usize,
        prompt: impl Into<String>,
        max_sessions: Option<usize>,
    ) -> Result<Self, Error> {
        let prompt = prompt.into();
        if threshold == 0 {
            return Err(Error::InvalidConfig(
                "summarizer threshold must be at least 1 action".into(),
            ));
        }
        if !prompt.contains(ACTIONS_PLACEHOLDER) {
            return Err(Error::InvalidConfig(format!(
                "summarizer prompt must contain the {ACTIONS_PLACEHOLDER} placeholder"
            )));
        }
        if max_sessions == Some(0) {
            return Err(Error::InvalidConfig(
                "summarizer max_sessions must be at least 1 (or unset)".into(),
            ));
        }
        Ok(Self {
            threshold,
            prompt,
            max_sessions,
            sessions: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Sessions> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Actions per summary.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The prompt template.
    pub fn prompt_template(&self) -> &str {
        &self.prompt
    }

    /// The most sessions tracked at once, if bounded.
    pub fn max_sessions(&self) -> Option<usize> {
        self.max_sessions
    }

    /// Adds a payload to its session; the session's whole batch once it has
    /// `threshold` actions or more (the session then starts afresh).
    pub fn push(&self, payload: &ActionsPayload) -> Option<SummaryBatch> {
        let session_id = payload.session_id.as_deref().unwrap_or(UNKNOWN_SESSION);
        let mut sessions = self.lock();
        let pending = sessions.touch(session_id, self.max_sessions);
        pending.append(payload.clone());
        if pending.actions < self.threshold {
            return None;
        }
        let pending = sessions.remove(session_id)?;
        Some(batch_of(session_id, pending))
    }

    /// Takes a session's pending actions whatever their number; `None` when it has
    /// none.
    pub fn take(&self, session_id: &str) -> Option<SummaryBatch> {
        let pending = self.lock().remove(session_id)?;
        (!pending.payloads.is_empty()).then(|| batch_of(session_id, pending))
    }

    /// Takes every session's pending actions (least recently used first).
    pub fn take_all(&self) -> Vec<SummaryBatch> {
        let mut sessions = self.lock();
        let order: Vec<String> = std::mem::take(&mut sessions.order).into_values().collect();
        order
            .into_iter()
            .filter_map(|id| {
                let pending = sessions.map.remove(&id)?;
                (!pending.payloads.is_empty()).then(|| batch_of(&id, pending))
            })
            .collect()
    }

    /// The prompt for a batch, its actions numbered by [`format_actions`].
    pub fn prompt(&self, batch: &SummaryBatch) -> String {
        self.prompt_with(&format_actions(&batch.payloads))
    }

    /// The prompt with `actions` (a custom rendering of a batch) in place of
    /// `{actions}`.
    pub fn prompt_with(&self, actions: &str) -> String {
        self.prompt.replace(ACTIONS_PLACEHOLDER, actions)
    }

    /// The summary from the LLM's answer (trimmed; `replaces` is the batch's action
    /// count). After a failure it logs it, puts the batch back in front of whatever
    /// the session received meanwhile (so the next summary covers it; at most four
    /// thresholds' worth of actions are kept) and returns `None`.
    pub fn conclude(
        &self,
        batch: SummaryBatch,
        answer: Result<String, String>,
    ) -> Option<SummaryPayload> {
        match answer {
            Ok(text) => {
                let summary = batch.into_summary(text);
                debug!(
                    session_id = summary.session_id.as_deref(),
                    replaces = summary.replaces,
                    "session summarised"
                );
                Some(summary)
            }
            Err(e) => {
                warn!(session_id = %batch.session_id, error = %e, "LLM summary failed; the actions stay pending for the next try");
                self.restore(batch);
                None
            }
        }
    }

    /// Puts a batch back in front of the session's pending actions.
    pub fn restore(&self, batch: SummaryBatch) {
        let mut sessions = self.lock();
        let pending = sessions.touch(&batch.session_id, self.max_sessions);
        let mut payloads = batch.payloads;
        payloads.append(&mut pending.payloads);
        let mut actions = batch.actions + pending.actions;
        let keep = self.threshold.saturating_mul(RESTORE_THRESHOLDS);
        let mut first = 0;
        while actions > keep && first + 1 < payloads.len() {
            actions -= payloads[first].actions.len();
            first += 1;
        }
        payloads.drain(..first);
        pending.payloads = payloads;
        pending.actions = actions;
        if pending.product_id.is_none() {
            pending.product_id = batch.product_id;
        }
    }

    /// A session's pending payloads, oldest first (copies).
    pub fn pending_payloads(&self, session_id: &str) -> Vec<ActionsPayload> {
        self.lock()
            .map
            .get(session_id)
            .map(|p| p.payloads.clone())
            .unwrap_or_default()
    }

    /// A session's pending actions as the numbered list of [`format_actions`]
    /// (empty when it has none): partial context before the threshold.
    pub fn context(&self, session_id: &str) -> String {
        let sessions = self.lock();
        sessions
            .map
            .get(session_id)
            .map(|p| format_actions(&p.payloads))
            .unwrap_or_default()
    }

    /// Forgets a session's pending actions without summarising them.
    pub fn reset(&self, session_id: &str) {
        self.lock().remove(session_id);
    }

    /// Forgets every session's pending actions.
    pub fn clear(&self) {
        *self.lock() = Sessions::default();
    }

    /// How many actions of a session wait for a summary.
    pub fn pending(&self, session_id: &str) -> usize {
        self.lock().map.get(session_id).map_or(0, |p| p.actions)
    }

    /// Sessions with actions pending, least recently used first.
    pub fn active_sessions(&self) -> Vec<String> {
        let sessions = self.lock();
        sessions
            .order
            .values()
            .filter(|id| sessions.map.get(*id).is_some_and(|p| p.actions > 0))
            .cloned()
            .collect()
    }

    /// How many sessions have actions waiting.
    pub fn session_count(&self) -> usize {
        self.lock().map.len()
    }
}

fn batch_of(session_id: &str, pending: Pending) -> SummaryBatch {
    SummaryBatch {
        session_id: session_id.to_owned(),
        product_id: pending.product_id,
        payloads: pending.payloads,
        actions: pending.actions,
    }
}

/// Summarises sessions with a blocking LLM call. Thread-safe: share it in an `Arc`
/// and call [`SessionSummarizer::add`] from `on_actions`.
pub struct SessionSummarizer {
    acc: SessionAccumulator,
    llm: Llm,
    on_summary: Option<SummaryCallback>,
}

impl std::fmt::Debug for SessionSummarizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSummarizer")
            .field("acc", &self.acc)
            .finish_non_exhaustive()
    }
}

/// Builds a [`SessionSummarizer`].
pub struct SessionSummarizerBuilder {
    llm: Llm,
    threshold: usize,
    prompt: String,
    max_sessions: Option<usize>,
    on_summary: Option<SummaryCallback>,
}

impl SessionSummarizer {
    /// Starts a summarizer around `llm`, which takes the prompt and returns the
    /// summary.
    pub fn builder<F, E>(llm: F) -> SessionSummarizerBuilder
    where
        F: Fn(&str) -> Result<String, E> + Send + Sync + 'static,
        E: Display,
    {
        SessionSummarizerBuilder {
            llm: Box::new(move |prompt| llm(prompt).map_err(|e| e.to_string())),
            threshold: DEFAULT_THRESHOLD,
            prompt: DEFAULT_PROMPT.to_owned(),
            max_sessions: None,
            on_summary: None,
        }
    }

    /// Adds a payload's actions to its session; when the session reaches the
    /// threshold, summarises it, calls `on_summary(session_id, summary)` and returns
    /// the summary. When the LLM fails, the error is logged, the actions stay
    /// pending for the next summary, and `None` is returned.
    pub fn add(&self, payload: &ActionsPayload) -> Option<SummaryPayload> {
        let batch = self.acc.push(payload)?;
        self.summarise(batch)
    }

    /// Summarises a session's pending actions now, below the threshold too (at
    /// session end, say).
    pub fn flush(&self, session_id: &str) -> Option<SummaryPayload> {
        let batch = self.acc.take(session_id)?;
        self.summarise(batch)
    }

    /// The accumulation underneath: pending actions, context, reset.
    pub fn accumulator(&self) -> &SessionAccumulator {
        &self.acc
    }

    /// How many actions of a session wait for a summary.
    pub fn pending(&self, session_id: &str) -> usize {
        self.acc.pending(session_id)
    }

    /// How many sessions have actions waiting.
    pub fn session_count(&self) -> usize {
        self.acc.session_count()
    }

    fn summarise(&self, batch: SummaryBatch) -> Option<SummaryPayload> {
        let prompt = self.acc.prompt(&batch);
        // The LLM is called without the lock: other sessions go on meanwhile.
        let summary = self.acc.conclude(batch, (self.llm)(&prompt))?;
        if let Some(on_summary) = &self.on_summary {
            on_summary(
                summary.session_id.as_deref().unwrap_or(UNKNOWN_SESSION),
                &summary.summary,
            );
        }
        Some(summary)
    }
}

impl SessionSummarizerBuilder {
    /// Actions per summary (default 10, at least 1).
    pub fn threshold(mut self, threshold: usize) -> Self {
        self.threshold = threshold;
        self
    }

    /// The prompt; it must contain `{actions}`, which becomes the numbered list of
    /// the session's actions.
    pub fn prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt = prompt.into();
        self
    }

    /// The most sessions tracked at once (the least recently used is forgotten
    /// beyond that; default: no bound).
    pub fn max_sessions(mut self, max_sessions: usize) -> Self {
        self.max_sessions = Some(max_sessions);
        self
    }

    /// Called with `(session_id, summary)` after each summary.
    pub fn on_summary(mut self, f: impl Fn(&str, &str) + Send + Sync + 'static) -> Self {
        self.on_summary = Some(Box::new(f));
        self
    }

    /// Checks the settings and builds the summarizer.
    pub fn build(self) -> Result<SessionSummarizer, Error> {
        Ok(SessionSummarizer {
            acc: SessionAccumulator::new(self.threshold, self.prompt, self.max_sessions)?,
            llm: self.llm,
            on_summary: self.on_summary,
        })
    }
}

type AsyncLlm = Box<dyn Fn(String) -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// [`SessionSummarizer`] with an async LLM call and an async `on_summary`.
pub struct AsyncSessionSummarizer {
    acc: SessionAccumulator,
    llm: AsyncLlm,
    on_summary: Option<AsyncSummaryCallback>,
}

impl std::fmt::Debug for AsyncSessionSummarizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncSessionSummarizer")
            .field("acc", &self.acc)
            .finish_non_exhaustive()
    }
}

/// Builds an [`AsyncSessionSummarizer`].
pub struct AsyncSessionSummarizerBuilder {
    llm: AsyncLlm,
    threshold: usize,
    prompt: String,
    max_sessions: Option<usize>,
    on_summary: Option<AsyncSummaryCallback>,
}

impl AsyncSessionSummarizer {
    /// Starts a summarizer around an async `llm(prompt) -> summary`.
    pub fn builder<F, Fut, E>(llm: F) -> AsyncSessionSummarizerBuilder
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: Display,
    {
        AsyncSessionSummarizerBuilder {
            llm: Box::new(move |prompt| {
                let fut = llm(prompt);
                Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
            }),
            threshold: DEFAULT_THRESHOLD,
            prompt: DEFAULT_PROMPT.to_owned(),
            max_sessions: None,
            on_summary: None,
        }
    }

    /// As [`SessionSummarizer::add`].
    pub async fn add(&self, payload: &ActionsPayload) -> Option<SummaryPayload> {
        let batch = self.acc.push(payload)?;
        self.summarise(batch).await
    }

    /// As [`SessionSummarizer::flush`].
    pub async fn flush(&self, session_id: &str) -> Option<SummaryPayload> {
        let batch = self.acc.take(session_id)?;
        self.summarise(batch).await
    }

    /// The accumulation underneath: pending actions, context, reset.
    pub fn accumulator(&self) -> &SessionAccumulator {
        &self.acc
    }

    /// How many actions of a session wait for a summary.
    pub fn pending(&self, session_id: &str) -> usize {
        self.acc.pending(session_id)
    }

    /// How many sessions have actions waiting.
    pub fn session_count(&self) -> usize {
        self.acc.session_count()
    }

    async fn summarise(&self, batch: SummaryBatch) -> Option<SummaryPayload> {
        let prompt = self.acc.prompt(&batch);
        let summary = self.acc.conclude(batch, (self.llm)(prompt).await)?;
        if let Some(on_summary) = &self.on_summary {
            let session = summary.session_id.as_deref().unwrap_or(UNKNOWN_SESSION);
            on_summary(session.to_owned(), summary.summary.to_string()).await;
        }
        Some(summary)
    }
}

impl AsyncSessionSummarizerBuilder {
    /// Actions per summary (default 10, at least 1).
    pub fn threshold(mut self, threshold: usize) -> Self {
        self.threshold = threshold;
        self
    }

    /// The prompt; it must contain `{actions}`.
    pub fn prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt = prompt.into();
        self
    }

    /// As [`SessionSummarizerBuilder::max_sessions`].
    pub fn max_sessions(mut self, max_sessions: usize) -> Self {
        self.max_sessions = Some(max_sessions);
        self
    }

    /// Awaited with `(session_id, summary)` after each summary.
    pub fn on_summary<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(String, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_summary = Some(Box::new(move |session, summary| {
            Box::pin(f(session, summary))
        }));
        self
    }

    /// Checks the settings and builds the summarizer.
    pub fn build(self) -> Result<AsyncSessionSummarizer, Error> {
        Ok(AsyncSessionSummarizer {
            acc: SessionAccumulator::new(self.threshold, self.prompt, self.max_sessions)?,
            llm: self.llm,
            on_summary: self.on_summary,
        })
    }
}
