//! RAG pipelines: embed each payload's `to_text()` and upsert it into your vector
//! store, optionally replacing raw actions with session summaries.
//!
//! Wire [`RagPipeline::on_actions`] and [`RagPipeline::on_summary`] into a
//! [`ConnectorClient`](crate::ConnectorClient) (or the async pair into an
//! [`AsyncConnectorClient`](crate::AsyncConnectorClient)). Errors from `embed` and
//! `upsert` are logged and counted, never raised: one failed upsert must not stop
//! the stream.
//!
//! ```
//! use autoplay_sdk::rag::{RagMetadata, RagPipeline};
//! use autoplay_sdk::SummaryPayload;
//!
//! let pipeline = RagPipeline::new(
//!     |text: &str| Ok::<_, String>(vec![text.len() as f32]),
//!     |id: &str, vector: Vec<f32>, meta: RagMetadata| {
//!         println!("upsert {id} {vector:?} {}", meta.kind);
//!         Ok::<_, String>(())
//!     },
//! );
//! pipeline.on_summary(&SummaryPayload { summary: "Read the docs.".into(), ..Default::default() });
//! assert_eq!(pipeline.upserted_count(), 1);
//! ```

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::BoxFuture;
use tracing::warn;

use crate::models::{ActionsPayload, Event, SummaryPayload};
use crate::summarizer::{AsyncSessionSummarizer, SessionSummarizer};

/// The id used for payloads without a session id.
pub const UNKNOWN_SESSION: &str = "unknown";

/// What is upserted beside the vector (0.13.0's metadata).
#[derive(Debug, Clone, PartialEq)]
pub struct RagMetadata {
    /// The payload's session, `"unknown"` without one.
    pub session_id: String,
    /// `"ActionsPayload"`, `"SummaryPayload"`, or `"ClientSummary"` for a summary the
    /// pipeline's own summarizer made (the published package's `type`).
    pub kind: &'static str,
    /// The payload's `forwarded_at`, `0.0` when it had none (0.13.0 reads a missing
    /// one as `0.0`); `None` for a client summary.
    pub forwarded_at: Option<f64>,
}

/// `forwarded_at` as Python prints a float (`1700000000.5`, `1700000000.0`): the
/// published package's ids carry it that way.
fn python_float(value: f64) -> String {
    if value.is_nan() {
        "nan".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        // Debug is the shortest text that reads back the same, as Python's repr,
        // and keeps the `.0` of whole numbers.
        format!("{value:?}")
    }
}

/// What one upsert is made of.
struct Document {
    id: String,
    text: String,
    meta: RagMetadata,
}

impl Document {
    /// `{session}:actions:{forwarded_at}`, the payload's `to_text()`.
    fn actions(payload: &ActionsPayload) -> Self {
        Self::new(
            payload.session_id.as_deref(),
            "actions",
            payload.forwarded_at,
            payload.to_text(),
            "ActionsPayload",
        )
    }

    /// `{session}:summary:{forwarded_at}`, the payload's `to_text()`.
    fn summary(payload: &SummaryPayload) -> Self {
        Self::new(
            payload.session_id.as_deref(),
            "summary",
            payload.forwarded_at,
            payload.to_text(),
            "SummaryPayload",
        )
    }

    /// A summary of the pipeline's own summarizer: `{session}:client-summary`, one
    /// rolling document per session (each replaces the last), the summary's text.
    fn client_summary(payload: &SummaryPayload) -> Self {
        let session = payload.session_id.as_deref().unwrap_or(UNKNOWN_SESSION);
        Self {
            id: format!("{session}:client-summary"),
            text: payload.summary.to_string(),
            meta: RagMetadata {
                session_id: session.to_owned(),
                kind: "ClientSummary",
                forwarded_at: None,
            },
        }
    }

    fn new(
        session_id: Option<&str>,
        what: &str,
        forwarded_at: Option<f64>,
        text: String,
        kind: &'static str,
    ) -> Self {
        let session = session_id.unwrap_or(UNKNOWN_SESSION);
        // 0.13.0's payloads read a missing `forwarded_at` as 0.0, and so do its ids.
        let forwarded_at = forwarded_at.unwrap_or(0.0);
        Self {
            id: format!("{session}:{what}:{}", python_float(forwarded_at)),
            text,
            meta: RagMetadata {
                session_id: session.to_owned(),
                kind,
                forwarded_at: Some(forwarded_at),
            },
        }
    }
}

