//! The connection engine: connect, read, parse, queue, and reconnect.
//!
//! Every client (blocking, async, the CLI, the Python package) runs this one
//! state machine; only what consumes the queue differs. It owns the HTTP
//! connection, the SSE parser, the backoff, liveness and the fatal statuses.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{
    ClientConfig, DisconnectReason, Hooks, OverflowPolicy, is_sendable_id, redact_url_in_place,
};
use crate::dispatch::{Delivery, Queued, decode};
use crate::error::{Error, is_fatal_status};
use crate::models::Event;
use crate::queue::{EventQueue, Pushed};
use crate::retry::{FailureReason, RetryPolicy, ServerRetry};
use crate::sse::{SseItem, SseParser};

use crate::wire::{HEARTBEAT_EVENT, LAST_EVENT_ID};

/// How much of an unusable id to show in a log line.
const LOGGED_ID_CHARS: usize = 64;

/// Events waiting in the queue from which the reader decodes the next event itself,
/// when `decode_ahead` is on (it is off by default: see its builder option).
/// Below it the consumer keeps up, and the reader stays free for the socket; above
/// it the consumer is the bottleneck, and the reader's spare time goes to decoding.
/// Slack keeps the consumer busy while the reader decodes: 160 measured 2–10% faster
/// than 64 and than 16 (`docs/performance.md`); beyond it, no difference.
const DECODE_AHEAD_DEPTH: usize = 160;

/// The decode-ahead depth for a queue: [`DECODE_AHEAD_DEPTH`], or a third of a
/// smaller queue, so that a small queue still shares the decoding.
fn decode_ahead_depth(capacity: usize) -> usize {
    DECODE_AHEAD_DEPTH.min(capacity / 3)
}

/// The engine's clock: tokio's, so that tests with paused time drive the retry
/// policy too.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Counters shared between the engine and the client handles.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Payloads the full queue dropped.
    pub dropped: AtomicU64,
    /// Events skipped for exceeding `max_event_size`.
    pub oversized: AtomicU64,
}

/// What one connection attempt came to.
enum Attempt {
    /// A stream was established and has ended; `events` is how many it delivered.
    Ended {
        events: u64,
        reason: DisconnectReason,
    },
    /// No stream: a network error, a retryable status or a wrong content type.
    Failed {
        why: FailureReason,
        retry_after: Option<Duration>,
    },
    /// A status that must not be retried.
    Fatal(u16),
    /// The client was stopped.
    Stopped,
}

/// What the engine keeps about the stream it is reading.
#[derive(Debug, Default)]
struct Connection {
    /// Events delivered (heartbeats included).
    events: u64,
    /// An oversized event was already logged on this connection.
    told_oversized: bool,
    /// An over-long id was already logged on this connection.
    told_long_id: bool,
}

pub(crate) struct Engine {
    config: Arc<ClientConfig>,
    hooks: Hooks,
    queue: Arc<EventQueue<Queued>>,
    stats: Arc<Stats>,
    cancel: CancellationToken,
    /// Typed payloads, or every SSE event with heartbeats (for raw tails such as
    /// `autoplay listen --format raw`).
    delivery: Delivery,
    /// Events waiting from which the reader decodes ahead, for this queue.
    decode_ahead_depth: usize,
    /// Rate limit of the drop warning.
    last_drop_log: Option<Instant>,
    drops_since_log: u64,
    /// The last event id that could not be sent, once logged (so it is logged once).
    unsendable_id: Option<String>,
    /// Data buffers of the events this reader decoded itself, for the parser to reuse.
    spent: Vec<Vec<u8>>,
}

impl Engine {
    pub(crate) fn new(
        config: Arc<ClientConfig>,
        hooks: Hooks,
        queue: Arc<EventQueue<Queued>>,
        stats: Arc<Stats>,
        cancel: CancellationToken,
        delivery: Delivery,
    ) -> Self {
        Engine {
            decode_ahead_depth: if config.decode_ahead {
                decode_ahead_depth(queue.capacity())
            } else {
                usize::MAX
            },
            config,
            hooks,
            queue,
            stats,
            cancel,
            delivery,
            last_drop_log: None,
            drops_since_log: 0,
            unsendable_id: None,
            spent: Vec::new(),
        }
    }

