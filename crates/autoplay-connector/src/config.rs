//! Configuration: products, keys, secrets, timings, and how to load them.
//!
//! Build a [`ConnectorConfig`] in code, from TOML ([`ConnectorConfig::from_toml_str`],
//! [`ConnectorConfig::from_toml_file`]), from `--product ID:KEY[:SECRET]` specs
//! ([`parse_product_spec`]), or any mix. Keys and secrets are wrapped so that
//! `Debug` (and therefore logs) never shows them.
//!
//! A short example; `docs/configuration.md` in the repository lists every key,
//! with its default and limits, every environment variable, and how the
//! `autoplay connector` flags and variables override the file.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! heartbeat_s = 30
//! metrics_token = { env = "AUTOPLAY_METRICS_TOKEN" }   # optional: /metrics needs it
//! admin_token = { file = "/run/secrets/autoplay_admin" }  # optional: turns /admin on
//!
//! [llm]                       # optional; AUTOPLAY_LLM_* variables override it
//! base_url = "https://api.openai.com/v1"
//! model = "gpt-4o-mini"
//!
//! [[products]]
//! id = "acme"
//! api_keys = ["sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
//! webhook_secret = { file = "/run/secrets/acme_webhook" }
//! summary_threshold = 5
//! ```
//!
//! Every key and secret may be a string, `{ file = "<path>" }` (the file's text
//! without its trailing newline) or `{ env = "<VARIABLE>" }`, read when the file is
//! loaded.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Environment variable with the LLM backend's base URL (e.g. `https://api.openai.com/v1`).
pub const LLM_BASE_URL_ENV: &str = "AUTOPLAY_LLM_BASE_URL";
/// Environment variable with the LLM model name.
pub const LLM_MODEL_ENV: &str = "AUTOPLAY_LLM_MODEL";
/// Environment variable with the LLM API key.
pub const LLM_API_KEY_ENV: &str = "AUTOPLAY_LLM_API_KEY";

/// The smallest [`ConnectorConfig::max_frame_bytes`] accepted.
pub const MIN_FRAME_BYTES: usize = 4096;

/// Environment variable with products, `ID:API_KEY[:WEBHOOK_SECRET]` specs
/// separated by whitespace or commas (see [`ConnectorConfig::apply_secrets_env`]).
pub const PRODUCTS_ENV: &str = "AUTOPLAY_PRODUCTS";
/// Environment variable with the token `GET /metrics` then requires.
pub const METRICS_TOKEN_ENV: &str = "AUTOPLAY_METRICS_TOKEN";

/// Environment variable with the token the admin API (`/admin/products`)
/// requires; without it (or `admin_token` in the file) the admin API is off.
pub const ADMIN_TOKEN_ENV: &str = "AUTOPLAY_ADMIN_TOKEN";

/// The product created when none is configured.
pub const DEFAULT_PRODUCT_ID: &str = "demo";

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("invalid config: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value is out of range or inconsistent.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// A secret string (webhook secret, plain API key, LLM key): `Debug` and `Display`
/// print `<redacted>`, so it cannot leak into logs by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl<'de> Deserialize<'de> for Secret {
    /// A string, or where to read it: `{ file = "/run/secrets/x" }` (the file's
    /// text, without its trailing newline) or `{ env = "VARIABLE" }`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor)
    }
}

/// Reads a [`Secret`] given inline, from a file or from the environment, so keys
/// and secrets need not sit in the config file itself (or in argv).
struct SecretVisitor;

impl<'de> serde::de::Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a secret as a string, { file = \"/path/to/file\" } or { env = \"VARIABLE\" }")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
        use serde::de::Error as _;
        let Some(source) = map.next_key::<String>()? else {
            return Err(A::Error::custom(
                "an empty table is no secret: use { file = \"/path\" } or { env = \"VARIABLE\" }",
            ));
        };
        let place: String = map.next_value()?;
        if map.next_key::<String>()?.is_some() {
            return Err(A::Error::custom(
                "a secret comes from one place: { file = \"/path\" } or { env = \"VARIABLE\" }",
            ));
        }
        let text = match source.as_str() {
            "file" => std::fs::read_to_string(&place).map_err(|e| {
                A::Error::custom(format!("cannot read the secret file {place}: {e}"))
            })?,
            "env" => std::env::var(&place).map_err(|_| {
                A::Error::custom(format!("the environment variable {place} is not set"))
            })?,
            other => {
                return Err(A::Error::custom(format!(
                    "unknown secret source {other:?}: use {{ file = \"/path\" }} or {{ env = \"VARIABLE\" }}"
                )));
            }
        };
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            return Err(A::Error::custom(format!(
                "the secret from {source} {place} is empty"
            )));
        }
        Ok(Secret::new(text))
    }
}

/// An API key a stream client presents as `Authorization: Bearer <key>`.
///
/// Only the SHA-256 digest is kept, whether the key was configured plain or as
/// `sha256:<64 hex>`, so every comparison is between two 32-byte digests in
/// constant time, whatever the lengths of the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    digest: [u8; 32],
}

impl ApiKey {
    /// A key given in plain text.
    pub fn plain(key: &str) -> Self {
        Self {
            digest: sha256(key.as_bytes()),
        }
    }

