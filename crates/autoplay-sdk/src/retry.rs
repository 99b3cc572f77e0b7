//! When to reconnect, and when to give up: the retry policy of the engine.
//!
//! - The delay before attempt n+1 is `base · 2ⁿ`, capped at `max_backoff`, plus a
//!   random extra of up to half of it that never takes it past the cap. Jitter only
//!   adds: the client never waits less than the backoff (nor less than the server
//!   asked), it only spreads clients that lost the same server over a wider window.
//! - The base is the configured `initial_backoff`, or the server's `retry:` field
//!   once one arrived (the SSE "reconnection time"): every later delay is at least
//!   that. A `retry:` larger than `max_backoff` is obeyed, the cap then being the
//!   `retry:` itself; a `retry:` larger than `max_server_delay` (default 10 min) is
//!   cut to it, and the log says so.
//! - `Retry-After` on a 429 or 503 is a minimum for that one wait, cut to
//!   `max_server_delay` the same way.
//! - The backoff goes back to the base only after a stream stayed up for
//!   `backoff_reset_after` (default 60 s, as LaunchDarkly's eventsource client), so a
//!   server that accepts, sends an event and drops still sees the delays grow.
//! - `max_retries` counts consecutive attempts that delivered nothing; a stream that
//!   delivered events is progress and starts the count again.
//!
//! The policy is plain data driven by the instants the engine passes in, so it is
//! tested without sleeping.

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::config::DisconnectReason;

/// The default ceiling of a delay the server sets (`retry:`, `Retry-After`): 10 minutes.
pub const DEFAULT_MAX_SERVER_DELAY: Duration = Duration::from_secs(10 * 60);

/// The default time a stream must stay up before the backoff goes back to its base.
pub const DEFAULT_BACKOFF_RESET_AFTER: Duration = Duration::from_secs(60);

/// The shortest delay a server's `retry: 0` can ask for: never a tight loop.
const MIN_SERVER_RETRY: Duration = Duration::from_millis(1);

/// Why a connection attempt, or an established stream, ended: given to `on_retry`
/// before each wait, logged, and kept in
/// [`Error::RetriesExhausted`](crate::Error::RetriesExhausted). `Display` gives a
/// one-line explanation (URL credentials redacted).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureReason {
    /// No response headers arrived within the connect timeout.
    Timeout(Duration),
    /// The request failed before any response: DNS, connection refused, TLS, a reset.
    /// The text is the error and its causes.
    Request(String),
    /// The server answered a status that is retried (5xx, 429, any other non-2xx that
    /// is not fatal).
    Status(u16),
    /// The server answered 2xx with a content type other than `text/event-stream`.
    ContentType(String),
    /// A stream was established and then ended.
    Disconnected(DisconnectReason),
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::Timeout(t) => write!(f, "no response within {t:?}"),
            FailureReason::Request(e) => write!(f, "request failed: {e}"),
            FailureReason::Status(status) => {
                match StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                {
                    Some(reason) => write!(f, "status {status} {reason}"),
                    None => write!(f, "status {status}"),
                }
            }
            // The usual cause is a URL that is not a stream (`/metrics`, a web
            // page), so the message says which URL would be.
            FailureReason::ContentType(ct) => {
                if ct.is_empty() {
                    f.write_str("no content type")?;
                } else {
                    write!(f, "content type {ct:?}")?;
                }
                f.write_str(
                    " is not text/event-stream: check that the URL is a stream, \
                     http://HOST/stream/PRODUCT_ID",
                )
            }
            FailureReason::Disconnected(reason) => reason.fmt(f),
        }
    }
}

/// The settings the policy follows, checked by the config builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetrySettings {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub max_server_delay: Duration,
    pub reset_after: Duration,
    pub max_retries: Option<u32>,
}

/// A wait the policy decided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wait {
    pub delay: Duration,
    /// The server's `Retry-After` when it asked for more than `max_server_delay`.
    pub capped_retry_after: Option<Duration>,
}

