//! Client configuration shared by the blocking and async clients: one set of
//! options, validated once, when the client is built.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::error::Error;
use crate::models::Event;
use crate::sse::DEFAULT_MAX_EVENT_SIZE;

/// Environment variable read for the API key when no token is given to the builder.
pub const TOKEN_ENV_VAR: &str = "AUTOPLAY_TOKEN";

/// What the reader does when the queue between it and the callbacks is full.
///
/// The two drop policies first give the callbacks a short grace
/// ([`overflow_grace`](crate::ConnectorClientBuilder::overflow_grace), default 25 ms)
/// to make room: a callback thread that was only descheduled for a moment, or paused
/// by a garbage collector, loses nothing. Once a grace has run out, events are dropped
/// at once, without waiting again, until the queue has drained to half.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// Drop the event that just arrived (the published SDK's behaviour).
    #[default]
    DropNewest,
    /// Drop the oldest queued event to make room, favouring fresh data.
    DropOldest,
    /// Stop reading until there is room: back-pressure onto the socket, nothing is lost
    /// (the connector disconnects a subscriber that falls too far behind; the client then
    /// resumes by `Last-Event-ID`).
    Block,
}

/// Why an established stream ended; passed to `on_disconnect` and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The server closed the stream.
    EndOfStream,
    /// Reading failed (connection reset, TLS or HTTP/2 error, …).
    Network(String),
    /// Nothing arrived, not even a heartbeat, for the read timeout.
    Stalled(Duration),
    /// An event grew past the configured maximum size.
    EventTooLarge(usize),
    /// The client was stopped.
    Stopped,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::EndOfStream => f.write_str("the server ended the stream"),
            DisconnectReason::Network(e) => write!(f, "network error: {e}"),
            DisconnectReason::Stalled(t) => write!(f, "nothing received for {t:?}"),
            DisconnectReason::EventTooLarge(limit) => {
                write!(f, "an event exceeded the maximum size of {limit} bytes")
            }
            DisconnectReason::Stopped => f.write_str("the client was stopped"),
        }
    }
}

/// How long a full queue waits for room before a drop policy drops.
pub(crate) const DEFAULT_OVERFLOW_GRACE: Duration = Duration::from_millis(25);

pub(crate) type ConnectHook = Arc<dyn Fn(&str) + Send + Sync>;
pub(crate) type DisconnectHook = Arc<dyn Fn(&DisconnectReason) + Send + Sync>;
pub(crate) type DropHook = Arc<dyn Fn(&Event, u64) + Send + Sync>;
pub(crate) type RetryHook = Arc<dyn Fn(u32, Duration, &str) + Send + Sync>;

/// Callbacks about the connection itself, the same for both clients. They run on the
/// reader, so they must be quick.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub on_connect: Option<ConnectHook>,
    pub on_disconnect: Option<DisconnectHook>,
    pub on_drop: Option<DropHook>,
    pub on_retry: Option<RetryHook>,
}

/// Validated settings of one client.
#[derive(Debug, Clone)]
pub(crate) struct ClientConfig {
    pub url: Url,
    pub token: Option<String>,
    pub headers: HeaderMap,
    pub last_event_id: Option<String>,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub max_retries: Option<u32>,
    pub max_event_size: usize,
    pub max_queue_size: usize,
    pub overflow: OverflowPolicy,
    pub overflow_grace: Duration,
    pub workers: usize,
    pub drain_timeout: Duration,
    /// Extra trusted roots (PEM), checked to parse at build time.
    pub root_certificates: Vec<Vec<u8>>,
}

/// The options as given, checked by [`ConfigBuilder::build`].
#[derive(Clone)]
pub(crate) struct ConfigBuilder {
    pub url: String,
    pub token: Option<String>,
    pub headers: Vec<(String, String)>,
    pub last_event_id: Option<String>,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub max_retries: Option<u32>,
    pub max_event_size: usize,
    pub max_queue_size: usize,
    pub overflow: OverflowPolicy,
    pub overflow_grace: Duration,
    pub workers: usize,
    pub drain_timeout: Duration,
    pub root_certificates: Vec<Vec<u8>>,
    pub hooks: Hooks,
}