    /// A key given as the hex SHA-256 of its text (with or without `sha256:`).
    pub fn from_sha256_hex(hex_digest: &str) -> Result<Self, ConfigError> {
        let hex_digest = hex_digest.strip_prefix("sha256:").unwrap_or(hex_digest);
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut digest)
            .map_err(|_| ConfigError::Invalid("a sha256: API key needs 64 hex digits".into()))?;
        Ok(Self { digest })
    }

    /// `sha256:<64 hex>` is a hash; anything else is a plain key.
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        if spec.is_empty() {
            return Err(ConfigError::Invalid("an API key cannot be empty".into()));
        }
        if spec.starts_with("sha256:") {
            Self::from_sha256_hex(spec)
        } else {
            Ok(Self::plain(spec))
        }
    }

    /// Whether `presented` (the key a client sent) is this key, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        self.matches_digest(&sha256(presented.as_bytes()))
    }

    pub(crate) fn matches_digest(&self, digest: &[u8; 32]) -> bool {
        self.digest.ct_eq(digest).into()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for ApiKey {
    /// A key (plain or `sha256:<hex>`) inline, from `{ file = "..." }` or from
    /// `{ env = "..." }`, as a [`Secret`] is.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = Secret::deserialize(d)?;
        ApiKey::parse(spec.expose()).map_err(serde::de::Error::custom)
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// One product: its stream keys, its webhook secret, its summary threshold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductConfig {
    /// The `{product_id}` of the URLs.
    pub id: String,
    /// Keys that may read `GET /stream/{id}`.
    #[serde(default)]
    pub api_keys: Vec<ApiKey>,
    /// What PostHog sends (as `X-PostHog-Secret`, `Authorization: Bearer`, or the key
    /// of a `sha256=` HMAC signature).
    #[serde(default)]
    pub webhook_secret: Option<Secret>,
    /// For a product without a webhook secret: whether ingest accepts its API keys
    /// in the secret's place (no HMAC then). Off unless set: a stream key is often
    /// handed to a frontend or a chatbot, and with this on it can post events too.
    /// An error together with `webhook_secret`.
    #[serde(default)]
    pub ingest_with_api_keys: bool,
    /// Actions per summary for this product; the connector default when `None`;
    /// `0` turns summaries off.
    #[serde(default)]
    pub summary_threshold: Option<usize>,
}

impl ProductConfig {
    /// A product with no keys yet.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            api_keys: Vec::new(),
            webhook_secret: None,
            ingest_with_api_keys: false,
            summary_threshold: None,
        }
    }

    /// Adds a stream API key (plain, or `sha256:<hex>`).
    pub fn with_api_key(mut self, key: &str) -> Result<Self, ConfigError> {
        self.api_keys.push(ApiKey::parse(key)?);
        Ok(self)
    }

    /// Sets the webhook secret.
    pub fn with_webhook_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.webhook_secret = Some(secret.into());
        self
    }

    /// Lets ingest accept this product's API keys, for a product without a webhook
    /// secret (see [`ProductConfig::ingest_with_api_keys`]).
    pub fn with_ingest_by_api_keys(mut self) -> Self {
        self.ingest_with_api_keys = true;
        self
    }

    /// Sets this product's summary threshold (`0` = off).
    pub fn with_summary_threshold(mut self, threshold: usize) -> Self {
        self.summary_threshold = Some(threshold);
        self
    }
}

/// Parses a `--product ID:API_KEY[:WEBHOOK_SECRET]` flag. The key may be
/// `sha256:<64 hex>`; the secret is everything after the key's colon.
///
/// The short form `ID:API_KEY`, without a secret, says that the key serves ingest
/// too ([`ProductConfig::ingest_with_api_keys`]), as it always has: give a secret
/// to keep stream keys out of ingest.
pub fn parse_product_spec(spec: &str) -> Result<ProductConfig, ConfigError> {
    let bad = || ConfigError::Invalid("a product is ID:API_KEY[:WEBHOOK_SECRET]".into());
    let (id, rest) = spec.split_once(':').ok_or_else(bad)?;
    let (key, secret) = if let Some(hashed) = rest.strip_prefix("sha256:") {
        match hashed.split_once(':') {
            Some((hex_digest, secret)) => (&rest[..7 + hex_digest.len()], Some(secret)),
            None => (rest, None),
        }
    } else {
        match rest.split_once(':') {
            Some((key, secret)) => (key, Some(secret)),
            None => (rest, None),
        }
    };
    if key.is_empty() {
        return Err(bad());
    }
    let mut product = ProductConfig::new(id).with_api_key(key)?;
    match secret {
        Some("") => {
            return Err(ConfigError::Invalid(
                "the webhook secret after the second ':' is empty".into(),
            ));
        }
        Some(secret) => product = product.with_webhook_secret(secret),
        None => product = product.with_ingest_by_api_keys(),
    }
    validate_product_id(&product.id)?;
    Ok(product)
}

pub(crate) fn validate_product_id(id: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "product id {id:?} must be 1-128 characters of letters, digits, '-', '_' or '.'"
        )))
    }
}

/// The OpenAI-compatible chat-completions backend for summaries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// The API root; `/chat/completions` is appended (e.g. `https://api.openai.com/v1`).
    pub base_url: String,
    /// The model name.
    pub model: String,
    /// Sent as `Authorization: Bearer`.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// How long one summary may take before the embedded summariser is used instead.
    #[serde(
        default = "default_llm_timeout",
        rename = "timeout_s",
        deserialize_with = "de_seconds"
    )]
    pub timeout: Duration,
}

fn default_llm_timeout() -> Duration {
    Duration::from_secs(10)
}

