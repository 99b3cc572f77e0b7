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
//!
//! - `tracker.rs`: counts a session's actions and says when a summary is due;
//! - `summariser.rs`: writes one (the LLM, or the embedded summariser);
//! - `orchestrator.rs`: spawns the writing, puts the summary on the stream in its
//!   session's order, resumes pending ones after a restart, forgets idle sessions.

mod orchestrator;
mod summariser;
mod tracker;

use std::sync::Arc;

use crate::config::LlmConfig;
use crate::metrics::Metrics;
use summariser::Summariser;

pub use summariser::{MAX_LLM_IN_FLIGHT, embedded_summary};
pub use tracker::SessionActions;

pub(crate) use orchestrator::{append_actions, forget_idle, resume_pending};
pub(crate) use tracker::SessionTracker;

/// What the summary orchestration keeps, one per connector.
pub(crate) struct Summaries {
    sessions: SessionTracker,
    summariser: Summariser,
}

impl Summaries {
    /// Summaries written by `llm` when set (the embedded summariser otherwise);
    /// `durable`: the store keeps session state, so the batches due and not yet
    /// out are kept too, for a restart.
    pub fn new(llm: Option<LlmConfig>, metrics: Arc<Metrics>, durable: bool) -> Self {
        Self {
            sessions: if durable {
                SessionTracker::durable()
            } else {
                SessionTracker::default()
            },
            summariser: Summariser::new(llm, metrics),
        }
    }
}

#[cfg(test)]
mod tests {
    use autoplay_sdk::models::SlimAction;

    /// An action of `kind` on `title`, the rest default.
    pub(super) fn action(kind: &str, title: &str) -> SlimAction {
        SlimAction {
            event_type: kind.into(),
            title: title.into(),
            ..SlimAction::default()
        }
    }
}