impl ConfigBuilder {
    pub(crate) fn new(url: impl Into<String>) -> Self {
        ConfigBuilder {
            url: url.into(),
            token: None,
            headers: Vec::new(),
            last_event_id: None,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(90),
            max_retries: None,
            max_event_size: DEFAULT_MAX_EVENT_SIZE,
            max_queue_size: 500,
            overflow: OverflowPolicy::DropNewest,
            overflow_grace: DEFAULT_OVERFLOW_GRACE,
            workers: 1,
            drain_timeout: Duration::from_secs(5),
            root_certificates: Vec::new(),
            hooks: Hooks::default(),
        }
    }

    /// Checks every option and says what to fix; the token falls back to `AUTOPLAY_TOKEN`.
    pub(crate) fn build(&self) -> Result<(ClientConfig, Hooks), Error> {
        let invalid = |msg: String| Err(Error::InvalidConfig(msg));
        let url = match Url::parse(&self.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            Ok(url) => {
                return invalid(format!(
                    "url {:?} has scheme {:?}; use an http:// or https:// URL of GET /stream/{{product_id}}",
                    self.url,
                    url.scheme()
                ));
            }
            Err(e) => return invalid(format!("url {:?} is not a valid URL: {e}", self.url)),
        };
        if self.max_queue_size == 0 {
            return invalid("max_queue_size must be at least 1".into());
        }
        if self.workers == 0 {
            return invalid("workers must be at least 1".into());
        }
        if self.initial_backoff.is_zero() {
            return invalid("initial_backoff must be greater than zero".into());
        }
        if self.max_backoff < self.initial_backoff {
            return invalid(format!(
                "max_backoff ({:?}) is below initial_backoff ({:?}); raise max_backoff or lower initial_backoff",
                self.max_backoff, self.initial_backoff
            ));
        }
        if self.read_timeout.is_zero() || self.connect_timeout.is_zero() {
            return invalid("read_timeout and connect_timeout must be greater than zero".into());
        }
        if self.max_event_size == 0 {
            return invalid("max_event_size must be at least 1 byte".into());
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let Ok(header_name) = HeaderName::from_bytes(name.trim().as_bytes()) else {
                return invalid(format!(
                    "header name {name:?} is not a valid HTTP header name"
                ));
            };
            let Ok(header_value) = HeaderValue::from_str(value.trim()) else {
                return invalid(format!(
                    "the value of header {name:?} is not a valid HTTP header value"
                ));
            };
            headers.append(header_name, header_value);
        }
        for (i, pem) in self.root_certificates.iter().enumerate() {
            if let Err(e) = reqwest::Certificate::from_pem(pem) {
                return invalid(format!(
                    "root certificate #{} is not a valid PEM certificate: {e}",
                    i + 1
                ));
            }
        }
        let token = self
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .or_else(|| std::env::var(TOKEN_ENV_VAR).ok().filter(|t| !t.is_empty()));
        if let Some(token) = &token
            && HeaderValue::from_str(&format!("Bearer {token}")).is_err()
        {
            return invalid("the token contains characters not allowed in an HTTP header".into());
        }
        let config = ClientConfig {
            url,
            token,
            headers,
            last_event_id: self.last_event_id.clone().filter(|id| !id.is_empty()),
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            max_retries: self.max_retries,
            max_event_size: self.max_event_size,
            max_queue_size: self.max_queue_size,
            overflow: self.overflow,
            overflow_grace: self.overflow_grace,
            workers: self.workers,
            drain_timeout: self.drain_timeout,
            root_certificates: self.root_certificates.clone(),
        };
        Ok((config, self.hooks.clone()))
    }
}

