//! Client configuration shared by the blocking and async clients: one set of
//! options, validated once, when the client is built.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::error::Error;
use crate::models::Event;
use crate::retry::{
    DEFAULT_BACKOFF_RESET_AFTER, DEFAULT_MAX_SERVER_DELAY, FailureReason, RetrySettings,
};
use crate::sse::{DEFAULT_MAX_EVENT_SIZE, DEFAULT_MAX_ID_LEN};

/// Environment variable read for the API key when no token is given to the builder.
///
/// Read when the client is built, trimmed of surrounding whitespace (a trailing
/// newline from a file or a `$(...)` is not part of a key); empty or blank counts as
/// unset; then [`APP_TOKEN_ENV_VAR`] is tried.
pub const TOKEN_ENV_VAR: &str = "AUTOPLAY_TOKEN";

/// The published Python SDK 0.13.0's environment variable for the API key, read when
/// neither the builder nor [`TOKEN_ENV_VAR`] gives one, so that a deployment set up
/// for 0.13.0 keeps working. Trimmed, as 0.13.0 trims it.
pub const APP_TOKEN_ENV_VAR: &str = "AUTOPLAY_APP_UNKEY_TOKEN";

/// The token a client built now sends: `explicit` when non-empty (as given, not
/// trimmed), else [`TOKEN_ENV_VAR`], else [`APP_TOKEN_ENV_VAR`] (each trimmed; empty
/// or blank counts as unset), else none. Both client builders resolve it so, when
/// the client is built.
pub(crate) fn resolve_token(explicit: Option<&str>) -> Option<String> {
    fn from_env(name: &str) -> Option<String> {
        let value = std::env::var(name).ok()?;
        let value = value.trim();
        (!value.is_empty()).then(|| value.to_owned())
    }
    explicit
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .or_else(|| from_env(TOKEN_ENV_VAR))
        .or_else(|| from_env(APP_TOKEN_ENV_VAR))
}

/// The default byte budget of the queue between the reader and the callbacks: 16 MiB.
pub const DEFAULT_MAX_QUEUE_BYTES: usize = 16 * 1024 * 1024;

/// `url` with its credentials (user name and password) replaced by `***`, as the
/// client shows a URL in every message, log line and error.
///
/// ```
/// use autoplay_sdk::redact_url;
///
/// assert_eq!(redact_url("https://me:pw@example.com/stream/acme"), "https://***@example.com/stream/acme");
/// assert_eq!(redact_url("http://127.0.0.1:8080/stream/acme"), "http://127.0.0.1:8080/stream/acme");
/// ```
pub fn redact_url(url: &str) -> Cow<'_, str> {
    let Some(scheme_end) = url.find("://") else {
        return Cow::Borrowed(url);
    };
    let authority_start = scheme_end + 3;
    let authority_len = url[authority_start..]
        .find(['/', '?', '#'])
        .unwrap_or(url.len() - authority_start);
    let authority = &url[authority_start..authority_start + authority_len];
    match authority.rfind('@') {
        None => Cow::Borrowed(url),
        Some(at) => Cow::Owned(format!(
            "{}***{}",
            &url[..authority_start],
            &url[authority_start + at..]
        )),
    }
}

/// Redacts the credentials of a parsed URL in place (for the URL a `reqwest::Error`
/// carries into its message).
pub(crate) fn redact_url_in_place(url: &mut Url) {
    if !url.username().is_empty() || url.password().is_some() {
        let _ = url.set_password(None);
        let _ = url.set_username("***");
    }
}

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
    /// The client was stopped.
    Stopped,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::EndOfStream => f.write_str("the server ended the stream"),
            DisconnectReason::Network(e) => write!(f, "network error: {e}"),
            DisconnectReason::Stalled(t) => write!(f, "nothing received for {t:?}"),
            DisconnectReason::Stopped => f.write_str("the client was stopped"),
        }
    }
}

/// How long a full queue waits for room before a drop policy drops.
pub(crate) const DEFAULT_OVERFLOW_GRACE: Duration = Duration::from_millis(25);

pub(crate) type ConnectHook = Arc<dyn Fn(&str) + Send + Sync>;
pub(crate) type DisconnectHook = Arc<dyn Fn(&DisconnectReason) + Send + Sync>;
pub(crate) type DropHook = Arc<dyn Fn(&Event, u64) + Send + Sync>;
pub(crate) type RetryHook = Arc<dyn Fn(u32, Duration, &FailureReason) + Send + Sync>;