impl LlmConfig {
    /// A backend at `base_url` using `model`, with no key and a 10 s timeout.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            timeout: default_llm_timeout(),
        }
    }

    /// From `AUTOPLAY_LLM_BASE_URL`, `AUTOPLAY_LLM_MODEL` and `AUTOPLAY_LLM_API_KEY`;
    /// `None` unless the base URL is set. The model defaults to `gpt-4o-mini`.
    pub fn from_env() -> Option<Self> {
        let base_url = env_nonempty(LLM_BASE_URL_ENV)?;
        let model = env_nonempty(LLM_MODEL_ENV).unwrap_or_else(|| "gpt-4o-mini".to_owned());
        let mut config = Self::new(base_url, model);
        config.api_key = env_nonempty(LLM_API_KEY_ENV).map(Secret::new);
        Some(config)
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Everything the connector needs to run.
///
/// `Default` gives the documented defaults and no products; see
/// [`ensure_default_product`](Self::ensure_default_product).
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// Where to listen (default `127.0.0.1:8080`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// The products served.
    pub products: Vec<ProductConfig>,
    /// Time between heartbeats on idle and busy streams alike (default 30 s).
    pub heartbeat_interval: Duration,
    /// Events per product kept for `Last-Event-ID` replay (default 10,000).
    pub replay_capacity: usize,
    /// Frames one subscriber may have queued before it counts as too slow and is
    /// disconnected (default 1,024).
    pub subscriber_buffer: usize,
    /// Largest accepted request body in bytes (default 5 MiB).
    pub body_limit: usize,
    /// Time a request has to deliver its whole body once its handler starts
    /// reading it (default 15 s); slower bodies get 408 and their connection
    /// closed. Request heads have hyper's own 30 s.
    pub body_read_timeout: Duration,
    /// Time a connection may refuse every byte written to it (a subscriber that
    /// reads nothing, its socket buffers full) before it is closed (default 30 s).
    pub write_timeout: Duration,
    /// Largest SSE frame sent, in bytes (default 1 MiB): a bigger batch goes out
    /// as several payloads of the same session, in order. At least 4 KiB.
    pub max_frame_bytes: usize,
    /// Bytes of frames per product kept for replay (default 64 MiB), beside
    /// [`replay_capacity`](Self::replay_capacity): whichever bound is reached first
    /// evicts the oldest frames. At least [`max_frame_bytes`](Self::max_frame_bytes).
    pub replay_bytes: usize,
    /// Actions per session summary, for products that do not set one (default 10;
    /// 0 = off).
    pub summary_threshold: usize,
    /// A session with no action for this long is forgotten (default 30 min).
    pub session_idle_timeout: Duration,
    /// The LLM summary backend; the embedded summariser when `None`.
    pub llm: Option<LlmConfig>,
    /// When set, `GET /metrics` needs `Authorization: Bearer <token>` (401
    /// otherwise); open when `None` (the default).
    pub metrics_token: Option<Secret>,
    /// How long a stream ticket from `POST /tickets/{product_id}` opens streams
    /// (default 60 s; the live page's way into `GET /stream`).
    pub ticket_ttl: Duration,
    /// When set, the admin API (`/admin/products`) is on and needs
    /// `Authorization: Bearer <token>`; when `None` (the default) every
    /// `/admin` path answers 404, as if it did not exist.
    pub admin_token: Option<Secret>,
    /// Where the event logs and session state live (default
    /// [`StoreConfig::Memory`]).
    pub store: StoreConfig,
}

/// Where the connector keeps its event logs (the replay window and the ids) and
/// the session state summaries and email learning need.
///
/// Written `memory`, `file://<dir>` or a directory path (`/var/lib/autoplay`,
/// `./data`): the `store` key of the TOML file and `--store`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreConfig {
    /// In this process only: fastest, and a restart starts from nothing (ids
    /// from 1, no replay window, no pending summaries). The default, and what
    /// `autoplay demo` uses.
    #[default]
    Memory,
    /// A durable embedded database (redb) in this directory, for a single-node
    /// deployment: after a restart, even a `kill -9`, ids go on where they were,
    /// clients resume with `Last-Event-ID`, and pending summaries and learnt
    /// emails are kept. A webhook is answered 200 once its events are on disk.
    Embedded(std::path::PathBuf),
    /// Redis Streams at this `redis://host:port[/db]` URL, the scale-out
    /// store: any number of replicas serve the same products, each tailing
    /// the product's stream for its own subscribers. A webhook is answered 200
    /// once Redis took its events (XADD returned); how durable that is, is
    /// Redis's persistence setting (`appendonly`). Query options:
    /// `dedupe_ttl_s=N` (default 3600, `0`: off) is how long a webhook's events
    /// are recognised when PostHog delivers the body again;
    /// `summary_lease_s=N` (default 60) is how long a replica holds a due
    /// summary before another takes it over; `claim_interval_s=N` (default 5)
    /// is how often each replica looks for such summaries.
    Redis(String),
}

impl StoreConfig {
    /// The forms [`parse`](Self::parse) takes, for messages and `--help`.
    pub const FORMS: &'static str =
        "memory, file://<dir>, a directory path or redis://host:port[/db]";

    /// Parses `memory`, `file://<dir>`, a directory path or
    /// `redis://host:port[/db]`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let text = text.trim();
        let invalid = |why: &str| {
            ConfigError::Invalid(format!(
                "store = {text:?}: {why}; expected {}, e.g. store = \"memory\" or \
                 store = \"file:///var/lib/autoplay\"",
                Self::FORMS
            ))
        };
        if text.eq_ignore_ascii_case("memory") {
            return Ok(Self::Memory);
        }
        if let Some(dir) = text.strip_prefix("file://") {
            if dir.is_empty() {
                return Err(invalid("file:// needs a directory"));
            }
            return Ok(Self::Embedded(dir.into()));
        }
        if text.is_empty() {
            return Err(invalid("empty"));
        }
        if let Some(rest) = text.strip_prefix("redis://") {
            let host = rest.split(['/', '?']).next().unwrap_or("");
            if host.is_empty() {
                return Err(invalid(
                    "redis:// needs a host, e.g. redis://127.0.0.1:6379",
                ));
            }
            // The query (`?dedupe_ttl_s=…`) is the Redis store's to read.
            let rest = rest.split('?').next().unwrap_or("");
            if let Some(db) = rest.split_once('/').map(|(_, db)| db)
                && !db.is_empty()
                && db.parse::<u32>().is_err()
            {
                return Err(invalid("the part after the host is the database number"));
            }
            return Ok(Self::Redis(text.to_owned()));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(invalid(&format!(
                "{scheme}:// is not a store this connector has"
            )));
        }
        Ok(Self::Embedded(text.into()))
    }
}

