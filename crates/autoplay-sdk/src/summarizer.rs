//! Client-side session summaries: accumulate a session's actions and, every
//! `threshold` actions, ask your LLM for a prose summary.
//!
//! [`SessionSummarizer`] takes a blocking LLM call, [`AsyncSessionSummarizer`] an
//! async one; both share the accumulation and prompt logic here.
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

use std::collections::HashMap;
use std::fmt::{Display, Write as _};
use std::future::Future;
use std::sync::Mutex;
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

type SummaryCallback = Box<dyn Fn(&str, &str) + Send + Sync>;
type Llm = Box<dyn Fn(&str) -> Result<String, String> + Send + Sync>;
type AsyncSummaryCallback = Box<dyn Fn(String, String) -> BoxFuture<'static, ()> + Send + Sync>;

/// A session's actions waiting for a summary.
#[derive(Debug, Default)]
struct Pending {
    product_id: Option<CompactString>,
    lines: Vec<String>,
}

/// What is ready to summarise.
#[derive(Debug)]
struct Batch {
    session_id: String,
    product_id: Option<CompactString>,
    lines: Vec<String>,
}

/// The per-session accumulation both summarizers share.
#[derive(Debug)]
struct Accumulator {
    threshold: usize,
    prompt: String,
    sessions: Mutex<HashMap<String, Pending>>,
}

impl Accumulator {
    fn new(threshold: usize, prompt: String) -> Result<Self, Error> {
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
        Ok(Self {
            threshold,
            prompt,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a payload's actions; the session's whole batch once it reaches the
    /// threshold.
    fn push(&self, payload: &ActionsPayload) -> Option<Batch> {
        let session_id = payload.session_id.as_deref().unwrap_or(UNKNOWN_SESSION);
        let mut sessions = self.lock();
        let pending = sessions.entry(session_id.to_owned()).or_default();
        if payload.product_id.is_some() {
            pending.product_id.clone_from(&payload.product_id);
        }
        pending
            .lines
            .extend(payload.actions.iter().map(|a| a.to_text()));
        if pending.lines.len() < self.threshold {
            return None;
        }
        let pending = sessions.remove(session_id)?;
        Some(Batch {
            session_id: session_id.to_owned(),
            product_id: pending.product_id,
            lines: pending.lines,
        })
    }

    /// Takes a session's pending actions whatever their number.
    fn take(&self, session_id: &str) -> Option<Batch> {
        let pending = self.lock().remove(session_id)?;
        (!pending.lines.is_empty()).then(|| Batch {
            session_id: session_id.to_owned(),
            product_id: pending.product_id,
            lines: pending.lines,
        })
    }

    /// Puts a batch back after the LLM failed, so the next summary covers it; at
    /// most a few thresholds' worth are kept, so a failing LLM cannot grow memory.
    fn restore(&self, batch: Batch) {
        let mut sessions = self.lock();
        let pending = sessions.entry(batch.session_id).or_default();
        let mut lines = batch.lines;
        lines.append(&mut pending.lines);
        let keep = self.threshold.saturating_mul(4);
        if lines.len() > keep {
            lines.drain(..lines.len() - keep);
        }
        pending.lines = lines;
        if pending.product_id.is_none() {
            pending.product_id = batch.product_id;
        }
    }

    fn pending(&self, session_id: &str) -> usize {
        self.lock().get(session_id).map_or(0, |p| p.lines.len())
    }

    fn sessions(&self) -> usize {
        self.lock().len()
    }

    /// The summary from the LLM's answer; after a failure, logs it and keeps the
    /// batch pending.
    fn conclude(&self, batch: Batch, answer: Result<String, String>) -> Option<SummaryPayload> {
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
                warn!(session_id = %batch.session_id, error = %e, "LLM summary failed; the actions stay pending");
                self.restore(batch);
                None
            }
        }
    }

    fn render(&self, batch: &Batch) -> String {
        let mut list = String::new();
        for (i, line) in batch.lines.iter().enumerate() {
            if i > 0 {
                list.push('\n');
            }
            let _ = write!(list, "{}. {line}", i + 1);
        }
        self.prompt.replace(ACTIONS_PLACEHOLDER, &list)
    }
}

impl Batch {
    fn into_summary(self, text: String) -> SummaryPayload {
        SummaryPayload {
            product_id: self.product_id,
            session_id: Some(self.session_id.into()),
            summary: text.trim().into(),
            replaces: self.lines.len() as u64,
            ts: None,
            forwarded_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs_f64()),
        }
    }
}

/// Summarises sessions with a blocking LLM call. Thread-safe: share it in an `Arc`
/// and call [`SessionSummarizer::add`] from `on_actions`.
pub struct SessionSummarizer {
    acc: Accumulator,
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

    /// How many actions of a session wait for a summary.
    pub fn pending(&self, session_id: &str) -> usize {
        self.acc.pending(session_id)
    }

    /// How many sessions have actions waiting.
    pub fn session_count(&self) -> usize {
        self.acc.sessions()
    }

    fn summarise(&self, batch: Batch) -> Option<SummaryPayload> {
        let prompt = self.acc.render(&batch);
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

    /// Called with `(session_id, summary)` after each summary.
    pub fn on_summary(mut self, f: impl Fn(&str, &str) + Send + Sync + 'static) -> Self {
        self.on_summary = Some(Box::new(f));
        self
    }

    /// Checks the settings and builds the summarizer.
    pub fn build(self) -> Result<SessionSummarizer, Error> {
        Ok(SessionSummarizer {
            acc: Accumulator::new(self.threshold, self.prompt)?,
            llm: self.llm,
            on_summary: self.on_summary,
        })
    }
}

type AsyncLlm = Box<dyn Fn(String) -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// [`SessionSummarizer`] with an async LLM call and an async `on_summary`.
pub struct AsyncSessionSummarizer {
    acc: Accumulator,
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

    /// How many actions of a session wait for a summary.
    pub fn pending(&self, session_id: &str) -> usize {
        self.acc.pending(session_id)
    }

    /// How many sessions have actions waiting.
    pub fn session_count(&self) -> usize {
        self.acc.sessions()
    }

    async fn summarise(&self, batch: Batch) -> Option<SummaryPayload> {
        let prompt = self.acc.render(&batch);
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
            acc: Accumulator::new(self.threshold, self.prompt)?,
            llm: self.llm,
            on_summary: self.on_summary,
        })
    }
}
