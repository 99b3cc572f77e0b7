//! The command line, as clap parses it. Nothing here does any work.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Real-time UI actions and session summaries from an Autoplay connector.
///
/// Run `autoplay demo` to see everything work offline in a second.
#[derive(Debug, Parser)]
#[command(
    name = "autoplay",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Log filter for stderr, in RUST_LOG syntax (`info`, `debug`,
    /// `autoplay_sdk=debug,warn`, …). Default: $RUST_LOG, else `warn` (`info` for
    /// `connector`).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tail a connector stream and print every payload.
    ///
    /// Payloads go to stdout, one flushed write per payload (pipes too); connection
    /// state and errors go to stderr. Exit status: 0 after --max-events or on
    /// SIGINT/SIGTERM (or when stdout is closed), 2 on a fatal HTTP status
    /// (401, 403, 404) or bad arguments, 1 when --max-retries is exhausted.
    #[command(after_help = "Examples:\n  \
        autoplay listen http://127.0.0.1:8080/stream/demo --token ak_...\n  \
        AUTOPLAY_TOKEN=ak_... autoplay listen $URL --format json | jq .session_id\n  \
        autoplay listen $URL --format raw --last-event-id 1041 --max-events 10")]
    Listen(ListenArgs),
    /// Run a connector: PostHog webhooks in, SSE stream out.
    ///
    /// Flags override the config file. With no product configured, product `demo`
    /// is created with a random API key, and its stream URL and key are printed on
    /// stdout. Stops gracefully on SIGINT/SIGTERM.
    ///
    /// Arguments are visible to every user of the machine (`ps`,
    /// `/proc/<pid>/cmdline`). Keep keys and secrets out of them: set
    /// AUTOPLAY_PRODUCTS (`ID:API_KEY[:WEBHOOK_SECRET]` specs, separated by spaces
    /// or commas), or give them in the --config file, where each may be
    /// `{ file = "<path>" }` or `{ env = "<VARIABLE>" }`. AUTOPLAY_METRICS_TOKEN
    /// puts /metrics behind `Authorization: Bearer <token>`.
    #[command(after_help = "Examples:\n  \
        autoplay connector\n  \
        autoplay connector --listen 0.0.0.0:8080 --product acme:ak_live_123:whsec_456\n  \
        autoplay connector --config autoplay.toml --heartbeat-s 15\n\n\
        Environment:\n  \
        AUTOPLAY_PRODUCTS       products, replacing the file's of the same id (--product wins)\n  \
        AUTOPLAY_METRICS_TOKEN  the token GET /metrics requires, replacing metrics_token\n  \
        AUTOPLAY_ADMIN_TOKEN    turns the admin API (/admin/products) on, replacing admin_token\n  \
        AUTOPLAY_LLM_BASE_URL, AUTOPLAY_LLM_MODEL, AUTOPLAY_LLM_API_KEY\n                          \
        the LLM backend for summaries, replacing the file's [llm] values\n  \
        RUST_LOG                log filter when --log-level is not given\n\n\
        Every key, flag and variable, with defaults: docs/configuration.md")]
    Connector(ConnectorArgs),
    /// The showcase: a connector, simulated users and a listener, all offline.
    ///
    /// Starts a connector on a free loopback port, a traffic generator posting
    /// realistic PostHog webhooks for a few users moving through an example app, and
    /// a listener printing each payload's text (session summaries included), until
    /// Ctrl-C or --max-events.
    #[command(after_help = "Environment:\n  \
        AUTOPLAY_LLM_BASE_URL, AUTOPLAY_LLM_MODEL, AUTOPLAY_LLM_API_KEY\n      \
        write summaries with this LLM backend instead of the embedded summariser\n\n\
        Every flag and variable, with defaults: docs/configuration.md")]
    Demo(DemoArgs),
}

/// How `listen` prints what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Each payload's embedding-ready text, then a blank line.
    Text,
    /// One canonical JSON object per payload per line, with `type`.
    Json,
    /// One JSON line per SSE event before any interpretation:
    /// {"event":..,"data":..,"id":..}, heartbeats and unknown types included.
    Raw,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// The stream URL, `http(s)://HOST/stream/PRODUCT_ID`.
    #[arg(value_name = "URL")]
    pub url: String,

    /// API key, sent as `Authorization: Bearer <T>`. Default: $AUTOPLAY_TOKEN, else
    /// $AUTOPLAY_APP_UNKEY_TOKEN (the published Python SDK 0.13.0's name).
    #[arg(long, value_name = "T")]
    pub token: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Exit (status 0) after printing this many items.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_events: Option<u64>,

    /// Resume after this event id (sent as `Last-Event-ID`).
    #[arg(long, value_name = "ID")]
    pub last_event_id: Option<String>,

    /// Extra request header, `'Name: value'` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "'NAME: VALUE'", value_parser = parse_header)]
    pub headers: Vec<Header>,

    /// First reconnect delay in milliseconds; doubles up to --max-backoff-ms
    /// [default: 1000].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub initial_backoff_ms: Option<u64>,

    /// Longest reconnect delay in milliseconds [default: 30000].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_backoff_ms: Option<u64>,

    /// Replace the connection when nothing (not even a heartbeat) arrives for this
    /// many seconds; fractions allowed [default: 90].
    #[arg(long, value_name = "S", value_parser = parse_positive_seconds)]
    pub read_timeout_s: Option<f64>,

    /// Give up (status 1) after this many consecutive failed connection attempts
    /// [default: retry forever].
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
}

#[derive(Debug, Args)]
pub struct ConnectorArgs {
    /// TOML config file: every key (listen, products, llm, heartbeat_s, …) is in
    /// docs/configuration.md.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on; port 0 picks a free one [default: 127.0.0.1:8080].
    #[arg(long, value_name = "IP:PORT", value_parser = parse_listen_addr)]
    pub listen: Option<SocketAddr>,