    /// Runs until stopped (`Ok`) or a fatal status or exhausted retries (`Err`),
    /// then closes the queue so consumers drain it and finish.
    pub(crate) async fn run(mut self) -> Result<(), Error> {
        let result = self.connect_loop().await;
        self.queue.close();
        result
    }

    async fn connect_loop(&mut self) -> Result<(), Error> {
        let config = self.config.clone();
        let url = config.shown_url.as_str();
        let mut parser = SseParser::with_limits(config.max_event_size, config.max_id_len);
        parser.set_last_event_id(config.last_event_id.clone());
        let mut retry = RetryPolicy::new(config.retry);
        let mut http: Option<reqwest::Client> = None;
        loop {
            if self.cancel.is_cancelled() {
                return Ok(());
            }
            let client = match &http {
                Some(client) => client.clone(),
                None => http.insert(build_http_client(&config)?).clone(),
            };
            let attempt = self.attempt(&client, &mut parser, &mut retry).await;
            let (why, retry_after) = match attempt {
                Attempt::Stopped => return Ok(()),
                Attempt::Fatal(status) => {
                    warn!(status, url, "fatal status, not retrying");
                    return Err(Error::FatalStatus {
                        status,
                        url: url.to_owned(),
                        credentials_sent: sends_credentials(&config),
                    });
                }
                Attempt::Ended { events, reason } => {
                    if let Some(hook) = &self.hooks.on_disconnect {
                        call_hook("on_disconnect", || hook(&reason));
                    }
                    if reason == DisconnectReason::Stopped {
                        return Ok(());
                    }
                    if events > 0 {
                        retry.made_progress();
                        info!(url, reason = %reason, "disconnected after {events} events");
                    } else {
                        retry.attempt_failed();
                        info!(url, reason = %reason, "disconnected before any event");
                    }
                    (FailureReason::Disconnected(reason), None)
                }
                Attempt::Failed { why, retry_after } => {
                    retry.attempt_failed();
                    (why, retry_after)
                }
            };
            // Whatever failed may be the pooled connection itself (a half-open socket, a
            // broken HTTP/2 session): start the next attempt on a fresh one.
            http = None;
            let attempts = retry.failed_attempts();
            if retry.exhausted() {
                warn!(url, attempts, reason = %why, "giving up: {why}");
                return Err(Error::RetriesExhausted {
                    attempts,
                    url: url.to_owned(),
                    last_failure: why,
                });
            }
            let wait = retry.next_wait(now(), retry_after);
            if let Some(asked) = wait.capped_retry_after {
                warn!(
                    url,
                    retry_after_s = asked.as_secs(),
                    max_server_delay_s = config.retry.max_server_delay.as_secs(),
                    "the server's Retry-After exceeds max_server_delay; waiting the ceiling instead"
                );
            }
            let delay = wait.delay;
            // A failed attempt is a warning (users with no logging set up see it); a
            // reconnect after a connection that delivered events is routine.
            if attempts > 0 {
                warn!(
                    url,
                    attempt = attempts,
                    delay_ms = delay.as_millis() as u64,
                    reason = %why,
                    "reconnecting in {delay:?}: {why}"
                );
            } else {
                info!(
                    url,
                    attempt = attempts,
                    delay_ms = delay.as_millis() as u64,
                    reason = %why,
                    "reconnecting in {delay:?}: {why}"
                );
            }
            if let Some(hook) = &self.hooks.on_retry {
                call_hook("on_retry", || hook(attempts, delay, &why));
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One connection: request, check the response, then read until it ends.
    async fn attempt(
        &mut self,
        http: &reqwest::Client,
        parser: &mut SseParser,
        retry: &mut RetryPolicy,
    ) -> Attempt {
        let config = self.config.clone();
        let mut request = http
            .get(config.url.clone())
            .header(ACCEPT, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache")
            .headers(config.headers.clone());
        if let Some(token) = &config.token {
            // Validated when the client was built.
            if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {token}")) {
                value.set_sensitive(true);
                request = request.header(AUTHORIZATION, value);
            }
        }
        if let Some(id) = self.sendable_last_event_id(parser) {
            request = request.header(LAST_EVENT_ID, id);
        }
        debug!(
            url = config.shown_url,
            last_event_id = ?parser.last_event_id().map(shortened),
            "connecting"
        );
        let response = tokio::select! {
            _ = self.cancel.cancelled() => return Attempt::Stopped,
            r = tokio::time::timeout(config.connect_timeout, request.send()) => r,
        };
        let response = match response {
            Err(_) => {
                return Attempt::Failed {
                    why: FailureReason::Timeout(config.connect_timeout),
                    retry_after: None,
                };
            }
            Ok(Err(e)) => {
                return Attempt::Failed {
                    why: FailureReason::Request(redacted_chain(e)),
                    retry_after: None,
                };
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if is_fatal_status(status.as_u16()) {
            return Attempt::Fatal(status.as_u16());
        }
        if !status.is_success() {
            let retry_after = match status {
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(parse_retry_after),
                _ => None,
            };
            return Attempt::Failed {
                why: FailureReason::Status(status.as_u16()),
                retry_after,
            };
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !is_event_stream(content_type) {
            return Attempt::Failed {
                why: FailureReason::ContentType(content_type.to_owned()),
                retry_after: None,
            };
        }

        info!(url = config.shown_url, version = ?response.version(), "connected");
        retry.connected(now());
        if let Some(hook) = &self.hooks.on_connect {
            call_hook("on_connect", || hook(config.shown_url.as_str()));
        }
        parser.reset_connection();
        let mut body = response.bytes_stream();
        let mut items: Vec<SseItem> = Vec::new();
        let mut connection = Connection::default();
        let reason = loop {
            let chunk = tokio::select! {
                _ = self.cancel.cancelled() => break DisconnectReason::Stopped,
                chunk = tokio::time::timeout(config.read_timeout, body.next()) => chunk,
            };
            let chunk = match chunk {
                Err(_) => break DisconnectReason::Stalled(config.read_timeout),
                Ok(None) => {
                    parser.finish();
                    break DisconnectReason::EndOfStream;
                }
                Ok(Some(Err(e))) => break DisconnectReason::Network(redacted_chain(e)),
                Ok(Some(Ok(chunk))) => chunk,
            };
            self.refill_spares(parser);
            let Ok(()) = parser.feed(&chunk, |item| items.push(item));
            let delivered = self.deliver_all(&mut items, retry, &mut connection).await;
            // One wake for the events of this read, not one per event.
            self.queue.wake_consumers_owed();
            if delivered.is_err() {
                break DisconnectReason::Stopped;
            }
        };
        Attempt::Ended {
            events: connection.events,
            reason,
        }
    }

    /// The last event id, when it can be sent as a header. One that cannot (a C0
    /// control character or DEL, which a server may well send: the standard allows
    /// them) is left out, so the stream restarts without resuming instead of every
    /// request failing; it is logged once.
    fn sendable_last_event_id(&mut self, parser: &SseParser) -> Option<HeaderValue> {
        let id = parser.last_event_id()?;
        if is_sendable_id(id)
            && let Ok(value) = HeaderValue::from_str(id)
        {
            return Some(value);
        }
        if self.unsendable_id.as_deref() != Some(id) {
            warn!(
                id = ?shortened(id),
                "the last event id contains control characters and cannot be sent as \
                 Last-Event-ID; reconnecting without it (events may be missed or repeated)"
            );
            self.unsendable_id = Some(id.to_owned());
        }
        None
    }

    /// Hands parsed items on; `Err` when the client was stopped while waiting for room.
    async fn deliver_all(
        &mut self,
        items: &mut Vec<SseItem>,
        retry: &mut RetryPolicy,
        connection: &mut Connection,
    ) -> Result<(), ()> {
        for item in items.drain(..) {
            let event = match item {
                SseItem::Event(event) => event,
                SseItem::Retry(ms) => {
                    match retry.set_server_retry(Duration::from_millis(ms)) {
                        ServerRetry::Applied(delay) => {
                            debug!(
                                retry_ms = ms,
                                "the server set the reconnection delay to {delay:?}"
                            );
                        }
                        ServerRetry::Capped(ceiling) => warn!(
                            retry_ms = ms,
                            max_server_delay_s = ceiling.as_secs(),
                            "the server's retry: exceeds max_server_delay; the reconnection \
                             delay is the ceiling instead"
                        ),
                    }
                    continue;
                }
                SseItem::EventTooLarge { limit } => {
                    let total = self.stats.oversized.fetch_add(1, Ordering::Relaxed) + 1;
                    if !connection.told_oversized {
                        connection.told_oversized = true;
                        warn!(
                            limit,
                            total,
                            "an event exceeds max_event_size; skipping it and reading on \
                             (later ones on this connection are only counted)"
                        );
                    }
                    continue;
                }
                SseItem::IdTooLong { limit } => {
                    if !connection.told_long_id {
                        connection.told_long_id = true;
                        warn!(
                            limit,
                            "an event id exceeds max_id_len; ignoring it, the last event id \
                             stays as it was (later ones on this connection are not logged)"
                        );
                    }
                    continue;
                }
            };
            connection.events += 1;
            let item = match self.delivery {
                Delivery::Raw => Queued::Sse(event),
                Delivery::Payloads if event.event == HEARTBEAT_EVENT => continue,
                Delivery::Payloads if self.consumer_is_behind() => {
                    let payload = decode(&event);
                    let json_len = event.data.len();
                    if let Some(buffer) = crate::sse::reusable(event.data.into_bytes()) {
                        self.spent.push(buffer);
                    }
                    match payload {
                        Some(payload) => Queued::payload(payload, json_len),
                        None => continue,
                    }
                }
                Delivery::Payloads => Queued::Sse(event),
            };
            let pushed = tokio::select! {
                biased;
                pushed = self.queue.push_deferring_wake(item) => pushed,
                _ = self.cancel.cancelled() => return Err(()),
            };
            match pushed {
                Pushed::Queued => {}
                Pushed::Dropped(dropped) => self.record_drop(dropped),
                Pushed::DroppedMany(dropped) => {
                    dropped.into_iter().for_each(|d| self.record_drop(d))
                }
            }
        }
        Ok(())
    }

    /// Gives the parser the data buffers spent since the last chunk: those of the
    /// events decoded here, and, when it has none left, those the consumer handed
    /// back, so event data is allocated and freed on this thread.
    fn refill_spares(&mut self, parser: &mut SseParser) {
        let spares = parser.spare_buffers();
        spares.append(&mut self.spent);
        if spares.is_empty() {
            self.queue.take_spent(spares);
        }
        spares.truncate(crate::sse::MAX_SPARE_BUFFERS);
    }

    /// Whether the reader should decode the next event itself: the consumer has
    /// events waiting, and the event will be queued rather than dropped (decoding an
    /// event the queue then refuses would only slow the reader down).
    fn consumer_is_behind(&self) -> bool {
        let waiting = self.queue.len();
        waiting >= self.decode_ahead_depth
            && (waiting < self.queue.capacity()
                || self.queue.policy() != OverflowPolicy::DropNewest)
    }

    /// Counts a drop and tells the user. Only payloads count: a malformed or unknown
    /// event would have been skipped anyway.
    fn record_drop(&mut self, dropped: Queued) {
        let event = match dropped {
            Queued::Payload(event, _) => *event,
            Queued::Sse(sse) => match Event::decode(&sse.data, &sse.event) {
                Ok(event) => event,
                Err(e) => {
                    debug!(error = %e, "a queue overflow discarded an event that was not a payload");
                    return;
                }
            },
        };
        let total = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        self.drops_since_log += 1;
        let now = Instant::now();
        if self
            .last_drop_log
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            warn!(
                dropped = self.drops_since_log,
                total,
                queue_size = self.config.max_queue_size,
                queue_bytes = self.config.max_queue_bytes,
                "queue full: events dropped; the callbacks are slower than the stream \
                 (raise max_queue_size or max_queue_bytes, add workers, or use \
                 OverflowPolicy::Block)"
            );
            self.last_drop_log = Some(now);
            self.drops_since_log = 0;
        }
        if let Some(hook) = &self.hooks.on_drop {
            call_hook("on_drop", || hook(&event, total));
        }
    }
}

fn build_http_client(config: &ClientConfig) -> Result<reqwest::Client, Error> {
    let invalid =
        |e: reqwest::Error| Error::InvalidConfig(format!("cannot build the HTTP client: {e}"));
    let mut builder = reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .user_agent(concat!("autoplay-sdk-rust/", env!("CARGO_PKG_VERSION")));
    for pem in &config.root_certificates {
        builder =
            builder.add_root_certificate(reqwest::Certificate::from_pem(pem).map_err(invalid)?);
    }
    builder.build().map_err(invalid)
}

/// Runs a user hook, logging instead of unwinding into the engine.
pub(crate) fn call_hook(name: &str, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        warn!(hook = name, "a callback panicked; the client goes on");
    }
}

/// Whether a request to `config` carries credentials of any kind the SDK sends.
fn sends_credentials(config: &ClientConfig) -> bool {
    config.token.is_some()
        || config.headers.contains_key(AUTHORIZATION)
        || !config.url.username().is_empty()
        || config.url.password().is_some()
}

fn is_event_stream(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// `Retry-After` as delay-seconds or an HTTP date.
fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The start of an id, for a log line.
fn shortened(id: &str) -> &str {
    match id.char_indices().nth(LOGGED_ID_CHARS) {
        Some((end, _)) => &id[..end],
        None => id,
    }
}

/// A reqwest error and its causes, with the credentials of the URL it names redacted.
fn redacted_chain(mut e: reqwest::Error) -> String {
    if let Some(url) = e.url_mut() {
        redact_url_in_place(url);
    }
    error_chain(&e)
}

/// reqwest's top-level messages are terse ("error sending request"); the causes say why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigBuilder;
    use crate::queue::Batch;
    use crate::sse::SseEvent;

    /// An engine that decodes ahead (`decode_ahead(true)`).
    fn engine(capacity: usize, policy: OverflowPolicy, delivery: Delivery) -> Engine {
        engine_with(capacity, policy, delivery, true)
    }

    fn engine_with(
        capacity: usize,
        policy: OverflowPolicy,
        delivery: Delivery,
        decode_ahead: bool,
    ) -> Engine {
        let mut builder = ConfigBuilder::new("http://127.0.0.1:9/stream/acme");
        builder.decode_ahead = decode_ahead;
        let (config, hooks) = builder.build().unwrap();
        Engine::new(
            Arc::new(config),
            hooks,
            Arc::new(EventQueue::new(capacity, policy)),
            Arc::new(Stats::default()),
            CancellationToken::new(),
            delivery,
        )
    }

    fn sse(data: &str) -> SseItem {
        SseItem::Event(SseEvent {
            event: "actions".into(),
            data: data.into(),
            id: None,
        })
    }

    const PAYLOAD: &str = r#"{"type":"actions","session_id":"s","actions":[]}"#;

    /// Delivers `items` and returns what the queue then holds, oldest first.
    async fn deliver(engine: &mut Engine, items: Vec<SseItem>) -> Vec<Queued> {
        let mut retry = RetryPolicy::new(engine.config.retry);
        let mut items = items;
        engine
            .deliver_all(&mut items, &mut retry, &mut Connection::default())
            .await
            .unwrap();
        engine.queue.take_all(Batch::default())
    }

    fn decoded_ahead(queued: &[Queued]) -> Vec<bool> {
        queued
            .iter()
            .map(|q| matches!(q, Queued::Payload(..)))
            .collect()
    }

    #[tokio::test]
    async fn the_reader_decodes_ahead_once_the_consumer_is_behind() {
        let mut engine = engine(500, OverflowPolicy::DropNewest, Delivery::Payloads);
        assert_eq!(decode_ahead_depth(500), DECODE_AHEAD_DEPTH);
        let items = (0..DECODE_AHEAD_DEPTH + 2).map(|_| sse(PAYLOAD)).collect();
        let queued = deliver(&mut engine, items).await;
        let mut expected = vec![false; DECODE_AHEAD_DEPTH];
        expected.extend([true, true]);
        assert_eq!(decoded_ahead(&queued), expected);
    }

    #[tokio::test]
    async fn by_default_only_the_consumer_decodes() {
        let mut engine = engine_with(500, OverflowPolicy::Block, Delivery::Payloads, false);
        let items = (0..DECODE_AHEAD_DEPTH * 2).map(|_| sse(PAYLOAD)).collect();
        let queued = deliver(&mut engine, items).await;
        assert_eq!(queued.len(), DECODE_AHEAD_DEPTH * 2);
        assert!(decoded_ahead(&queued).iter().all(|ahead| !ahead));
    }

    #[tokio::test]
    async fn decoding_ahead_skips_what_is_not_a_payload() {
        let mut engine = engine(500, OverflowPolicy::Block, Delivery::Payloads);
        let mut items: Vec<SseItem> = (0..DECODE_AHEAD_DEPTH).map(|_| sse(PAYLOAD)).collect();
        items.extend([sse("not json"), sse(r#"{"type":"nope"}"#), sse(PAYLOAD)]);
        let queued = deliver(&mut engine, items).await;
        assert_eq!(queued.len(), DECODE_AHEAD_DEPTH + 1);
        assert!(matches!(queued.last(), Some(Queued::Payload(..))));
        assert_eq!(engine.stats.dropped.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn no_decoding_for_an_event_a_full_queue_drops() {
        // A queue of 30 decodes ahead from 10 waiting.
        let capacity = 30;
        let depth = decode_ahead_depth(capacity);
        assert_eq!(depth, 10);
        let mut engine = engine(capacity, OverflowPolicy::DropNewest, Delivery::Payloads);
        let items = (0..capacity + 3).map(|_| sse(PAYLOAD)).collect();
        let queued = deliver(&mut engine, items).await;
        assert_eq!(queued.len(), capacity);
        let ahead = decoded_ahead(&queued);
        assert!(ahead[..depth].iter().all(|d| !d) && ahead[depth..].iter().all(|d| *d));
        // The drops are still payloads, counted and reported.
        assert_eq!(engine.stats.dropped.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn raw_delivery_never_decodes_and_keeps_heartbeats() {
        let mut engine = engine(500, OverflowPolicy::DropNewest, Delivery::Raw);
        let mut items: Vec<SseItem> = (0..DECODE_AHEAD_DEPTH * 2).map(|_| sse(PAYLOAD)).collect();
        items.push(SseItem::Event(SseEvent {
            event: HEARTBEAT_EVENT.into(),
            data: String::new(),
            id: None,
        }));
        let queued = deliver(&mut engine, items).await;
        assert_eq!(queued.len(), DECODE_AHEAD_DEPTH * 2 + 1);
        assert!(queued.into_iter().all(|q| q.into_sse().is_some()));
    }

    #[tokio::test]
    async fn oversized_events_are_counted_and_ids_checked_before_sending() {
        let mut engine = engine(500, OverflowPolicy::DropNewest, Delivery::Payloads);
        let items = vec![
            SseItem::EventTooLarge { limit: 8 },
            SseItem::IdTooLong { limit: 8 },
            SseItem::EventTooLarge { limit: 8 },
            sse(PAYLOAD),
        ];
        let queued = deliver(&mut engine, items).await;
        assert_eq!(queued.len(), 1);
        assert_eq!(engine.stats.oversized.load(Ordering::Relaxed), 2);

        let mut parser = SseParser::new();
        parser.set_last_event_id(Some("7\u{1}x".into()));
        assert!(engine.sendable_last_event_id(&parser).is_none());
        assert_eq!(
            engine.unsendable_id.as_deref(),
            Some("7\u{1}x"),
            "logged once"
        );
        for id in ["7\tx", "7\u{7f}"] {
            parser.set_last_event_id(Some(id.into()));
            assert!(engine.sendable_last_event_id(&parser).is_none(), "{id:?}");
        }
        parser.set_last_event_id(Some("été 42".into()));
        assert_eq!(
            engine.sendable_last_event_id(&parser).unwrap().as_bytes(),
            "été 42".as_bytes()
        );
    }

    #[test]
    fn a_request_error_names_the_url_without_its_credentials() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = runtime
            .block_on(
                reqwest::Client::new()
                    .get("http://user:pw@127.0.0.1:1/x")
                    .send(),
            )
            .unwrap_err();
        let text = redacted_chain(e);
        assert!(!text.contains("pw") && !text.contains("user"), "{text}");
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("7")),
            Some(Duration::from_secs(7))
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let parsed = parse_retry_after(&HeaderValue::from_str(&later).unwrap()).unwrap();
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120));
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
    }

    #[test]
    fn content_type_match_ignores_parameters_and_case() {
        assert!(is_event_stream("text/event-stream"));
        assert!(is_event_stream("Text/Event-Stream; charset=utf-8"));
        assert!(!is_event_stream("application/json"));
        assert!(!is_event_stream(""));
    }
}