impl std::fmt::Display for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Embedded(dir) => write!(f, "file://{}", dir.display()),
            // Without a password, should the URL carry one.
            Self::Redis(url) => match url.split_once('@') {
                Some((_, host)) => write!(f, "redis://…@{host}"),
                None => f.write_str(url),
            },
        }
    }
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            products: Vec::new(),
            heartbeat_interval: Duration::from_secs(30),
            replay_capacity: 10_000,
            subscriber_buffer: 1024,
            body_limit: 5 * 1024 * 1024,
            body_read_timeout: Duration::from_secs(15),
            write_timeout: Duration::from_secs(30),
            max_frame_bytes: 1024 * 1024,
            replay_bytes: 64 * 1024 * 1024,
            summary_threshold: 10,
            session_idle_timeout: Duration::from_secs(30 * 60),
            llm: None,
            metrics_token: None,
            ticket_ttl: Duration::from_secs(60),
            admin_token: None,
            store: StoreConfig::Memory,
        }
    }
}

/// The product [`ConnectorConfig::ensure_default_product`] made up.
#[derive(Debug, Clone)]
pub struct GeneratedProduct {
    /// Its id (`demo`).
    pub id: String,
    /// Its random API key: show it to the user once.
    pub api_key: Secret,
}

/// The TOML file's shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default, deserialize_with = "de_listen")]
    listen: Option<SocketAddr>,
    #[serde(default, deserialize_with = "de_opt_seconds")]
    heartbeat_s: Option<Duration>,
    replay_events: Option<usize>,
    subscriber_buffer: Option<usize>,
    body_limit_bytes: Option<usize>,
    #[serde(default, deserialize_with = "de_opt_seconds")]
    body_timeout_s: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_seconds")]
    write_timeout_s: Option<Duration>,
    max_frame_bytes: Option<usize>,
    replay_bytes: Option<usize>,
    summary_threshold: Option<usize>,
    #[serde(default, deserialize_with = "de_opt_seconds")]
    session_idle_s: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_seconds")]
    ticket_ttl_s: Option<Duration>,
    llm: Option<LlmConfig>,
    metrics_token: Option<Secret>,
    admin_token: Option<Secret>,
    store: Option<String>,
    #[serde(default, deserialize_with = "de_products")]
    products: Vec<ProductConfig>,
}

/// `listen`: std's "invalid socket address syntax" does not show the form.
fn de_listen<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    text.trim().parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "listen = {text:?}: expected \"IP:PORT\", e.g. listen = \"127.0.0.1:8080\" \
             (an IP address, not a host name; 0.0.0.0 for every interface)"
        ))
    })
}

/// `products`: `[products]` (one table) instead of `[[products]]` (an array of
/// tables) is an easy slip, and serde's "invalid type: map, expected a
/// sequence" does not point at the brackets.
fn de_products<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ProductConfig>, D::Error> {
    struct Products;

    impl<'de> serde::de::Visitor<'de> for Products {
        type Value = Vec<ProductConfig>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("one [[products]] table per product")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut products = Vec::new();
            while let Some(product) = seq.next_element()? {
                products.push(product);
            }
            Ok(products)
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, _map: A) -> Result<Self::Value, A::Error> {
            Err(serde::de::Error::custom(
                "write [[products]] (two brackets), one table per product, e.g.\n\
                 [[products]]\nid = \"acme\"\napi_keys = [\"ak_...\"]\n\n\
                 [[products]]\nid = \"beta\"\napi_keys = [\"ak_...\"]",
            ))
        }
    }

    d.deserialize_seq(Products)
}

fn de_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(d)?;
    // Not `seconds`'s error: its "invalid config: " would then be said twice,
    // once here and once around the TOML error.
    seconds(secs).map_err(|_| {
        serde::de::Error::custom(format!(
            "{secs} is not a positive number of seconds; expected e.g. 30 or 0.5"
        ))
    })
}

fn de_opt_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_seconds(d).map(Some)
}

/// Seconds (fractions allowed, so tests can use milliseconds) as a duration.
pub fn seconds(secs: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| ConfigError::Invalid(format!("{secs} is not a positive number of seconds")))
}

impl ConnectorConfig {
    /// Parses a TOML config (see the module docs); unset values keep their defaults.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let file: FileConfig = toml::from_str(text)?;
        let mut config = Self::default();
        if let Some(listen) = file.listen {
            config.listen = listen;
        }
        if let Some(heartbeat) = file.heartbeat_s {
            config.heartbeat_interval = heartbeat;
        }
        if let Some(n) = file.replay_events {
            config.replay_capacity = n;
        }
        if let Some(n) = file.subscriber_buffer {
            config.subscriber_buffer = n;
        }
        if let Some(n) = file.body_limit_bytes {
            config.body_limit = n;
        }
        if let Some(timeout) = file.body_timeout_s {
            config.body_read_timeout = timeout;
        }
        if let Some(timeout) = file.write_timeout_s {
            config.write_timeout = timeout;
        }
        if let Some(n) = file.max_frame_bytes {
            config.max_frame_bytes = n;
        }
        if let Some(n) = file.replay_bytes {
            config.replay_bytes = n;
        }
        if let Some(n) = file.summary_threshold {
            config.summary_threshold = n;
        }
        if let Some(idle) = file.session_idle_s {
            config.session_idle_timeout = idle;
        }
        if let Some(ttl) = file.ticket_ttl_s {
            config.ticket_ttl = ttl;
        }
        config.llm = file.llm;
        config.metrics_token = file.metrics_token;
        config.admin_token = file.admin_token;
        if let Some(store) = file.store {
            config.store = StoreConfig::parse(&store)?;
        }
        config.products = file.products;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a TOML config file.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// Adds a product.
    pub fn with_product(mut self, product: ProductConfig) -> Self {
        self.products.push(product);
        self
    }