    /// A product, `ID:API_KEY[:WEBHOOK_SECRET]` (repeatable; replaces a product of
    /// the same id from the file). The key may be `sha256:<64 hex>`. Without a
    /// secret, webhooks authenticate with the API key. Arguments
    /// are visible to every user of the machine (`ps`, `/proc/<pid>/cmdline`):
    /// where that matters, put keys and secrets in the --config file instead.
    #[arg(long = "product", value_name = "ID:API_KEY[:WEBHOOK_SECRET]")]
    pub products: Vec<String>,

    /// Seconds between heartbeats; fractions allowed [default: 30].
    #[arg(long, value_name = "S", value_parser = parse_positive_seconds)]
    pub heartbeat_s: Option<f64>,

    /// Events per product kept for `Last-Event-ID` replay [default: 10000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub replay_events: Option<u64>,

    /// Actions per session summary, for products that set none; 0 turns summaries
    /// off [default: 10].
    #[arg(long, value_name = "N")]
    pub summary_threshold: Option<usize>,

    /// Bytes of frames per product kept for replay, beside --replay-events
    /// [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    pub replay_bytes: Option<usize>,

    /// Largest SSE frame in bytes; bigger batches go out as several payloads of the
    /// same session, in order (at least 4096) [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub max_frame_bytes: Option<usize>,

    /// Seconds a request has to deliver its whole body; slower ones get 408
    /// [default: 15].
    #[arg(long, value_name = "S", value_parser = parse_positive_seconds)]
    pub body_timeout_s: Option<f64>,

    /// Seconds a connection may take no byte (a subscriber that stopped reading)
    /// before it is closed [default: 30].
    #[arg(long, value_name = "S", value_parser = parse_positive_seconds)]
    pub write_timeout_s: Option<f64>,

    /// Where event logs and session state live: `memory` (lost on restart), or
    /// `file://<dir>` / a directory for a durable embedded store (single node:
    /// ids, replay, pending summaries and emails survive restarts and kill -9;
    /// a webhook gets 200 once on disk), or `redis://host:port[/db]` for Redis
    /// Streams shared by several replicas, with optional
    /// `?dedupe_ttl_s=3600&summary_lease_s=60&claim_interval_s=5`
    /// (docs/deploy.md) [default: memory].
    #[arg(long, value_name = "STORE")]
    pub store: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Exit (status 0) after printing this many payloads.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_events: Option<u64>,

    /// Address of the embedded connector.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:0", value_parser = parse_listen_addr)]
    pub listen: SocketAddr,

    /// Number of simulated users.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=50))]
    pub users: u64,

    /// Actions per session summary (0 = no summaries).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub summary_threshold: usize,

    /// Each simulated user stops after this many sessions, so the traffic is
    /// finite (a line on stderr says when all are done); the connector keeps
    /// serving, replay included, until Ctrl-C or --max-events [default: no end].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub sessions: Option<u64>,
}

/// A `--header 'Name: value'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

fn parse_header(spec: &str) -> Result<Header, String> {
    let (name, value) = spec
        .split_once(':')
        .ok_or_else(|| "expected 'Name: value'".to_owned())?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(is_token_char) {
        return Err(format!("{name:?} is not a valid header name"));
    }
    Ok(Header {
        name: name.to_owned(),
        value: value.trim().to_owned(),
    })
}

/// RFC 9110 `tchar`.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `--listen`: std's "invalid socket address syntax" does not say what the
/// address should look like, and a bare port is the most common slip.
fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let text = text.trim();
    if let Ok(port) = text.trim_start_matches(':').parse::<u16>() {
        return Err(format!(
            "expected IP:PORT, e.g. 127.0.0.1:{port} (or 0.0.0.0:{port} for every interface), not a port alone"
        ));
    }
    if let Some((host, _)) = text.rsplit_once(':')
        && host.parse::<std::net::IpAddr>().is_err()
        && !host.starts_with('[')
    {
        return Err(format!(
            "expected IP:PORT, e.g. 127.0.0.1:8080; {host:?} is not an IP address (host names are not resolved)"
        ));
    }
    Err("expected IP:PORT, e.g. 127.0.0.1:8080 or [::1]:8080".to_owned())
}

fn parse_positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(s),
        _ => Err("expected a positive number of seconds".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn headers_parse() {
        assert_eq!(
            parse_header("X-Proxy-Auth:  abc: def ").unwrap(),
            Header {
                name: "X-Proxy-Auth".into(),
                value: "abc: def".into()
            }
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": value").is_err());
        assert!(parse_header("bad name: v").is_err());
    }

    #[test]
    fn listen_addresses_parse() {
        assert_eq!(
            parse_listen_addr("127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse::<SocketAddr>().unwrap()
        );
        assert!(parse_listen_addr("[::1]:80").is_ok());
        for bad in ["8080", ":8080", "localhost:8080", "127.0.0.1", "::1:80"] {
            let err = parse_listen_addr(bad).unwrap_err();
            assert!(err.contains("expected IP:PORT, e.g. "), "{bad}: {err}");
        }
        assert!(
            parse_listen_addr("8080")
                .unwrap_err()
                .contains("127.0.0.1:8080")
        );
    }

    #[test]
    fn seconds_parse() {
        assert_eq!(parse_positive_seconds("0.05").unwrap(), 0.05);
        assert!(parse_positive_seconds("0").is_err());
        assert!(parse_positive_seconds("-1").is_err());
        assert!(parse_positive_seconds("nan").is_err());
    }
}