/// What the server's `retry:` field came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerRetry {
    /// The new base of the backoff.
    Applied(Duration),
    /// It asked for more than `max_server_delay`; the base is that ceiling.
    Capped(Duration),
}

pub(crate) struct RetryPolicy {
    settings: RetrySettings,
    /// The server's `retry:`, already capped; replaces `initial_backoff` as the base.
    server_base: Option<Duration>,
    /// Waits since the backoff was last reset: the next one is `base · 2^doublings`.
    doublings: u32,
    /// When the current stream was established.
    connected_at: Option<Instant>,
    /// Consecutive attempts that delivered no event.
    failed_attempts: u32,
    rng: fastrand::Rng,
}

impl RetryPolicy {
    pub(crate) fn new(settings: RetrySettings) -> Self {
        Self::with_rng(settings, fastrand::Rng::new())
    }

    pub(crate) fn with_rng(settings: RetrySettings, rng: fastrand::Rng) -> Self {
        RetryPolicy {
            settings,
            server_base: None,
            doublings: 0,
            connected_at: None,
            failed_attempts: 0,
            rng,
        }
    }

    /// The delay the backoff starts from: the server's `retry:` or `initial_backoff`.
    pub(crate) fn base(&self) -> Duration {
        self.server_base.unwrap_or(self.settings.initial_backoff)
    }

    /// The longest delay the backoff itself reaches.
    fn cap(&self) -> Duration {
        self.settings.max_backoff.max(self.base())
    }

    /// The server's `retry:` field. It becomes the base but does not reset the
    /// backoff: servers often send it at the start of every stream.
    pub(crate) fn set_server_retry(&mut self, requested: Duration) -> ServerRetry {
        let ceiling = self.settings.max_server_delay;
        let (base, outcome) = if requested > ceiling {
            (ceiling, ServerRetry::Capped(ceiling))
        } else {
            let base = requested.max(MIN_SERVER_RETRY);
            (base, ServerRetry::Applied(base))
        };
        self.server_base = Some(base);
        outcome
    }

    /// A stream was established at `now`.
    pub(crate) fn connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// An attempt ended without delivering an event; returns the consecutive count.
    pub(crate) fn attempt_failed(&mut self) -> u32 {
        self.failed_attempts = self.failed_attempts.saturating_add(1);
        self.failed_attempts
    }

    /// A stream delivered events: the count of failed attempts starts again.
    pub(crate) fn made_progress(&mut self) {
        self.failed_attempts = 0;
    }

    /// Consecutive attempts that delivered nothing so far.
    pub(crate) fn failed_attempts(&self) -> u32 {
        self.failed_attempts
    }

    /// Whether `max_retries` consecutive attempts after the first have failed.
    pub(crate) fn exhausted(&self) -> bool {
        self.settings
            .max_retries
            .is_some_and(|max| self.failed_attempts > max)
    }

