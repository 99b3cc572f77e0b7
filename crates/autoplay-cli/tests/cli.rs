//! End-to-end tests of the `autoplay` binary: the real executable against a real
//! connector (started in-process on 127.0.0.1:0, or as `autoplay connector`), and
//! against a tiny fixed SSE server for byte-exact output checks.

#![cfg(unix)]

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use autoplay_connector::{Connector, ConnectorConfig, ProductConfig, ShutdownHandle};
use autoplay_sdk::Event;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_autoplay");
const ACME_KEY: &str = "ak_acme_test";
const ACME_SECRET: &str = "whsec_acme_test";
const BETA_KEY: &str = "ak_beta_test";
const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

struct Server {
    addr: SocketAddr,
    shutdown: ShutdownHandle,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}

impl Server {
    async fn start(heartbeat: Duration) -> Self {
        let config = ConnectorConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            summary_threshold: 0,
            heartbeat_interval: heartbeat,
            ..ConnectorConfig::default()
        }
        .with_product(
            ProductConfig::new("acme")
                .with_api_key(ACME_KEY)
                .unwrap()
                .with_webhook_secret(ACME_SECRET),
        )
        .with_product(ProductConfig::new("beta").with_api_key(BETA_KEY).unwrap());
        let connector = Connector::bind(config).await.unwrap();
        let addr = connector.local_addr();
        let shutdown = connector.shutdown_handle();
        tokio::spawn(connector.serve());
        Server { addr, shutdown }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn post_events(&self, product: &str, body: &Value) {
        let response = reqwest::Client::new()
            .post(self.url(&format!("/events/{product}")))
            .header("x-posthog-secret", ACME_SECRET)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }
}

fn batch(session: &str, actions: &[(&str, &str, &str)]) -> Value {
    json!({
        "session_id": session,
        "user_id": "user_456",
        "email": "alice@example.com",
        "actions": actions.iter().map(|(kind, description, url)| json!({
            "event_type": kind,
            "title": "t",
            "description": description,
            "canonical_url": url,
            "raw_url": url,
            "ts": "2024-01-15T10:30:00Z",
        })).collect::<Vec<_>>(),
    })
}