    /// Adds a product, replacing one with the same id (so a `--product` flag can
    /// override the config file).
    pub fn set_product(&mut self, product: ProductConfig) {
        match self.products.iter_mut().find(|p| p.id == product.id) {
            Some(existing) => *existing = product,
            None => self.products.push(product),
        }
    }

    /// Lets the `AUTOPLAY_LLM_*` environment variables choose the LLM backend:
    /// when `AUTOPLAY_LLM_BASE_URL` is set it replaces the configured backend's URL
    /// (or creates one), and the model and key variables replace theirs when set.
    pub fn apply_llm_env(&mut self) {
        let base = env_nonempty(LLM_BASE_URL_ENV);
        let model = env_nonempty(LLM_MODEL_ENV);
        let key = env_nonempty(LLM_API_KEY_ENV);
        match (&mut self.llm, base) {
            (Some(llm), base) => {
                if let Some(base) = base {
                    llm.base_url = base;
                }
                if let Some(model) = model {
                    llm.model = model;
                }
                if let Some(key) = key {
                    llm.api_key = Some(Secret::new(key));
                }
            }
            (None, Some(_)) => self.llm = LlmConfig::from_env(),
            (None, None) => {}
        }
    }

    /// Reads secrets the environment holds, so they need not be passed as
    /// arguments (visible to every user of the machine): products from
    /// `AUTOPLAY_PRODUCTS` (`ID:API_KEY[:WEBHOOK_SECRET]` specs separated by
    /// whitespace or commas, each replacing a product of the same id) and the
    /// metrics token from `AUTOPLAY_METRICS_TOKEN`. An error never repeats a spec.
    pub fn apply_secrets_env(&mut self) -> Result<(), ConfigError> {
        if let Some(specs) = env_nonempty(PRODUCTS_ENV) {
            for (i, spec) in specs
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|s| !s.is_empty())
                .enumerate()
            {
                let product = parse_product_spec(spec).map_err(|e| {
                    ConfigError::Invalid(format!("{PRODUCTS_ENV}, product #{}: {e}", i + 1))
                })?;
                self.set_product(product);
            }
        }
        if let Some(token) = env_nonempty(METRICS_TOKEN_ENV) {
            self.metrics_token = Some(Secret::new(token));
        }
        if let Some(token) = env_nonempty(ADMIN_TOKEN_ENV) {
            self.admin_token = Some(Secret::new(token));
        }
        Ok(())
    }

    /// With no product configured, adds product `demo` with a random API key and
    /// returns it (the caller prints the key; the connector never logs it).
    pub fn ensure_default_product(&mut self) -> Option<GeneratedProduct> {
        if !self.products.is_empty() {
            return None;
        }
        let key = random_key("ak_");
        self.products.push(ProductConfig {
            id: DEFAULT_PRODUCT_ID.to_owned(),
            api_keys: vec![ApiKey::plain(key.expose())],
            webhook_secret: None,
            // The banner tells the user to post webhooks with the key: a local
            // demo has nobody to hide it from.
            ingest_with_api_keys: true,
            summary_threshold: None,
        });
        Some(GeneratedProduct {
            id: DEFAULT_PRODUCT_ID.to_owned(),
            api_key: key,
        })
    }

    /// Checks ids, limits and the LLM settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for product in &self.products {
            validate_product_id(&product.id)?;
            if !seen.insert(product.id.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "product {:?} is configured twice",
                    product.id
                )));
            }
            if product
                .webhook_secret
                .as_ref()
                .is_some_and(|s| s.expose().is_empty())
            {
                return Err(ConfigError::Invalid(format!(
                    "product {:?} has an empty webhook secret",
                    product.id
                )));
            }
            if product.webhook_secret.is_some() && product.ingest_with_api_keys {
                return Err(ConfigError::Invalid(format!(
                    "product {:?} sets both webhook_secret and ingest_with_api_keys = true: \
                     with a secret only the secret authenticates ingest; remove one of them",
                    product.id
                )));
            }
        }
        if self.replay_capacity == 0 {
            return Err(ConfigError::Invalid(
                "replay_events must be at least 1".into(),
            ));
        }
        if self.subscriber_buffer == 0 {
            return Err(ConfigError::Invalid(
                "subscriber_buffer must be at least 1".into(),
            ));
        }
        if self.ticket_ttl.is_zero() {
            return Err(ConfigError::Invalid(
                "ticket_ttl_s must be positive seconds, e.g. ticket_ttl_s = 60".into(),
            ));
        }
        if self.heartbeat_interval.is_zero() || self.session_idle_timeout.is_zero() {
            return Err(ConfigError::Invalid("intervals must be positive".into()));
        }
        if self.body_read_timeout.is_zero() || self.write_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "body_timeout_s and write_timeout_s must be positive seconds, e.g. body_timeout_s = 15"
                    .into(),
            ));
        }
        if self.max_frame_bytes < MIN_FRAME_BYTES {
            return Err(ConfigError::Invalid(format!(
                "max_frame_bytes = {} is too small: it must be at least {MIN_FRAME_BYTES} \
                 (one action with its properties must fit), e.g. max_frame_bytes = 1048576",
                self.max_frame_bytes
            )));
        }
        if self.replay_bytes < self.max_frame_bytes {
            return Err(ConfigError::Invalid(format!(
                "replay_bytes = {} must be at least max_frame_bytes = {} (the newest frame \
                 is always kept), e.g. replay_bytes = 67108864",
                self.replay_bytes, self.max_frame_bytes
            )));
        }
        if self
            .metrics_token
            .as_ref()
            .is_some_and(|t| t.expose().trim().is_empty())
        {
            return Err(ConfigError::Invalid(
                "metrics_token is empty: give a token, e.g. metrics_token = { env = \"AUTOPLAY_METRICS_TOKEN\" }, or leave it out"
                    .into(),
            ));
        }
        if self
            .admin_token
            .as_ref()
            .is_some_and(|t| t.expose().trim().len() < 16)
        {
            return Err(ConfigError::Invalid(
                "admin_token must be at least 16 characters (it can register and delete products), \
                 e.g. admin_token = { env = \"AUTOPLAY_ADMIN_TOKEN\" }, or leave it out"
                    .into(),
            ));
        }
        if let Some(llm) = &self.llm
            && !(llm.base_url.starts_with("http://") || llm.base_url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(
                "the LLM base_url must be an http(s) URL".into(),
            ));
        }
        Ok(())
    }
}