    /// The wait before the next attempt, decided at `now` (when the last attempt
    /// ended); `retry_after` is the server's `Retry-After`, if any.
    pub(crate) fn next_wait(&mut self, now: Instant, retry_after: Option<Duration>) -> Wait {
        if let Some(since) = self.connected_at.take()
            && now.saturating_duration_since(since) >= self.settings.reset_after
        {
            self.doublings = 0;
        }
        let cap = self.cap();
        let factor = 1u32 << self.doublings.min(31);
        let backoff = self.base().saturating_mul(factor).min(cap);
        if backoff < cap {
            self.doublings = self.doublings.saturating_add(1);
        }
        let jitter = backoff.mul_f64(self.rng.f64() * 0.5);
        let mut delay = backoff.saturating_add(jitter).min(cap);
        let mut capped_retry_after = None;
        if let Some(asked) = retry_after {
            let ceiling = self.settings.max_server_delay;
            if asked > ceiling {
                capped_retry_after = Some(asked);
            }
            delay = delay.max(asked.min(ceiling));
        }
        Wait {
            delay,
            capped_retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const SEC: Duration = Duration::from_secs(1);

    fn settings() -> RetrySettings {
        RetrySettings {
            initial_backoff: SEC,
            max_backoff: 30 * SEC,
            max_server_delay: DEFAULT_MAX_SERVER_DELAY,
            reset_after: DEFAULT_BACKOFF_RESET_AFTER,
            max_retries: None,
        }
    }

    fn policy(settings: RetrySettings) -> RetryPolicy {
        RetryPolicy::with_rng(settings, fastrand::Rng::with_seed(7))
    }

    /// `n` waits in a row, each decided one second after the previous.
    fn waits(p: &mut RetryPolicy, start: Instant, n: usize) -> Vec<Duration> {
        (0..n)
            .map(|i| p.next_wait(start + SEC * i as u32, None).delay)
            .collect()
    }

    #[test]
    fn delays_double_to_the_cap_and_jitter_only_adds() {
        let start = Instant::now();
        for seed in 0..200 {
            let mut p = RetryPolicy::with_rng(settings(), fastrand::Rng::with_seed(seed));
            let delays = waits(&mut p, start, 9);
            let floors = [1, 2, 4, 8, 16, 30, 30, 30, 30];
            for (delay, floor) in delays.iter().zip(floors) {
                let floor = floor * SEC;
                let most = (floor + floor / 2).min(30 * SEC);
                assert!(
                    *delay >= floor && *delay <= most,
                    "seed {seed}: {delay:?} outside [{floor:?}, {most:?}]"
                );
            }
        }
    }

    #[test]
    fn the_jitter_spreads_clients_over_the_window() {
        let start = Instant::now();
        let firsts: Vec<Duration> = (0..200)
            .map(|seed| {
                RetryPolicy::with_rng(settings(), fastrand::Rng::with_seed(seed))
                    .next_wait(start, None)
                    .delay
            })
            .collect();
        let (least, most) = (firsts.iter().min().unwrap(), firsts.iter().max().unwrap());
        assert!(
            *least < SEC + 100 * MS && *most > SEC + 400 * MS,
            "{least:?}..{most:?}"
        );
    }

    #[test]
    fn the_servers_retry_is_the_floor_of_every_delay() {
        let start = Instant::now();
        for seed in 0..200 {
            let mut p = RetryPolicy::with_rng(settings(), fastrand::Rng::with_seed(seed));
            assert_eq!(p.set_server_retry(600 * MS), ServerRetry::Applied(600 * MS));
            let delays = waits(&mut p, start, 3);
            assert!(delays[0] >= 600 * MS && delays[0] <= 900 * MS, "{delays:?}");
            assert!(delays[1] >= 1200 * MS, "{delays:?}");
            assert!(delays[2] >= 2400 * MS, "{delays:?}");
        }
    }

    #[test]
    fn a_retry_above_max_backoff_is_obeyed_and_one_above_the_ceiling_is_cut() {
        let start = Instant::now();
        let mut p = policy(RetrySettings {
            max_backoff: 2 * SEC,
            ..settings()
        });
        assert_eq!(p.set_server_retry(5 * SEC), ServerRetry::Applied(5 * SEC));
        assert_eq!(waits(&mut p, start, 3), vec![5 * SEC; 3]);
        assert_eq!(
            p.set_server_retry(86_400_000 * MS),
            ServerRetry::Capped(DEFAULT_MAX_SERVER_DELAY)
        );
        assert_eq!(waits(&mut p, start, 2), vec![DEFAULT_MAX_SERVER_DELAY; 2]);
    }

    #[test]
    fn retry_zero_is_one_millisecond_and_still_backs_off() {
        let start = Instant::now();
        let mut p = policy(settings());
        assert_eq!(p.set_server_retry(Duration::ZERO), ServerRetry::Applied(MS));
        let delays = waits(&mut p, start, 4);
        assert!(delays[0] >= MS && delays[3] >= 8 * MS, "{delays:?}");
    }

    #[test]
    fn a_new_retry_field_does_not_reset_the_backoff() {
        let start = Instant::now();
        let mut p = policy(settings());
        waits(&mut p, start, 3);
        p.set_server_retry(SEC);
        assert!(p.next_wait(start, None).delay >= 8 * SEC);
    }

    #[test]
    fn retry_after_is_a_minimum_cut_to_the_ceiling() {
        let start = Instant::now();
        let mut p = policy(settings());
        let wait = p.next_wait(start, Some(7 * SEC));
        assert_eq!(wait.delay, 7 * SEC);
        assert_eq!(wait.capped_retry_after, None);
        // The backoff went on growing underneath (1 s, then 2 s, now 4 s).
        p.next_wait(start, None);
        let wait = p.next_wait(start, Some(MS));
        assert!(wait.delay >= 4 * SEC, "{wait:?}");
        let asked = 999_999_999 * SEC;
        let wait = p.next_wait(start, Some(asked));
        assert_eq!(wait.delay, DEFAULT_MAX_SERVER_DELAY);
        assert_eq!(wait.capped_retry_after, Some(asked));
    }

    #[test]
    fn the_backoff_resets_only_after_a_healthy_stream() {
        let start = Instant::now();
        let mut p = policy(settings());
        waits(&mut p, start, 3);
        // Connected, one event, dropped a moment later: still growing.
        p.connected(start);
        let short = p.next_wait(start + 100 * MS, None).delay;
        assert!(short >= 8 * SEC, "{short:?}");
        // Up for 59 s: not yet healthy.
        p.connected(start);
        let delay = p.next_wait(start + 59 * SEC, None).delay;
        assert!(delay >= 16 * SEC, "{delay:?}");
        // Up for 60 s: back to the base.
        p.connected(start);
        let delay = p.next_wait(start + 60 * SEC, None).delay;
        assert!(delay >= SEC && delay <= SEC + SEC / 2, "{delay:?}");
        // The healthy time counts once: the next failure doubles again.
        assert!(p.next_wait(start + 61 * SEC, None).delay >= 2 * SEC);
    }

    #[test]
    fn the_reset_time_is_configurable() {
        let start = Instant::now();
        let mut p = policy(RetrySettings {
            reset_after: 5 * SEC,
            ..settings()
        });
        waits(&mut p, start, 4);
        p.connected(start);
        let delay = p.next_wait(start + 5 * SEC, None).delay;
        assert!(delay <= SEC + SEC / 2, "{delay:?}");
    }

    #[test]
    fn max_retries_counts_attempts_without_progress() {
        let mut p = policy(RetrySettings {
            max_retries: Some(2),
            ..settings()
        });
        assert_eq!(p.attempt_failed(), 1);
        assert_eq!(p.attempt_failed(), 2);
        assert!(!p.exhausted());
        p.made_progress();
        assert_eq!(p.failed_attempts(), 0);
        for _ in 0..3 {
            p.attempt_failed();
        }
        assert!(p.exhausted());
        assert!(!policy(settings()).exhausted());
    }

    #[test]
    fn huge_settings_saturate_instead_of_overflowing() {
        let start = Instant::now();
        let mut p = policy(RetrySettings {
            max_backoff: Duration::MAX,
            ..settings()
        });
        let delays = waits(&mut p, start, 70);
        for (i, delay) in delays.iter().enumerate() {
            assert!(*delay >= SEC * (1 << i.min(31)), "{i}: {delay:?}");
        }
    }

    #[test]
    fn failure_reasons_read_as_sentences() {
        assert_eq!(
            FailureReason::Status(503).to_string(),
            "status 503 Service Unavailable"
        );
        assert_eq!(FailureReason::Status(599).to_string(), "status 599");
        assert_eq!(
            FailureReason::Timeout(10 * SEC).to_string(),
            "no response within 10s"
        );
        assert_eq!(
            FailureReason::ContentType("application/json".into()).to_string(),
            "content type \"application/json\" is not text/event-stream: \
             check that the URL is a stream, http://HOST/stream/PRODUCT_ID"
        );
        assert!(
            FailureReason::ContentType(String::new())
                .to_string()
                .starts_with("no content type is not text/event-stream: ")
        );
        assert_eq!(
            FailureReason::Disconnected(DisconnectReason::EndOfStream).to_string(),
            "the server ended the stream"
        );
    }
}
