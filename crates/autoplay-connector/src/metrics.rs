//! Counters for `GET /metrics`, in the Prometheus text format.
//!
//! Plain atomics: every hot path bumps one with a relaxed add, and a scrape reads
//! them without stopping anything.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The connector's counters. Cheap to share (`Arc<Metrics>`).
#[derive(Debug, Default)]
pub struct Metrics {
    /// PostHog events received on webhooks (dropped kinds included).
    pub events_ingested: AtomicU64,
    /// Actions extracted from webhooks or posted to `/events`.
    pub actions_extracted: AtomicU64,
    /// Payloads published to product streams (actions and summaries).
    pub events_published: AtomicU64,
    /// Summaries published.
    pub summaries: AtomicU64,
    /// Summaries written by the embedded summariser because the LLM failed.
    pub llm_failures: AtomicU64,
    /// Stream connections open now.
    pub live_subscribers: AtomicI64,
    /// Event frames written to subscribers (replayed ones included; heartbeats not).
    pub events_sent: AtomicU64,
    /// Subscribers disconnected because their send buffer was full.
    pub slow_subscriber_disconnects: AtomicU64,
    /// Requests refused with 401 or 403 (stream keys and webhook secrets).
    pub auth_failures: AtomicU64,
    /// Webhooks whose `sha256=` signature did not verify.
    pub webhook_signature_failures: AtomicU64,
    /// Resumes whose `Last-Event-ID` was older than the replay buffer.
    pub replay_gaps: AtomicU64,
    /// Sessions forgotten after being idle.
    pub sessions_evicted: AtomicU64,
    /// Requests answered 408 because their body did not arrive in time.
    pub body_read_timeouts: AtomicU64,
    /// Connections closed because they took no byte for the write timeout
    /// (subscribers that stopped reading, mostly).
    pub write_timeouts: AtomicU64,
    /// Batches split into several payloads to keep frames under the size limit.
    pub split_payloads: AtomicU64,
    /// Actions dropped because even alone, without properties, they exceeded the
    /// frame size limit.
    pub oversized_actions: AtomicU64,
    /// Times the store (Redis) became unreachable: counted once per outage.
    pub store_outages: AtomicU64,
    /// Due summaries this replica took over from one whose lease on them
    /// expired (Redis store): a replica that stopped, or hung, after taking
    /// a batch.
    pub summary_takeovers: AtomicU64,
}

pub(crate) fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

impl Metrics {
    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let counters: [(&str, &str, &AtomicU64); 17] = [
            (
                "autoplay_events_ingested_total",
                "PostHog events received on webhooks.",
                &self.events_ingested,
            ),
            (
                "autoplay_actions_extracted_total",
                "UI actions extracted or posted.",
                &self.actions_extracted,
            ),
            (
                "autoplay_events_published_total",
                "Payloads published to product streams.",
                &self.events_published,
            ),
            (
                "autoplay_summaries_total",
                "Session summaries published.",
                &self.summaries,
            ),
            (
                "autoplay_llm_failures_total",
                "LLM summaries that failed and fell back to the embedded summariser.",
                &self.llm_failures,
            ),
            (
                "autoplay_events_sent_total",
                "Event frames written to stream subscribers.",
                &self.events_sent,
            ),
            (
                "autoplay_slow_subscriber_disconnects_total",
                "Subscribers disconnected because they could not keep up.",
                &self.slow_subscriber_disconnects,
            ),
            (
                "autoplay_auth_failures_total",
                "Requests refused for a missing or wrong key or secret.",
                &self.auth_failures,
            ),
            (
                "autoplay_webhook_signature_failures_total",
                "Webhooks whose HMAC signature did not verify.",
                &self.webhook_signature_failures,
            ),
            (
                "autoplay_replay_gaps_total",
                "Resumes older than the replay buffer.",
                &self.replay_gaps,
            ),
            (
                "autoplay_sessions_evicted_total",
                "Idle sessions forgotten.",
                &self.sessions_evicted,
            ),
            (
                "autoplay_body_read_timeouts_total",
                "Requests whose body did not arrive within the body timeout.",
                &self.body_read_timeouts,
            ),
            (
                "autoplay_write_timeouts_total",
                "Connections closed because they took nothing for the write timeout.",
                &self.write_timeouts,
            ),
            (
                "autoplay_split_payloads_total",
                "Batches split into several payloads to stay under the frame size limit.",
                &self.split_payloads,
            ),
            (
                "autoplay_oversized_actions_total",
                "Actions dropped for exceeding the frame size limit on their own.",
                &self.oversized_actions,
            ),
            (
                "autoplay_store_outages_total",
                "Times the store (Redis) became unreachable.",
                &self.store_outages,
            ),
            (
                "autoplay_summary_takeovers_total",
                "Due summaries taken over from a replica whose lease expired (Redis).",
                &self.summary_takeovers,
            ),
        ];
        let mut out = String::with_capacity(2048);
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP autoplay_live_subscribers Stream connections open now.\n# TYPE autoplay_live_subscribers gauge\nautoplay_live_subscribers {}",
            self.live_subscribers.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter() {
        let metrics = Metrics::default();
        inc(&metrics.events_ingested);
        add(&metrics.actions_extracted, 3);
        let text = metrics.render();
        assert!(text.contains("\nautoplay_events_ingested_total 1\n"));
        assert!(text.contains("\nautoplay_actions_extracted_total 3\n"));
        assert!(
            text.contains("# TYPE autoplay_live_subscribers gauge\nautoplay_live_subscribers 0\n")
        );
        assert_eq!(text.lines().filter(|l| l.starts_with("# TYPE")).count(), 18);
    }
}