/// Callbacks about the connection itself, the same for both clients. They run on the
/// reader, so they must be quick.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub on_connect: Option<ConnectHook>,
    pub on_disconnect: Option<DisconnectHook>,
    pub on_drop: Option<DropHook>,
    pub on_retry: Option<RetryHook>,
}

/// Validated settings of one client. `Debug` shows neither the token nor the
/// URL's credentials.
#[derive(Clone)]
pub(crate) struct ClientConfig {
    pub url: Url,
    /// The URL as every message and log line shows it: credentials redacted.
    pub shown_url: String,
    pub token: Option<String>,
    pub headers: HeaderMap,
    pub last_event_id: Option<String>,
    pub retry: RetrySettings,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub max_event_size: usize,
    pub max_id_len: usize,
    pub max_queue_size: usize,
    pub max_queue_bytes: usize,
    pub overflow: OverflowPolicy,
    pub overflow_grace: Duration,
    pub workers: usize,
    /// The reader decodes events itself when the consumer is behind.
    pub decode_ahead: bool,
    pub drain_timeout: Duration,
    /// Extra trusted roots (PEM), checked to parse at build time.
    pub root_certificates: Vec<Vec<u8>>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.shown_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("last_event_id", &self.last_event_id)
            .field("retry", &self.retry)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_event_size", &self.max_event_size)
            .field("max_id_len", &self.max_id_len)
            .field("max_queue_size", &self.max_queue_size)
            .field("max_queue_bytes", &self.max_queue_bytes)
            .field("overflow", &self.overflow)
            .field("overflow_grace", &self.overflow_grace)
            .field("workers", &self.workers)
            .field("decode_ahead", &self.decode_ahead)
            .field("drain_timeout", &self.drain_timeout)
            .field("root_certificates", &self.root_certificates.len())
            .finish()
    }
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
    pub max_server_delay: Duration,
    pub backoff_reset_after: Duration,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub max_retries: Option<u32>,
    pub max_event_size: usize,
    pub max_id_len: usize,
    pub max_queue_size: usize,
    pub max_queue_bytes: usize,
    pub overflow: OverflowPolicy,
    pub overflow_grace: Duration,
    pub workers: usize,
    pub decode_ahead: bool,
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
            max_server_delay: DEFAULT_MAX_SERVER_DELAY,
            backoff_reset_after: DEFAULT_BACKOFF_RESET_AFTER,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(90),
            max_retries: None,
            max_event_size: DEFAULT_MAX_EVENT_SIZE,
            max_id_len: DEFAULT_MAX_ID_LEN,
            max_queue_size: 500,
            max_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
            overflow: OverflowPolicy::DropNewest,
            overflow_grace: DEFAULT_OVERFLOW_GRACE,
            workers: 1,
            decode_ahead: false,
            drain_timeout: Duration::from_secs(5),
            root_certificates: Vec::new(),
            hooks: Hooks::default(),
        }
    }

    /// Checks every option and says what to fix; the token falls back to
    /// `AUTOPLAY_TOKEN`, then `AUTOPLAY_APP_UNKEY_TOKEN` ([`resolve_token`]).
    pub(crate) fn build(&self) -> Result<(ClientConfig, Hooks), Error> {
        let invalid = |msg: String| Err(Error::InvalidConfig(msg));
        let shown_url = redact_url(&self.url);
        // Without `://`, `Url::parse` says "relative URL without a base" for
        // `127.0.0.1:8080/stream/a` and reads `localhost:8080/...` as scheme
        // "localhost": neither says what to write instead.
        // The text is echoed only with a scheme, so that `redact_url` can find
        // and hide credentials in it (`alice:pw@host/...`).
        if !self.url.contains("://") {
            let guess = format!("http://{}", self.url.trim().trim_start_matches('/'));
            return invalid(format!(
                "the url is not a valid URL: it has no scheme; expected http://HOST/stream/PRODUCT_ID \
                 (did you mean {:?}?)",
                redact_url(&guess)
            ));
        }
        let url = match Url::parse(&self.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            Ok(url) => {
                return invalid(format!(
                    "url {shown_url:?} has scheme {:?}; expected http://HOST/stream/PRODUCT_ID (or https://)",
                    url.scheme()
                ));
            }
            Err(e) => {
                return invalid(format!(
                    "url {shown_url:?} is not a valid URL ({e}); expected http://HOST/stream/PRODUCT_ID"
                ));
            }
        };
        let mut shown = url.clone();
        redact_url_in_place(&mut shown);
        let shown_url = shown.to_string();
        if self.max_queue_size == 0 {
            return invalid("max_queue_size must be at least 1".into());
        }
        if self.max_queue_bytes == 0 {
            return invalid("max_queue_bytes must be at least 1 byte".into());
        }
        if self.max_id_len == 0 {
            return invalid("max_id_len must be at least 1 byte".into());
        }
        if self.max_server_delay.is_zero() {
            return invalid("max_server_delay must be greater than zero".into());
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
        let token = resolve_token(self.token.as_deref());
        if let Some(token) = &token
            && HeaderValue::from_str(&format!("Bearer {token}")).is_err()
        {
            return invalid("the token contains characters not allowed in an HTTP header".into());
        }
        let last_event_id = self.last_event_id.clone().filter(|id| !id.is_empty());
        if let Some(id) = &last_event_id
            && !is_sendable_id(id)
        {
            return invalid(format!(
                "last_event_id {id:?} contains control characters, which cannot be sent in the Last-Event-ID header"
            ));
        }
        let config = ClientConfig {
            url,
            shown_url,
            token,
            headers,
            last_event_id,
            retry: RetrySettings {
                initial_backoff: self.initial_backoff,
                max_backoff: self.max_backoff,
                max_server_delay: self.max_server_delay,
                reset_after: self.backoff_reset_after,
                max_retries: self.max_retries,
            },
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            max_event_size: self.max_event_size,
            max_id_len: self.max_id_len,
            max_queue_size: self.max_queue_size,
            max_queue_bytes: self.max_queue_bytes,
            overflow: self.overflow,
            overflow_grace: self.overflow_grace,
            workers: self.workers,
            decode_ahead: self.decode_ahead,
            drain_timeout: self.drain_timeout,
            root_certificates: self.root_certificates.clone(),
        };
        Ok((config, self.hooks.clone()))
    }
}