/// Generates the option setters shared by both client builders, so each option is
/// documented and defaulted in one place.
macro_rules! config_setters {
    ($builder:ty) => {
        impl $builder {
            /// API key sent as `Authorization: Bearer <token>`. When unset or empty the
            /// `AUTOPLAY_TOKEN` environment variable is used, read when the client is built.
            pub fn token(mut self, token: impl Into<String>) -> Self {
                self.config.token = Some(token.into());
                self
            }

            /// An extra request header (repeatable), e.g. for a proxy in front of the connector.
            pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
                self.config.headers.push((name.into(), value.into()));
                self
            }

            /// Resume after this event id: sent as `Last-Event-ID` on the first connection.
            /// Later reconnects always send the latest id received.
            pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
                self.config.last_event_id = Some(id.into());
                self
            }

            /// First reconnect delay (default 1 s); it doubles on each failure up to
            /// [`max_backoff`](Self::max_backoff). A server `retry:` field replaces it.
            pub fn initial_backoff(mut self, delay: std::time::Duration) -> Self {
                self.config.initial_backoff = delay;
                self
            }

            /// Cap of the reconnect delay (default 30 s).
            pub fn max_backoff(mut self, delay: std::time::Duration) -> Self {
                self.config.max_backoff = delay;
                self
            }

            /// Time allowed to open the connection and receive the response headers (default 10 s).
            pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
                self.config.connect_timeout = timeout;
                self
            }

            /// Liveness: when nothing at all (event, heartbeat, comment) arrives for this long,
            /// the connection is replaced (default 90 s; the connector sends a heartbeat every 30 s).
            pub fn read_timeout(mut self, timeout: std::time::Duration) -> Self {
                self.config.read_timeout = timeout;
                self
            }

            /// Give up after this many consecutive failed connection attempts and return
            /// [`Error::RetriesExhausted`](crate::Error::RetriesExhausted). Default: retry forever.
            pub fn max_retries(mut self, retries: u32) -> Self {
                self.config.max_retries = Some(retries);
                self
            }

            /// Largest event accepted (default 16 MiB); a larger one drops the connection,
            /// which is then re-established, so memory stays bounded.
            pub fn max_event_size(mut self, bytes: usize) -> Self {
                self.config.max_event_size = bytes;
                self
            }

            /// Events buffered between the reader and the callbacks (default 500).
            ///
            /// The callback side takes events from the queue a few at a time (up to
            /// an eighth of this size, at most 32) to touch the shared queue less
            /// often; such a batch counts whole in `queue_size()` until its last
            /// event is handed to a callback, and the queue refills meanwhile, so up
            /// to that many more events may be held.
            pub fn max_queue_size(mut self, size: usize) -> Self {
                self.config.max_queue_size = size;
                self
            }

            /// What happens when the queue is full (default [`OverflowPolicy::DropNewest`](crate::OverflowPolicy::DropNewest)).
            pub fn overflow_policy(mut self, policy: crate::OverflowPolicy) -> Self {
                self.config.overflow = policy;
                self
            }

            /// How long a full queue waits for room before a drop policy drops (default
            /// 25 ms; zero drops at once). See [`OverflowPolicy`](crate::OverflowPolicy).
            pub fn overflow_grace(mut self, grace: std::time::Duration) -> Self {
                self.config.overflow_grace = grace;
                self
            }

            /// Run callbacks on `n` workers (default 1). Events of one session always go to the
            /// same worker, so each session is still handled in order, one event at a time.
            pub fn workers(mut self, n: usize) -> Self {
                self.config.workers = n;
                self
            }

            /// On stop, how long the workers may keep handling already queued events (default 5 s).
            pub fn drain_timeout(mut self, timeout: std::time::Duration) -> Self {
                self.config.drain_timeout = timeout;
                self
            }

            /// Trust this PEM certificate (repeatable) in addition to the built-in web roots,
            /// for a connector behind a private certificate authority.
            pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
                self.config.root_certificates.push(pem.into());
                self
            }

            /// Called with the URL each time a stream is established. Runs on the reader: keep it quick.
            pub fn on_connect(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Self {
                self.config.hooks.on_connect = Some(std::sync::Arc::new(f));
                self
            }

            /// Called with the reason each time an established stream ends. Runs on the reader.
            pub fn on_disconnect(
                mut self,
                f: impl Fn(&crate::DisconnectReason) + Send + Sync + 'static,
            ) -> Self {
                self.config.hooks.on_disconnect = Some(std::sync::Arc::new(f));
                self
            }

            /// Called before each reconnection wait with the number of consecutive failed
            /// attempts (0 when reconnecting after a stream that delivered events), the
            /// delay about to be waited, and why the last attempt ended. Runs on the reader.
            pub fn on_retry(
                mut self,
                f: impl Fn(u32, std::time::Duration, &str) + Send + Sync + 'static,
            ) -> Self {
                self.config.hooks.on_retry = Some(std::sync::Arc::new(f));
                self
            }

            /// Called for each event dropped because the queue was full, with the running
            /// total of drops. Runs on the reader: keep it quick.
            pub fn on_drop(
                mut self,
                f: impl Fn(&crate::Event, u64) + Send + Sync + 'static,
            ) -> Self {
                self.config.hooks.on_drop = Some(std::sync::Arc::new(f));
                self
            }
        }
    };
}
pub(crate) use config_setters;