/// A random token: `prefix` and 32 hex digits (128 bits from the OS generator).
pub fn random_key(prefix: &str) -> Secret {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random number generator is available");
    Secret(format!("{prefix}{}", hex::encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_values() {
        assert_eq!(StoreConfig::parse("memory").unwrap(), StoreConfig::Memory);
        assert_eq!(StoreConfig::parse(" MEMORY ").unwrap(), StoreConfig::Memory);
        assert_eq!(
            StoreConfig::parse("file:///var/lib/autoplay").unwrap(),
            StoreConfig::Embedded("/var/lib/autoplay".into())
        );
        assert_eq!(
            StoreConfig::parse("./data").unwrap(),
            StoreConfig::Embedded("./data".into())
        );
        assert_eq!(
            StoreConfig::parse("redis://127.0.0.1:6379/2").unwrap(),
            StoreConfig::Redis("redis://127.0.0.1:6379/2".into())
        );
        assert_eq!(
            StoreConfig::parse("redis://h:1/2?dedupe_ttl_s=60").unwrap(),
            StoreConfig::Redis("redis://h:1/2?dedupe_ttl_s=60".into())
        );
        assert_eq!(
            StoreConfig::parse("redis://:pw@h:1").unwrap().to_string(),
            "redis://…@h:1"
        );
        for bad in ["", "file://", "redis://", "redis://h:1/x", "s3://bucket"] {
            let error = StoreConfig::parse(bad).unwrap_err().to_string();
            assert!(
                error.contains(
                    "expected memory, file://<dir>, a directory path or redis://host:port[/db]"
                ),
                "{bad:?}: {error}"
            );
        }
        let config = ConnectorConfig::from_toml_str("store = \"file:///tmp/x\"").unwrap();
        assert_eq!(config.store, StoreConfig::Embedded("/tmp/x".into()));
        assert_eq!(config.store.to_string(), "file:///tmp/x");
        let error = ConnectorConfig::from_toml_str("store = \"s3://h:1\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("s3:// is not a store"), "{error}");
        let config = ConnectorConfig::from_toml_str("store = \"redis://h:1\"").unwrap();
        assert_eq!(config.store, StoreConfig::Redis("redis://h:1".into()));
    }

    #[test]
    fn product_specs() {
        let p = parse_product_spec("acme:key1").unwrap();
        assert_eq!(p.id, "acme");
        assert!(p.api_keys[0].matches("key1"));
        assert!(p.webhook_secret.is_none());

        let p = parse_product_spec("acme:key1:sec:ret").unwrap();
        assert!(p.api_keys[0].matches("key1"));
        assert_eq!(p.webhook_secret.unwrap().expose(), "sec:ret");

        let hash = hex::encode(sha256(b"hunter2"));
        let p = parse_product_spec(&format!("acme:sha256:{hash}:whsec")).unwrap();
        assert!(p.api_keys[0].matches("hunter2"));
        assert!(!p.api_keys[0].matches("hunter3"));
        assert_eq!(p.webhook_secret.unwrap().expose(), "whsec");

        let p = parse_product_spec(&format!("acme:sha256:{hash}")).unwrap();
        assert!(p.api_keys[0].matches("hunter2"));

        for bad in [
            "acme",
            "acme:",
            ":key",
            "a b:key",
            "acme:sha256:zz",
            "acme:key:",
        ] {
            assert!(parse_product_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn toml_config() {
        let hash = hex::encode(sha256(b"k2"));
        let text = format!(
            r#"
            listen = "127.0.0.1:0"
            heartbeat_s = 0.05
            replay_events = 7
            summary_threshold = 3
            session_idle_s = 2

            [llm]
            base_url = "http://127.0.0.1:9/v1"
            model = "m"
            api_key = "llm-secret"
            timeout_s = 0.5

            [[products]]
            id = "acme"
            api_keys = ["k1", "sha256:{hash}"]
            webhook_secret = "whsec"
            summary_threshold = 0

            [[products]]
            id = "beta"
            "#
        );
        let config = ConnectorConfig::from_toml_str(&text).unwrap();
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.heartbeat_interval, Duration::from_millis(50));
        assert_eq!(config.replay_capacity, 7);
        assert_eq!(config.summary_threshold, 3);
        assert_eq!(config.session_idle_timeout, Duration::from_secs(2));
        let llm = config.llm.as_ref().unwrap();
        assert_eq!(llm.timeout, Duration::from_millis(500));
        assert_eq!(llm.api_key.as_ref().unwrap().expose(), "llm-secret");
        assert_eq!(config.products.len(), 2);
        assert!(config.products[0].api_keys[0].matches("k1"));
        assert!(config.products[0].api_keys[1].matches("k2"));
        assert_eq!(config.products[0].summary_threshold, Some(0));
        assert!(config.products[1].api_keys.is_empty());

        let debug = format!("{config:?}");
        for secret in ["whsec", "llm-secret", "k1", &hash] {
            assert!(!debug.contains(secret), "{secret} leaked into {debug}");
        }
    }

    #[test]
    fn bad_toml() {
        assert!(ConnectorConfig::from_toml_str("nonsense = 1").is_err());
        assert!(
            ConnectorConfig::from_toml_str("[[products]]\nid = \"a\"\n[[products]]\nid = \"a\"")
                .is_err()
        );
        assert!(ConnectorConfig::from_toml_str("heartbeat_s = 0").is_err());
        assert!(
            ConnectorConfig::from_toml_str("[[products]]\nid = \"a\"\napi_keys = [\"sha256:12\"]")
                .is_err()
        );
    }

    #[test]
    fn secrets_from_files_and_the_environment() {
        let dir = std::env::temp_dir().join(format!("autoplay-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("webhook");
        std::fs::write(&file, "whsec_from_file\n").unwrap();
        // SAFETY: a variable only this test reads, set before anything reads it.
        unsafe { std::env::set_var("AUTOPLAY_TEST_KEY_ENV_7731", "ak_from_env") };
        let text = format!(
            "metrics_token = {{ env = \"AUTOPLAY_TEST_KEY_ENV_7731\" }}\n\
             [[products]]\nid = \"acme\"\napi_keys = [{{ env = \"AUTOPLAY_TEST_KEY_ENV_7731\" }}, \"plain\"]\n\
             webhook_secret = {{ file = {:?} }}\n",
            file.display().to_string()
        );
        let config = ConnectorConfig::from_toml_str(&text).unwrap();
        let acme = &config.products[0];
        assert!(acme.api_keys[0].matches("ak_from_env"));
        assert!(acme.api_keys[1].matches("plain"));
        assert_eq!(
            acme.webhook_secret.as_ref().unwrap().expose(),
            "whsec_from_file"
        );
        assert_eq!(
            config.metrics_token.as_ref().unwrap().expose(),
            "ak_from_env"
        );

        for (text, says) in [
            (
                "[[products]]\nid = \"a\"\nwebhook_secret = { file = \"/nonexistent/x\" }",
                "cannot read the secret file /nonexistent/x",
            ),
            (
                "[[products]]\nid = \"a\"\nwebhook_secret = { env = \"AUTOPLAY_TEST_UNSET_9\" }",
                "AUTOPLAY_TEST_UNSET_9 is not set",
            ),
            (
                "[[products]]\nid = \"a\"\nwebhook_secret = { vault = \"x\" }",
                "unknown secret source \"vault\"",
            ),
            ("metrics_token = 3", "{ env = \"VARIABLE\" }"),
            ("metrics_token = \" \"", "metrics_token is empty"),
        ] {
            let error = ConnectorConfig::from_toml_str(text)
                .unwrap_err()
                .to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn products_and_metrics_token_from_the_environment() {
        // SAFETY: only this test reads these variables.
        unsafe {
            std::env::set_var(PRODUCTS_ENV, "acme:ak_1:whsec_1, beta:ak_2");
            std::env::set_var(METRICS_TOKEN_ENV, "mt");
        }
        let mut config = ConnectorConfig::default()
            .with_product(ProductConfig::new("acme").with_summary_threshold(4));
        config.apply_secrets_env().unwrap();
        assert_eq!(config.products.len(), 2);
        assert!(config.products[0].api_keys[0].matches("ak_1"));
        assert_eq!(
            config.products[0].webhook_secret.as_ref().unwrap().expose(),
            "whsec_1"
        );
        assert!(config.products[1].api_keys[0].matches("ak_2"));
        assert_eq!(config.metrics_token.as_ref().unwrap().expose(), "mt");
        unsafe { std::env::set_var(PRODUCTS_ENV, "ok:k secret_without_id") };
        let error = config.apply_secrets_env().unwrap_err().to_string();
        assert!(error.contains("product #2"), "{error}");
        assert!(!error.contains("secret_without_id"), "{error}");
        unsafe {
            std::env::remove_var(PRODUCTS_ENV);
            std::env::remove_var(METRICS_TOKEN_ENV);
        }
    }

    #[test]
    fn hardening_limits() {
        let config = ConnectorConfig::from_toml_str(
            "body_timeout_s = 2.5\nwrite_timeout_s = 7\nmax_frame_bytes = 65536\nreplay_bytes = 1000000",
        )
        .unwrap();
        assert_eq!(config.body_read_timeout, Duration::from_millis(2500));
        assert_eq!(config.write_timeout, Duration::from_secs(7));
        assert_eq!(config.max_frame_bytes, 65_536);
        assert_eq!(config.replay_bytes, 1_000_000);
        let defaults = ConnectorConfig::default();
        assert!(defaults.body_read_timeout <= Duration::from_secs(30));
        assert_eq!(defaults.max_frame_bytes, 1024 * 1024);

        for (text, says) in [
            (
                "max_frame_bytes = 100",
                "max_frame_bytes = 100 is too small",
            ),
            (
                "replay_bytes = 5000",
                "replay_bytes = 5000 must be at least",
            ),
            ("body_timeout_s = 0", "not a positive number of seconds"),
            ("write_timeout_s = -1", "not a positive number of seconds"),
        ] {
            let error = ConnectorConfig::from_toml_str(text)
                .unwrap_err()
                .to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
        let error = ConnectorConfig {
            write_timeout: Duration::ZERO,
            ..ConnectorConfig::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(error.contains("e.g. body_timeout_s = 15"), "{error}");
    }

    #[test]
    fn set_product_replaces_by_id() {
        let mut config = ConnectorConfig::default()
            .with_product(ProductConfig::new("a").with_summary_threshold(1));
        config.set_product(ProductConfig::new("a").with_summary_threshold(2));
        config.set_product(ProductConfig::new("b"));
        assert_eq!(config.products.len(), 2);
        assert_eq!(config.products[0].summary_threshold, Some(2));
        config.validate().unwrap();
    }

    #[test]
    fn default_product() {
        let mut config = ConnectorConfig::default();
        let generated = config.ensure_default_product().unwrap();
        assert_eq!(generated.id, "demo");
        assert!(generated.api_key.expose().starts_with("ak_"));
        assert_eq!(generated.api_key.expose().len(), 35);
        assert!(config.products[0].api_keys[0].matches(generated.api_key.expose()));
        assert!(config.ensure_default_product().is_none());
        assert!(!format!("{generated:?}").contains(generated.api_key.expose()));
    }
}

/// `docs/configuration.md` cannot drift from the file form: its complete example
/// parses, sets every key (the destructuring below has no `..`, so a new field
/// does not compile until it is documented here and there), and every key has a
/// row in the doc's tables.
#[cfg(test)]
mod doc_reference {
    use super::*;

    const DOC: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/configuration.md"
    ));

    /// The first ```toml block after the `### Complete example` heading.
    fn complete_example() -> &'static str {
        let section = DOC
            .split_once("\n### Complete example\n")
            .expect("docs/configuration.md has a `### Complete example` heading")
            .1;
        let block = section
            .split_once("```toml\n")
            .expect("a ```toml block follows `### Complete example`")
            .1;
        block.split_once("\n```").expect("the block is closed").0
    }

    fn set_example_variables() {
        // SAFETY: variables only this test reads, set before anything reads them.
        unsafe {
            for name in [
                "DOC_EXAMPLE_METRICS_TOKEN",
                "DOC_EXAMPLE_ADMIN_TOKEN",
                "DOC_EXAMPLE_OPENAI_API_KEY",
                "DOC_EXAMPLE_ACME_API_KEY",
                "DOC_EXAMPLE_ACME_WEBHOOK_SECRET",
            ] {
                std::env::set_var(name, format!("{name}-value"));
            }
        }
    }

    fn assert_documented(key: &str) {
        assert!(
            DOC.contains(&format!("| `{key}` |")),
            "docs/configuration.md has no table row for the key `{key}`"
        );
    }

    #[test]
    fn the_complete_example_sets_every_key() {
        set_example_variables();
        let text = complete_example();
        // The public path: the example is a valid config, limits included.
        let config = ConnectorConfig::from_toml_str(text).unwrap_or_else(|e| {
            panic!("the complete example in docs/configuration.md does not load: {e}")
        });
        assert!(config.llm.is_some() && config.metrics_token.is_some());

        let FileConfig {
            listen,
            heartbeat_s,
            replay_events,
            subscriber_buffer,
            body_limit_bytes,
            body_timeout_s,
            write_timeout_s,
            max_frame_bytes,
            replay_bytes,
            summary_threshold,
            session_idle_s,
            ticket_ttl_s,
            llm,
            metrics_token,
            admin_token,
            store,
            products,
        } = toml::from_str(text).unwrap();
        let unset: Vec<&str> = [
            ("listen", listen.is_none()),
            ("heartbeat_s", heartbeat_s.is_none()),
            ("replay_events", replay_events.is_none()),
            ("subscriber_buffer", subscriber_buffer.is_none()),
            ("body_limit_bytes", body_limit_bytes.is_none()),
            ("body_timeout_s", body_timeout_s.is_none()),
            ("write_timeout_s", write_timeout_s.is_none()),
            ("max_frame_bytes", max_frame_bytes.is_none()),
            ("replay_bytes", replay_bytes.is_none()),
            ("summary_threshold", summary_threshold.is_none()),
            ("session_idle_s", session_idle_s.is_none()),
            ("ticket_ttl_s", ticket_ttl_s.is_none()),
            ("llm", llm.is_none()),
            ("metrics_token", metrics_token.is_none()),
            ("admin_token", admin_token.is_none()),
            ("store", store.is_none()),
            ("products", products.is_empty()),
        ]
        .into_iter()
        .filter_map(|(key, unset)| unset.then_some(key))
        .collect();
        assert!(
            unset.is_empty(),
            "the complete example in docs/configuration.md leaves out {unset:?}"
        );

        // Keys with a default cannot be told apart from their default once parsed:
        // the raw table says whether the example names them.
        let raw: toml::Table = toml::from_str(text).unwrap();
        let llm_table = raw["llm"].as_table().unwrap();
        let product_tables: Vec<&toml::Table> = raw["products"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_table().unwrap())
            .collect();

        let LlmConfig {
            base_url,
            model,
            api_key,
            timeout,
        } = llm.unwrap();
        assert!(!base_url.is_empty() && !model.is_empty());
        assert!(api_key.is_some(), "the example's [llm] leaves out api_key");
        assert!(
            llm_table.contains_key("timeout_s") && timeout != default_llm_timeout(),
            "the example's [llm] leaves out timeout_s (or sets its default)"
        );

        let mut seen = std::collections::BTreeSet::new();
        for (product, table) in products.into_iter().zip(&product_tables) {
            let ProductConfig {
                id,
                api_keys,
                webhook_secret,
                ingest_with_api_keys,
                summary_threshold,
            } = product;
            assert!(!id.is_empty());
            if !api_keys.is_empty() {
                seen.insert("api_keys");
            }
            if webhook_secret.is_some() {
                seen.insert("webhook_secret");
            }
            if ingest_with_api_keys && table.contains_key("ingest_with_api_keys") {
                seen.insert("ingest_with_api_keys");
            }
            if summary_threshold.is_some() {
                seen.insert("summary_threshold");
            }
        }
        for key in [
            "api_keys",
            "webhook_secret",
            "ingest_with_api_keys",
            "summary_threshold",
        ] {
            assert!(
                seen.contains(key),
                "no [[products]] table of the complete example sets {key}"
            );
        }

        for key in raw.keys() {
            assert_documented(key);
        }
        for key in llm_table.keys() {
            assert_documented(key);
        }
        for table in product_tables {
            for key in table.keys() {
                assert_documented(key);
            }
        }
    }
}
