//! Real-time event streaming client for Autoplay connectors.
//!
//! Subscribe to a connector's `GET /stream/{product_id}` Server-Sent-Events stream
//! and receive live UI actions and session summaries as typed payloads, to feed RAG
//! pipelines, analytics and automation.
//!
//! - [`ConnectorClient`]: blocking; callbacks run on worker threads.
//! - [`AsyncConnectorClient`]: tokio; async callbacks, or [`AsyncConnectorClient::events`]
//!   as a `Stream`.
//!
//! Both drive the same connection engine: `Last-Event-ID` resume, exponential backoff
//! with jitter that only adds (1 s doubling to 30 s; a server's `retry:` and
//! `Retry-After` obeyed as minimums up to a 10-minute ceiling), a liveness timeout,
//! and fatal statuses (401, 403, 404, 204) that end `run` with [`Error::FatalStatus`]
//! instead of retrying forever. Between the reader and your callbacks sits a queue
//! bounded by count and by bytes, with a choice of [`OverflowPolicy`]; `workers(n)`
//! scales slow callbacks while keeping each session in order. Whatever a server
//! sends, memory stays bounded: oversized events are skipped, over-long ids
//! ignored, and an id is stored once however many events carry it.
//!
//! ```no_run
//! use autoplay_sdk::ConnectorClient;
//!
//! ConnectorClient::builder("http://127.0.0.1:8080/stream/demo")
//!     .token("uk_live_...")
//!     .on_actions(|payload| println!("{}", payload.to_text()))
//!     .run()?;
//! # Ok::<(), autoplay_sdk::Error>(())
//! ```
//!
//! Logs go through `tracing` under the `autoplay_sdk` target; the token is never
//! logged, and URLs appear with their credentials redacted ([`redact_url`]).
#![warn(missing_docs)]

mod client;
mod config;
mod consumer;
mod dispatch;
mod engine;
mod error;
mod queue;
mod retry;

pub mod buffer;
pub mod context_store;
pub mod models;
pub mod rag;
pub mod sse;
pub mod summarizer;
pub mod wire;

pub use client::{
    AsyncBackgroundClient, AsyncConnectorClient, AsyncConnectorClientBuilder, BackgroundClient,
    ConnectorClient, ConnectorClientBuilder, StopHandle,
};
pub use config::{
    APP_TOKEN_ENV_VAR, DEFAULT_MAX_QUEUE_BYTES, DisconnectReason, OverflowPolicy, TOKEN_ENV_VAR,
    redact_url,
};
pub use error::Error;
pub use models::{
    ActionsPayload, CompactString, DecodeError, Event, SlimAction, SummaryPayload, TextStyle,
};
pub use retry::{DEFAULT_BACKOFF_RESET_AFTER, DEFAULT_MAX_SERVER_DELAY, FailureReason};