/// A running `autoplay` with its output collected in the background.
struct Proc {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

fn collect(
    pipe: impl AsyncRead + Unpin + Send + 'static,
) -> (Arc<Mutex<String>>, tokio::task::JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(String::new()));
    let sink = buf.clone();
    let task = tokio::spawn(async move {
        let mut reader = BufReader::new(pipe);
        let mut line = String::new();
        while reader.read_line(&mut line).await.unwrap_or(0) > 0 {
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    (buf, task)
}

impl Proc {
    fn spawn(args: &[&str]) -> Self {
        Self::spawn_with(args, &[])
    }

    fn spawn_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env_remove("AUTOPLAY_TOKEN")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn autoplay");
        let (stdout, out_task) = collect(child.stdout.take().unwrap());
        let (stderr, err_task) = collect(child.stderr.take().unwrap());
        Proc {
            child,
            stdout,
            stderr,
            readers: vec![out_task, err_task],
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr (or stdout) contains `needle`.
    async fn wait_for(&self, on_stderr: bool, needle: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = if on_stderr {
                self.stderr()
            } else {
                self.stdout()
            };
            if text.contains(needle) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {needle:?}; stdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_connected(&self) {
        self.wait_for(true, "autoplay: connected to").await;
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit; returns the status, stdout and stderr.
    async fn finish(mut self) -> (ExitStatus, String, String) {
        let status = match tokio::time::timeout(WAIT, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "autoplay did not exit; stdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            ),
        };
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(WAIT, reader).await;
        }
        (status, self.stdout(), self.stderr())
    }
}

async fn run(args: &[&str]) -> (ExitStatus, String, String) {
    Proc::spawn(args).finish().await
}

/// A one-shot SSE server answering every request with `body` (then holding the
/// connection open); returns its URL and the request heads it saw.
async fn fixed_sse_server(body: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                     cache-control: no-cache\r\nconnection: close\r\n\r\n{body}"
                );
                let _ = socket.write_all(response.as_bytes()).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    (format!("http://{addr}/stream/fixed"), requests)
}

const CANONICAL: &str = r#"{"type":"actions","product_id":"acme","session_id":"ps_abc123","user_id":"user_456","email":"alice@example.com","ts":"2024-01-15T10:30:05Z","forwarded_at":1705314605.25,"count":2,"actions":[{"event_type":"pageview","title":"Dashboard","description":"Viewed Dashboard","canonical_url":"https://app.example.com/dashboard","raw_url":"https://app.example.com/dashboard?tab=overview","ts":"2024-01-15T10:30:00Z","properties":{"referrer":"https://app.example.com/login"}},{"event_type":"click","title":"Export CSV","description":"","canonical_url":"https://app.example.com/dashboard","raw_url":"https://app.example.com/dashboard","ts":"2024-01-15T10:30:03Z","properties":{}}]}"#;
const SUMMARY: &str = r#"{"type":"summary","product_id":"acme","session_id":"ps_abc123","summary":"Alice viewed the dashboard and exported a CSV.","replaces":2,"ts":"2024-01-15T10:30:06Z","forwarded_at":1705314606.5}"#;

/// A stream with a comment, an unknown event type, a multi-line message without
/// `event:`, malformed data, a heartbeat, an actions payload and a summary.
fn mixed_stream() -> &'static str {
    static STREAM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    STREAM.get_or_init(|| {
        format!(
            ": hello\n\n\
             event: custom\ndata: hi\n\n\
             data: line1\ndata: line2\n\n\
             id: 5\nevent: actions\ndata: {{not json\n\n\
             event: heartbeat\ndata:\n\n\
             id: 6\nevent: actions\ndata: {CANONICAL}\n\n\
             id: 7\nevent: summary\ndata: {SUMMARY}\n\n"
        )
    })
}

// ---------------------------------------------------------------------------
// listen: output formats, byte for byte
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_text_prints_to_text_then_a_blank_line() {
    let (url, _) = fixed_sse_server(mixed_stream()).await;
    let (status, stdout, stderr) = run(&["listen", &url, "--max-events", "2"]).await;
    assert!(status.success(), "{status:?} {stderr}");
    assert_eq!(
        stdout,
        "Session ps_abc123 \u{2014} 2 actions\n\
         1. Viewed Dashboard \u{2014} https://app.example.com/dashboard\n\
         2. Export CSV \u{2014} https://app.example.com/dashboard\n\
         \n\
         Alice viewed the dashboard and exported a CSV.\n\
         \n"
    );
    assert!(
        stderr.contains(&format!("autoplay: connected to {url}")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_json_prints_one_canonical_line_per_payload() {
    let (url, _) = fixed_sse_server(mixed_stream()).await;
    let (status, stdout, stderr) =
        run(&["listen", &url, "--format", "json", "--max-events", "2"]).await;
    assert!(status.success(), "{status:?} {stderr}");
    assert_eq!(stdout, format!("{CANONICAL}\n{SUMMARY}\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_raw_prints_every_sse_event_uninterpreted() {
    let (url, _) = fixed_sse_server(mixed_stream()).await;
    let (status, stdout, stderr) =
        run(&["listen", &url, "--format", "raw", "--max-events", "6"]).await;
    assert!(status.success(), "{status:?} {stderr}");
    let expected = [
        json!({"event": "custom", "data": "hi", "id": null}).to_string(),
        json!({"event": "message", "data": "line1\nline2", "id": null}).to_string(),
        json!({"event": "actions", "data": "{not json", "id": "5"}).to_string(),
        json!({"event": "heartbeat", "data": "", "id": "5"}).to_string(),
        json!({"event": "actions", "data": CANONICAL, "id": "6"}).to_string(),
        json!({"event": "summary", "data": SUMMARY, "id": "7"}).to_string(),
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{stdout}");
    for (line, expected) in lines.iter().zip(&expected) {
        // Same object, and the documented key order event, data, id.
        assert_eq!(
            serde_json::from_str::<Value>(line).unwrap(),
            serde_json::from_str::<Value>(expected).unwrap()
        );
        assert!(line.starts_with("{\"event\":"), "{line}");
        let data_at = line.find(",\"data\":").unwrap();
        let id_at = line.rfind(",\"id\":").unwrap();
        assert!(data_at < id_at, "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_sends_token_headers_and_last_event_id() {
    let (url, requests) = fixed_sse_server(mixed_stream()).await;
    let (status, _, stderr) = run(&[
        "listen",
        &url,
        "--token",
        "tok_123",
        "--header",
        "X-Proxy-Auth: p1",
        "-H",
        "X-Team:  blue ",
        "--last-event-id",
        "41",
        "--max-events",
        "1",
    ])
    .await;
    assert!(status.success(), "{status:?} {stderr}");
    let head = requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.contains("authorization: bearer tok_123\r\n"), "{head}");
    assert!(head.contains("x-proxy-auth: p1\r\n"), "{head}");
    assert!(head.contains("x-team: blue\r\n"), "{head}");
    assert!(head.contains("last-event-id: 41\r\n"), "{head}");
    assert!(!stderr.contains("tok_123"), "the token leaked: {stderr}");
}

/// A server that answers the n-th connection with `respond(n)` (a whole HTTP
/// response) and then closes it; returns its address.
async fn closing_server(respond: fn(usize) -> String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for n in 0.. {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = socket.write_all(respond(n).as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    addr
}

fn sse_response(body: &str) -> String {
    format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{body}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_never_prints_credentials_of_the_url() {
    const SECRET: &str = "pw-never-printed";
    let addr = closing_server(|n| match n {
        0 => sse_response(&format!("id: 6\nevent: actions\ndata: {CANONICAL}\n\n")),
        _ => "HTTP/1.1 500 Oops\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
    })
    .await;
    let url = format!("http://alice:{SECRET}@{addr}/stream/acme");
    let (status, stdout, stderr) = run(&[
        "listen",
        &url,
        "--max-retries",
        "1",
        "--initial-backoff-ms",
        "10",
        "--max-backoff-ms",
        "20",
        "--log-level",
        "autoplay_sdk=trace",
    ])
    .await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stdout.contains("Session ps_abc123"), "{stdout}");
    let redacted = format!("http://***@{addr}/stream/acme");
    for line in [
        format!("autoplay: connecting to {redacted}"),
        format!("autoplay: connected to {redacted}"),
        "retrying in ".to_owned(),
        format!("autoplay: error: gave up on {redacted}"),
    ] {
        assert!(stderr.contains(&line), "no {line:?} in:\n{stderr}");
    }
    assert!(
        !stderr.contains(SECRET) && !stderr.contains("alice"),
        "credentials printed:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_caps_a_server_retry_of_a_day_and_says_how_long_it_waits() {
    let addr = closing_server(|_| sse_response("retry: 86400000\n\n")).await;
    let url = format!("http://{addr}/stream/acme");
    let listener = Proc::spawn(&["listen", &url, "--max-backoff-ms", "2000"]);
    listener.wait_for(true, "retrying in").await;
    listener.signal("TERM");
    let (status, _, stderr) = listener.finish().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("attempt 1 failed (the server ended the stream); retrying in 600.0 s"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------
// listen against the real connector
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_text_against_the_connector_exits_0_after_max_events() {
    let server = Server::start(Duration::from_secs(30)).await;
    let url = server.url("/stream/acme");
    let listener = Proc::spawn(&["listen", &url, "--token", ACME_KEY, "--max-events", "2"]);
    listener.wait_connected().await;
    server
        .post_events(
            "acme",
            &batch(
                "s1",
                &[
                    (
                        "pageview",
                        "Viewed Dashboard",
                        "https://app.example.com/dashboard",
                    ),
                    (
                        "click",
                        "Clicked 'Export CSV'",
                        "https://app.example.com/dashboard",
                    ),
                ],
            ),
        )
        .await;
    server
        .post_events(
            "acme",
            &batch(
                "s2",
                &[(
                    "submit",
                    "Submitted 'Billing details'",
                    "https://app.example.com/settings/:id/billing",
                )],
            ),
        )
        .await;
    let (status, stdout, stderr) = listener.finish().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "Session s1 \u{2014} 2 actions\n\
         1. Viewed Dashboard \u{2014} https://app.example.com/dashboard\n\
         2. Clicked 'Export CSV' \u{2014} https://app.example.com/dashboard\n\
         \n\
         Session s2 \u{2014} 1 actions\n\
         1. Submitted 'Billing details' \u{2014} https://app.example.com/settings/:id/billing\n\
         \n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_json_against_the_connector_prints_canonical_json() {
    let server = Server::start(Duration::from_secs(30)).await;
    let url = server.url("/stream/acme");
    let listener = Proc::spawn(&[
        "listen",
        &url,
        "--token",
        ACME_KEY,
        "--format",
        "json",
        "--max-events",
        "1",
    ]);
    listener.wait_connected().await;
    server
        .post_events(
            "acme",
            &batch(
                "s1",
                &[(
                    "pageview",
                    "Viewed Dashboard",
                    "https://app.example.com/dashboard",
                )],
            ),
        )
        .await;
    let (status, stdout, stderr) = listener.finish().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    let line = stdout.strip_suffix('\n').expect("one line");
    assert!(!line.contains('\n'));
    // Canonical: re-serialising the decoded payload gives the same bytes.
    assert_eq!(Event::from_json(line).unwrap().to_json(), line);
    let mut value: Value = serde_json::from_str(line).unwrap();
    assert!(value["forwarded_at"].is_f64());
    value["forwarded_at"] = Value::Null;
    assert_eq!(
        value,
        json!({
            "type": "actions", "product_id": "acme", "session_id": "s1",
            "user_id": "user_456", "email": "alice@example.com",
            "ts": "2024-01-15T10:30:00Z", "forwarded_at": null, "count": 1,
            "actions": [{
                "event_type": "pageview", "title": "t", "description": "Viewed Dashboard",
                "canonical_url": "https://app.example.com/dashboard",
                "raw_url": "https://app.example.com/dashboard",
                "ts": "2024-01-15T10:30:00Z", "properties": {},
                // The connector stamps what 0.13.0 clients read.
                "index": 0, "timestamp_start": 1_705_314_600.0,
                "timestamp_end": 1_705_314_600.0,
            }],
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_raw_against_the_connector_includes_heartbeats() {
    let server = Server::start(Duration::from_millis(50)).await;
    // Published before the listener starts; `--last-event-id 0` replays it first.
    server
        .post_events(
            "acme",
            &batch(
                "s1",
                &[(
                    "pageview",
                    "Viewed Dashboard",
                    "https://app.example.com/dashboard",
                )],
            ),
        )
        .await;
    let url = server.url("/stream/acme");
    let (status, stdout, stderr) = run(&[
        "listen",
        &url,
        "--token",
        ACME_KEY,
        "--format",
        "raw",
        "--last-event-id",
        "0",
        "--max-events",
        "3",
    ])
    .await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let first: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first["event"], "actions");
    assert_eq!(first["id"], "1");
    let payload = Event::from_json(first["data"].as_str().unwrap()).unwrap();
    assert_eq!(payload.session_id(), Some("s1"));
    assert_eq!(lines[1], r#"{"event":"heartbeat","data":"","id":"1"}"#);
    assert_eq!(lines[2], r#"{"event":"heartbeat","data":"","id":"1"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_reads_the_token_from_the_environment() {
    let server = Server::start(Duration::from_millis(50)).await;
    let url = server.url("/stream/acme");
    let (status, stdout, stderr) = Proc::spawn_with(
        &["listen", &url, "--format", "raw", "--max-events", "1"],
        &[("AUTOPLAY_TOKEN", ACME_KEY)],
    )
    .finish()
    .await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "{\"event\":\"heartbeat\",\"data\":\"\",\"id\":null}\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_fatal_statuses_exit_2_naming_status_and_url() {
    let server = Server::start(Duration::from_secs(30)).await;
    let cases = [
        ("/stream/acme", Some("wrong_key"), "401"),
        ("/stream/acme", None, "401"),
        ("/stream/acme", Some(BETA_KEY), "403"),
        ("/stream/nope", Some(ACME_KEY), "404"),
    ];
    for (path, token, code) in cases {
        let url = server.url(path);
        let mut args = vec!["listen", url.as_str(), "--initial-backoff-ms", "10"];
        if let Some(token) = token {
            args.extend(["--token", token]);
        }
        let (status, stdout, stderr) = run(&args).await;
        assert_eq!(status.code(), Some(2), "{path} {token:?}: {stderr}");
        assert!(stdout.is_empty());
        assert!(stderr.contains(code), "{stderr}");
        assert!(stderr.contains(&url), "{stderr}");
        assert!(!stderr.contains("wrong_key"), "the token leaked: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_exits_1_when_retries_are_exhausted() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/stream/acme");
    let started = std::time::Instant::now();
    let (status, stdout, stderr) = run(&[
        "listen",
        &url,
        "--token",
        "k",
        "--max-retries",
        "2",
        "--initial-backoff-ms",
        "10",
        "--max-backoff-ms",
        "20",
    ])
    .await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains(&url), "{stderr}");
    // Each wait is announced with the attempt that failed and why.
    for attempt in [1, 2] {
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&format!("autoplay: attempt {attempt} failed (")))
            .unwrap_or_else(|| panic!("no line for attempt {attempt}: {stderr}"));
        assert!(
            line.contains("retrying in ") && line.ends_with(" ms"),
            "{line}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_exits_0_on_sigint_and_sigterm() {
    let server = Server::start(Duration::from_secs(30)).await;
    let url = server.url("/stream/acme");
    for signal in ["INT", "TERM"] {
        let listener = Proc::spawn(&["listen", &url, "--token", ACME_KEY]);
        listener.wait_connected().await;
        listener.signal(signal);
        let (status, _, stderr) = listener.finish().await;
        assert_eq!(status.code(), Some(0), "SIG{signal}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_ends_quietly_when_stdout_is_closed() {
    let server = Server::start(Duration::from_millis(20)).await;
    let url = server.url("/stream/acme");
    let mut child = Command::new(BIN)
        .args(["listen", &url, "--token", ACME_KEY, "--format", "raw"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(WAIT, stdout.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert!(line.contains("heartbeat"), "{line}");
    // Like `| head -1`: the reader goes away; the next heartbeat hits EPIPE.
    drop(stdout);
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits after EPIPE")
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_exit_2() {
    let cases: &[&[&str]] = &[
        &["listen"],
        &["listen", "http://127.0.0.1:1/stream/x", "--format", "xml"],
        &["listen", "http://127.0.0.1:1/stream/x", "--max-events", "0"],
        &[
            "listen",
            "http://127.0.0.1:1/stream/x",
            "--header",
            "no colon",
        ],
        &[
            "listen",
            "http://127.0.0.1:1/stream/x",
            "--read-timeout-s",
            "-1",
        ],
        &["listen", "not a url"],
        &["listen", "ftp://127.0.0.1/stream/x"],
        &[
            "listen",
            "http://127.0.0.1:1/stream/x",
            "--initial-backoff-ms",
            "500",
            "--max-backoff-ms",
            "100",
        ],
        &[
            "listen",
            "http://127.0.0.1:1/stream/x",
            "--log-level",
            "=bad=[",
        ],
        &["connector", "--product", "missing_key"],
        &["connector", "--heartbeat-s", "0"],
        &["connector", "--config", "/nonexistent/autoplay.toml"],
        &["demo", "--max-events", "x"],
        &["frobnicate"],
    ];
    for args in cases {
        let (status, stdout, stderr) = run(args).await;
        assert_eq!(status.code(), Some(2), "{args:?}: {stdout} {stderr}");
        assert!(!stderr.is_empty(), "{args:?}");
    }
}

// ---------------------------------------------------------------------------
// connector, demo, help
// ---------------------------------------------------------------------------

fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in {text}"))
        .trim()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_generates_a_demo_product_prints_its_url_and_key_and_serves() {
    let connector = Proc::spawn(&[
        "connector",
        "--listen",
        "127.0.0.1:0",
        "--heartbeat-s",
        "30",
    ]);
    connector.wait_for(false, "key:").await;
    let banner = connector.stdout();
    assert!(banner.contains("generated"), "{banner}");
    let stream = field(&banner, "stream:").to_owned();
    let webhook = field(&banner, "webhook:").to_owned();
    let key = field(&banner, "key:").to_owned();
    assert!(stream.starts_with("http://127.0.0.1:") && stream.ends_with("/stream/demo"));
    assert!(webhook.ends_with("/webhook/demo"));

    let listener = Proc::spawn(&["listen", &stream, "--token", &key, "--max-events", "1"]);
    listener.wait_connected().await;
    let pageview = r#"{"event":"$pageview","distinct_id":"user_456","timestamp":"2024-01-15T10:30:00.000Z","properties":{"$current_url":"https://app.example.com/projects/8812/board?view=kanban#top","$session_id":"sess-1","title":"Project board"}}"#;
    // A product without a webhook secret takes its API key as the webhook credential.
    let response = reqwest::Client::new()
        .post(&webhook)
        .header("x-posthog-secret", &key)
        .header("content-type", "application/json")
        .body(pageview)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, stdout, stderr) = listener.finish().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "Session sess-1 \u{2014} 1 actions\n\
         1. Viewed Project board \u{2014} https://app.example.com/projects/:id/board\n\n"
    );

    connector.signal("TERM");
    let (status, _, stderr) = connector.finish().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains(&key), "the key was logged: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_with_products_prints_urls_but_no_keys() {
    let connector = Proc::spawn(&[
        "connector",
        "--listen",
        "127.0.0.1:0",
        "--product",
        "acme:ak_secret_1:whsec_secret_2",
        "--summary-threshold",
        "0",
        "--replay-events",
        "100",
    ]);
    connector.wait_for(false, "product acme:").await;
    let banner = connector.stdout();
    let stream = banner
        .split_whitespace()
        .find(|w| w.ends_with("/stream/acme"))
        .unwrap()
        .to_owned();
    // The key from --product opens the stream.
    let response = reqwest::Client::new()
        .get(&stream)
        .bearer_auth("ak_secret_1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    connector.signal("INT");
    let (status, stdout, stderr) = connector.finish().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    for secret in ["ak_secret_1", "whsec_secret_2"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_payload_text_and_exits_0_after_max_events() {
    let started = std::time::Instant::now();
    let (status, stdout, stderr) = run(&["demo", "--max-events", "3"]).await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.matches("\n\n").count(), 3, "{stdout}");
    assert!(stdout.contains("Session "), "{stdout}");
    assert!(
        stdout.contains(" \u{2014} https://app.example.com/"),
        "{stdout}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_its_stream_and_key_and_a_second_client_can_attach() {
    let demo = Proc::spawn(&["demo", "--users", "2"]);
    demo.wait_for(true, "autoplay listen ").await;
    let banner = demo.stderr();
    let indented = |label: &str| {
        banner
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label:?} in {banner}"))
            .trim()
            .to_owned()
    };
    let (stream, key) = (indented("stream:"), indented("key:"));
    assert!(stream.starts_with("http://127.0.0.1:") && stream.ends_with("/stream/demo"));
    assert!(key.starts_with("ak_demo_"), "{banner}");
    assert!(
        banner.contains(&format!("AUTOPLAY_TOKEN={key} autoplay listen {stream}")),
        "{banner}"
    );

    // The live view as printed: the page a browser opens (the browser test in the
    // connector's crate drives it; here, that the printed address serves it).
    let ui = indented("browser:");
    let ui = ui.split_whitespace().next().unwrap();
    assert_eq!(ui, stream.replace("/stream/demo", "/ui"), "{banner}");
    let page = reqwest::get(ui).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<title>Autoplay live view</title>")
    );

    // The attach command as printed: the token from the environment.
    let second = Proc::spawn_with(
        &["listen", &stream, "--max-events", "2"],
        &[("AUTOPLAY_TOKEN", &key)],
    );
    let (status, stdout, stderr) = second.finish().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("Session "), "{stdout}");

    demo.signal("INT");
    let (status, _, stderr) = demo.finish().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_summaries() {
    let (status, stdout, stderr) = run(&[
        "demo",
        "--users",
        "1",
        "--summary-threshold",
        "2",
        "--max-events",
        "4",
    ])
    .await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("[summary] session "), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_on_every_subcommand() {
    for (args, usage) in [
        (&["--help"][..], "Usage: autoplay [OPTIONS] <COMMAND>"),
        (&["listen", "--help"][..], "Usage: autoplay listen"),
        (&["connector", "--help"][..], "Usage: autoplay connector"),
        (&["demo", "--help"][..], "Usage: autoplay demo"),
        (&["help", "listen"][..], "Usage: autoplay listen"),
    ] {
        let (status, stdout, _) = run(args).await;
        assert_eq!(status.code(), Some(0), "{args:?}");
        assert!(stdout.contains(usage), "{args:?}: {stdout}");
    }
    let (_, stdout, _) = run(&["listen", "--help"]).await;
    for flag in [
        "--token",
        "--format",
        "--max-events",
        "--last-event-id",
        "--header",
        "--initial-backoff-ms",
        "--max-backoff-ms",
        "--read-timeout-s",
        "--max-retries",
        "AUTOPLAY_TOKEN",
    ] {
        assert!(stdout.contains(flag), "{flag} missing from listen --help");
    }
    let (_, stdout, _) = run(&["connector", "--help"]).await;
    for flag in [
        "--config",
        "--listen",
        "--product",
        "--heartbeat-s",
        "--replay-events",
        "--summary-threshold",
    ] {
        assert!(
            stdout.contains(flag),
            "{flag} missing from connector --help"
        );
    }
}

/// Hardening limits come from flags too, and a bad one stops the connector
/// before it binds, saying what form is expected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_limit_flags_are_validated() {
    let (status, _, stderr) = run(&[
        "connector",
        "--listen",
        "127.0.0.1:0",
        "--max-frame-bytes",
        "100",
    ])
    .await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("max_frame_bytes = 100") && stderr.contains("at least 4096"),
        "{stderr}"
    );
    let (status, _, stderr) = run(&[
        "connector",
        "--listen",
        "127.0.0.1:0",
        "--replay-bytes",
        "5000",
    ])
    .await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("replay_bytes = 5000"), "{stderr}");
    let (status, _, stderr) = run(&["connector", "--body-timeout-s", "0"]).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    let (status, stdout, _) = run(&["connector", "--help"]).await;
    assert_eq!(status.code(), Some(0));
    assert!(stdout.contains("visible to every user"), "{stdout}");
}

/// Keys and secrets can stay out of argv: products from AUTOPLAY_PRODUCTS, the
/// metrics token from AUTOPLAY_METRICS_TOKEN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_takes_products_and_metrics_token_from_the_environment() {
    let connector = Proc::spawn_with(
        &["connector", "--listen", "127.0.0.1:0"],
        &[
            (
                "AUTOPLAY_PRODUCTS",
                "acme:ak_env_1:whsec_env_2 beta:ak_env_3",
            ),
            ("AUTOPLAY_METRICS_TOKEN", "mt_env_4"),
        ],
    );
    connector.wait_for(false, "product beta:").await;
    let banner = connector.stdout();
    let stream = banner
        .split_whitespace()
        .find(|w| w.ends_with("/stream/acme"))
        .unwrap()
        .to_owned();
    let client = reqwest::Client::new();
    let status = |request: reqwest::RequestBuilder| async move {
        request.send().await.unwrap().status().as_u16()
    };
    assert_eq!(
        status(client.get(&stream).bearer_auth("ak_env_1")).await,
        200
    );
    let metrics = stream.replace("/stream/acme", "/metrics");
    assert_eq!(status(client.get(&metrics)).await, 401);
    assert_eq!(
        status(client.get(&metrics).bearer_auth("mt_env_4")).await,
        200
    );
    connector.signal("INT");
    let (status, stdout, stderr) = connector.finish().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    for secret in ["ak_env_1", "whsec_env_2", "ak_env_3", "mt_env_4"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
}