/// Counts shared by both pipelines.
#[derive(Debug, Default)]
struct Counters {
    upserted: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn record(&self, doc: &Document, result: Result<(), (&'static str, String)>) {
        match result {
            Ok(()) => {
                self.upserted.fetch_add(1, Ordering::Relaxed);
            }
            Err((stage, error)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                warn!(session_id = %doc.id, kind = doc.meta.kind, stage, %error, "RAG pipeline step failed; payload skipped");
            }
        }
    }
}

type Embed = Box<dyn Fn(&str) -> Result<Vec<f32>, String> + Send + Sync>;
type Upsert = Box<dyn Fn(&str, Vec<f32>, RagMetadata) -> Result<(), String> + Send + Sync>;

/// A blocking RAG pipeline.
pub struct RagPipeline {
    embed: Embed,
    upsert: Upsert,
    summarizer: Option<SessionSummarizer>,
    counters: Counters,
}

impl std::fmt::Debug for RagPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RagPipeline")
            .field("summarizer", &self.summarizer)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl RagPipeline {
    /// A pipeline calling `embed(text)` then `upsert(id, vector, metadata)`, with
    /// 0.13.0's ids: `{session}:actions:{forwarded_at}` and
    /// `{session}:summary:{forwarded_at}` (`forwarded_at` as Python prints it,
    /// `None` when missing; `unknown` without a session), and
    /// `{session}:client-summary` for the summaries of the pipeline's summarizer.
    pub fn new<E, U, EE, UE>(embed: E, upsert: U) -> Self
    where
        E: Fn(&str) -> Result<Vec<f32>, EE> + Send + Sync + 'static,
        U: Fn(&str, Vec<f32>, RagMetadata) -> Result<(), UE> + Send + Sync + 'static,
        EE: Display,
        UE: Display,
    {
        Self {
            embed: Box::new(move |text| embed(text).map_err(|e| e.to_string())),
            upsert: Box::new(move |id, vector, meta| {
                upsert(id, vector, meta).map_err(|e| e.to_string())
            }),
            summarizer: None,
            counters: Counters::default(),
        }
    }

    /// Sends actions through `summarizer` and embeds its summaries instead of the
    /// raw actions.
    pub fn with_summarizer(mut self, summarizer: SessionSummarizer) -> Self {
        self.summarizer = Some(summarizer);
        self
    }

    /// Handles an actions batch (wire it as `on_actions`).
    pub fn on_actions(&self, payload: &ActionsPayload) {
        match &self.summarizer {
            Some(summarizer) => {
                if let Some(summary) = summarizer.add(payload) {
                    self.on_client_summary(&summary);
                }
            }
            None => self.store(Document::actions(payload)),
        }
    }

    /// Upserts a summary made on the client (by a summarizer kept elsewhere, a
    /// binding's, say) as the session's rolling `{session}:client-summary`.
    pub fn on_client_summary(&self, summary: &SummaryPayload) {
        self.store(Document::client_summary(summary));
    }

    /// Handles a summary (wire it as `on_summary`).
    pub fn on_summary(&self, payload: &SummaryPayload) {
        self.store(Document::summary(payload));
    }

    /// Handles either payload.
    pub fn on_event(&self, event: &Event) {
        match event {
            Event::Actions(p) => self.on_actions(p),
            Event::Summary(p) => self.on_summary(p),
        }
    }

    /// Documents upserted so far.
    pub fn upserted_count(&self) -> u64 {
        self.counters.upserted.load(Ordering::Relaxed)
    }

    /// Documents lost to an `embed` or `upsert` error so far.
    pub fn failed_count(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    fn store(&self, doc: Document) {
        let result = (self.embed)(&doc.text)
            .map_err(|e| ("embed", e))
            .and_then(|vector| {
                (self.upsert)(&doc.id, vector, doc.meta.clone()).map_err(|e| ("upsert", e))
            });
        self.counters.record(&doc, result);
    }
}

type AsyncEmbed = Box<dyn Fn(String) -> BoxFuture<'static, Result<Vec<f32>, String>> + Send + Sync>;
type AsyncUpsert = Box<
    dyn Fn(String, Vec<f32>, RagMetadata) -> BoxFuture<'static, Result<(), String>> + Send + Sync,
>;

/// [`RagPipeline`] with async `embed` and `upsert`.
pub struct AsyncRagPipeline {
    embed: AsyncEmbed,
    upsert: AsyncUpsert,
    summarizer: Option<AsyncSessionSummarizer>,
    counters: Counters,
}

impl std::fmt::Debug for AsyncRagPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncRagPipeline")
            .field("summarizer", &self.summarizer)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl AsyncRagPipeline {
    /// A pipeline awaiting `embed(text)` then `upsert(id, vector, metadata)`.
    pub fn new<E, EF, EE, U, UF, UE>(embed: E, upsert: U) -> Self
    where
        E: Fn(String) -> EF + Send + Sync + 'static,
        EF: Future<Output = Result<Vec<f32>, EE>> + Send + 'static,
        EE: Display,
        U: Fn(String, Vec<f32>, RagMetadata) -> UF + Send + Sync + 'static,
        UF: Future<Output = Result<(), UE>> + Send + 'static,
        UE: Display,
    {
        Self {
            embed: Box::new(move |text| {
                let fut = embed(text);
                Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
            }),
            upsert: Box::new(move |id, vector, meta| {
                let fut = upsert(id, vector, meta);
                Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
            }),
            summarizer: None,
            counters: Counters::default(),
        }
    }

    /// As [`RagPipeline::with_summarizer`].
    pub fn with_summarizer(mut self, summarizer: AsyncSessionSummarizer) -> Self {
        self.summarizer = Some(summarizer);
        self
    }

    /// Handles an actions batch.
    pub async fn on_actions(&self, payload: &ActionsPayload) {
        match &self.summarizer {
            Some(summarizer) => {
                if let Some(summary) = summarizer.add(payload).await {
                    self.store(Document::client_summary(&summary)).await;
                }
            }
            None => self.store(Document::actions(payload)).await,
        }
    }

    /// Handles a summary.
    pub async fn on_summary(&self, payload: &SummaryPayload) {
        self.store(Document::summary(payload)).await;
    }

    /// Handles either payload.
    pub async fn on_event(&self, event: &Event) {
        match event {
            Event::Actions(p) => self.on_actions(p).await,
            Event::Summary(p) => self.on_summary(p).await,
        }
    }

    /// Documents upserted so far.
    pub fn upserted_count(&self) -> u64 {
        self.counters.upserted.load(Ordering::Relaxed)
    }

    /// Documents lost to an `embed` or `upsert` error so far.
    pub fn failed_count(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    async fn store(&self, doc: Document) {
        let result = match (self.embed)(doc.text.clone()).await {
            Ok(vector) => (self.upsert)(doc.id.clone(), vector, doc.meta.clone())
                .await
                .map_err(|e| ("upsert", e)),
            Err(e) => Err(("embed", e)),
        };
        self.counters.record(&doc, result);
    }
}