/// Whether an event id can be sent as the `Last-Event-ID` header: no C0 control
/// characters (tab included) and no DEL. Anything else, UTF-8 included, is sent as is.
pub(crate) fn is_sendable_id(id: &str) -> bool {
    !id.bytes().any(|b| b < 0x20 || b == 0x7F)
}

/// Generates the option setters shared by both client builders, so each option is
/// documented and defaulted in one place, and their `Clone` (both builders have the
/// fields `config`, `stop`, `on_actions` and `on_summary`).
macro_rules! config_setters {
    ($builder:ty) => {
        impl $builder {
            /// API key sent as `Authorization: Bearer <token>`. When unset or empty the
            /// `AUTOPLAY_TOKEN` environment variable is used, then 0.13.0's
            /// `AUTOPLAY_APP_UNKEY_TOKEN` ([`APP_TOKEN_ENV_VAR`](crate::APP_TOKEN_ENV_VAR)),
            /// each trimmed, read when the client is built.
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
            /// [`max_backoff`](Self::max_backoff), plus a random extra of up to half of it
            /// (never past the cap: the client never waits less than the backoff). A server
            /// `retry:` field replaces it as the base. The backoff goes back to the base once
            /// a stream stayed up for [`backoff_reset_after`](Self::backoff_reset_after).
            pub fn initial_backoff(mut self, delay: std::time::Duration) -> Self {
                self.config.initial_backoff = delay;
                self
            }

            /// Cap of the reconnect delay the client chooses itself (default 30 s). A delay
            /// the server sets (`retry:`, `Retry-After`) may be longer, up to
            /// [`max_server_delay`](Self::max_server_delay).
            pub fn max_backoff(mut self, delay: std::time::Duration) -> Self {
                self.config.max_backoff = delay;
                self
            }

            /// Ceiling of a delay the server sets, by a `retry:` field or a `Retry-After`
            /// header on 429/503 (default 10 minutes). A longer request is cut to it, with a
            /// warning in the log; up to it, the server's delay is obeyed as a minimum.
            pub fn max_server_delay(mut self, delay: std::time::Duration) -> Self {
                self.config.max_server_delay = delay;
                self
            }

            /// How long a stream must stay up before the backoff goes back to its base
            /// (default 60 s). A server that accepts, sends an event and drops again still
            /// sees the delays grow.
            pub fn backoff_reset_after(mut self, healthy_for: std::time::Duration) -> Self {
                self.config.backoff_reset_after = healthy_for;
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
            /// [`Error::RetriesExhausted`](crate::Error::RetriesExhausted). An attempt fails
            /// when it delivers no event; a stream that delivered events starts the count
            /// again. Default: retry forever.
            pub fn max_retries(mut self, retries: u32) -> Self {
                self.config.max_retries = Some(retries);
                self
            }

            /// Largest event accepted, its data and its name (default 16 MiB). A larger
            /// event is skipped: the parser discards it up to its blank line without holding
            /// it, counts it ([`oversized_count`](crate::ConnectorClient::oversized_count)),
            /// logs it once per connection, and reading goes on. Sizes are of the text
            /// handed out (invalid UTF-8 counts as the replacement characters it becomes).
            pub fn max_event_size(mut self, bytes: usize) -> Self {
                self.config.max_event_size = bytes;
                self
            }

            /// Longest event id accepted (default 4096 bytes). A longer `id:` field is
            /// ignored, as the standard ignores an id containing NUL, and logged once per
            /// connection; the last event id stays as it was.
            pub fn max_id_len(mut self, bytes: usize) -> Self {
                self.config.max_id_len = bytes;
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

            /// Bytes of event data buffered between the reader and the callbacks (default
            /// 16 MiB), beside the count of [`max_queue_size`](Self::max_queue_size): the
            /// overflow policy applies to whichever bound is reached first. One event larger
            /// than the budget still passes, alone. The callback side's current batch holds
            /// at most an eighth of the budget more (or one event). See the memory bound in
            /// `docs/architecture.md`.
            pub fn max_queue_bytes(mut self, bytes: usize) -> Self {
                self.config.max_queue_bytes = bytes;
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
            /// Each worker has a small lane (16 events, and an `n`-th of an eighth of
            /// [`max_queue_bytes`](Self::max_queue_bytes), or one event of any size); a full
            /// lane holds events back in the main queue, where the overflow policy applies.
            pub fn workers(mut self, n: usize) -> Self {
                self.config.workers = n;
                self
            }

            /// Let the reader thread decode events too while the callbacks are behind (default
            /// off), so decoding runs on two cores instead of one. Turn it on when the program
            /// sets an allocator that handles memory freed on another thread well (mimalloc,
            /// jemalloc), as the Python package does: a payload the reader decodes is freed
            /// by the callback's thread, which the system allocator (glibc's) does slowly, so
            /// there it costs more CPU per event than it gains (`docs/performance.md`).
            pub fn decode_ahead(mut self, on: bool) -> Self {
                self.config.decode_ahead = on;
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

            /// Called with the URL (credentials redacted) each time a stream is established.
            /// Runs on the reader: keep it quick.
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
            /// delay about to be waited, and why the last attempt ended (a
            /// [`FailureReason`](crate::FailureReason); its `Display` is one line). Runs on
            /// the reader.
            pub fn on_retry(
                mut self,
                f: impl Fn(u32, std::time::Duration, &crate::FailureReason) + Send + Sync + 'static,
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

            /// The drain timeout set so far (see [`drain_timeout`](Self::drain_timeout)).
            pub fn configured_drain_timeout(&self) -> std::time::Duration {
                self.config.drain_timeout
            }

            /// The byte bound of the queue set so far (see
            /// [`max_queue_bytes`](Self::max_queue_bytes)).
            pub fn configured_max_queue_bytes(&self) -> usize {
                self.config.max_queue_bytes
            }
        }

        /// The same options and callbacks, with a [`StopHandle`](crate::StopHandle) of
        /// its own: configure a builder once and clone it for each run, and stopping
        /// one run does not stop the next.
        impl Clone for $builder {
            fn clone(&self) -> Self {
                Self {
                    config: self.config.clone(),
                    stop: crate::StopHandle::default(),
                    on_actions: self.on_actions.clone(),
                    on_summary: self.on_summary.clone(),
                }
            }
        }
    };
}
pub(crate) use config_setters;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_user_and_password_and_nothing_else() {
        for (url, shown) in [
            ("http://u:p@h:8080/stream/a", "http://***@h:8080/stream/a"),
            ("https://token@h/stream/a", "https://***@h/stream/a"),
            ("http://:p@h/", "http://***@h/"),
            ("http://u:p@w@h/x", "http://***@h/x"),
            (
                "http://h/stream/a?next=x@y#z@w",
                "http://h/stream/a?next=x@y#z@w",
            ),
            ("http://h/a@b", "http://h/a@b"),
            ("http://u:p@h", "http://***@h"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
            if let Ok(mut parsed) = Url::parse(url) {
                redact_url_in_place(&mut parsed);
                assert!(!parsed.as_str().contains(":p@"), "{parsed}");
            }
        }
    }

    fn build_error(url: &str) -> String {
        match ConfigBuilder::new(url).build() {
            Err(Error::InvalidConfig(message)) => message,
            Err(other) => panic!("{url}: {other}"),
            Ok(_) => panic!("{url} was accepted"),
        }
    }

    #[test]
    fn urls_without_a_scheme_say_what_to_write() {
        for (url, guess) in [
            (
                "127.0.0.1:8080/stream/acme",
                "\"http://127.0.0.1:8080/stream/acme\"",
            ),
            // `Url::parse` takes `localhost` for a scheme.
            (
                "localhost:8080/stream/acme",
                "\"http://localhost:8080/stream/acme\"",
            ),
            ("alice:hunter2@h/stream/a", "\"http://***@h/stream/a\""),
        ] {
            let message = build_error(url);
            assert!(
                message.contains("expected http://HOST/stream/PRODUCT_ID"),
                "{message}"
            );
            assert!(message.contains(guess), "{message}");
            assert!(!message.contains("relative URL"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        let message = build_error("ftp://h/stream/a");
        assert!(
            message.contains("expected http://HOST/stream/PRODUCT_ID"),
            "{message}"
        );
    }

    #[test]
    fn the_config_shows_no_secret() {
        let mut builder = ConfigBuilder::new("http://alice:hunter2@127.0.0.1:1/stream/a");
        builder.token = Some("tok_secret".into());
        let (config, _) = builder.build().unwrap();
        assert_eq!(config.shown_url, "http://***@127.0.0.1:1/stream/a");
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("tok_secret"),
            "{debug}"
        );
    }

    #[test]
    fn a_cloned_builder_keeps_the_options_and_has_its_own_stop_handle() {
        let url = "http://127.0.0.1:1/stream/a";
        let sync = crate::ConnectorClient::builder(url)
            .drain_timeout(Duration::from_millis(1500))
            .max_queue_bytes(4096);
        let asynchronous = crate::AsyncConnectorClient::builder(url)
            .drain_timeout(Duration::from_millis(1500))
            .max_queue_bytes(4096);
        sync.stop_handle().stop();
        asynchronous.stop_handle().stop();
        let (a, b) = (sync.clone(), asynchronous.clone());
        assert!(!a.stop_handle().is_stopped() && !b.stop_handle().is_stopped());
        assert!(sync.stop_handle().is_stopped() && asynchronous.stop_handle().is_stopped());
        for (drain, bytes) in [
            (a.configured_drain_timeout(), a.configured_max_queue_bytes()),
            (b.configured_drain_timeout(), b.configured_max_queue_bytes()),
        ] {
            assert_eq!((drain, bytes), (Duration::from_millis(1500), 4096));
        }
        let defaults = crate::ConnectorClient::builder(url);
        assert_eq!(defaults.configured_drain_timeout(), Duration::from_secs(5));
        assert_eq!(
            defaults.configured_max_queue_bytes(),
            crate::DEFAULT_MAX_QUEUE_BYTES
        );
    }

    #[test]
    fn ids_with_control_characters_cannot_be_sent() {
        assert!(is_sendable_id("1042"));
        assert!(is_sendable_id("été 7"));
        for id in ["7\u{1}", "a\tb", "x\u{7f}", "\u{0}"] {
            assert!(!is_sendable_id(id), "{id:?}");
        }
    }
}
