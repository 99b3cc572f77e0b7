//! The live view in a real browser: headless Chromium (Debian's `chromium`,
//! driven by `playwright-core` from `tests/browser/`) opens `/`, follows the link
//! to `/ui`, connects with an API key, and must show the sessions, actions and
//! summaries of webhooks posted to a real connector; then the connector restarts
//! on the same port and the page must reconnect by itself and show what is
//! posted after the restart. A second test drops the connection while the
//! connector keeps running: the browser's own `EventSource` must reconnect with
//! `Last-Event-ID` and show what was published meanwhile.
//!
//! Needs `chromium` (or `$AUTOPLAY_CHROMIUM`), `node` and `npm ci` run in
//! `tests/browser/`; `scripts/test.sh` sees to all three and sets
//! `AUTOPLAY_BROWSER_TEST=1`. Outside it and outside CI, the test is skipped
//! with a message when one of them is missing; with either set, a missing one
//! fails the test.
//!
//! The screenshot goes to `$AUTOPLAY_LIVE_VIEW_SCREENSHOT`, else into the
//! target directory; `docs/live-view.png` is one taken this way.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How long one step of the browser may take (launch included).
const STEP: Duration = Duration::from_secs(40);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// What the browser test needs, or why it cannot run.
fn prerequisites() -> Result<PathBuf, String> {
    let chromium = std::env::var_os("AUTOPLAY_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        return Err(format!(
            "no Chromium at {} (Debian: apt-get install chromium; or set AUTOPLAY_CHROMIUM)",
            chromium.display()
        ));
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => return Err("no `node` on PATH (Debian: apt-get install nodejs npm)".into()),
    }
    if !browser_dir().join("node_modules/playwright-core").is_dir() {
        return Err(format!(
            "playwright-core is not installed: run `npm ci` in {}",
            browser_dir().display()
        ));
    }
    Ok(chromium)
}

fn required() -> bool {
    ["AUTOPLAY_BROWSER_TEST", "CI"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0"))
}

/// The node script, its stdin, and its stdout lines as they come.
struct Driver {
    child: Child,
    /// `None` once closed, which tells the script the test is done with it.
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Driver {
    fn start(url: &str, chromium: &Path, scenario: &str, screenshot: &Path) -> Self {
        let mut child = Command::new("node")
            .arg("live_view.mjs")
            .current_dir(browser_dir())
            .env("LIVE_URL", url)
            .env("LIVE_SCENARIO", scenario)
            .env("LIVE_PRODUCT", "acme")
            .env("LIVE_KEY", ACME_KEY)
            .env("LIVE_SCREENSHOT", screenshot)
            .env("CHROMIUM", chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node starts");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Driver {
            child,
            stdin,
            lines,
        }
    }

    /// Waits (off the runtime's threads) for the script to report `step`.
    async fn reached(&mut self, step: &str) {
        let got = tokio::task::block_in_place(|| self.lines.recv_timeout(STEP));
        match got {
            Ok(line) if line == step => {}
            Ok(line) => panic!("the browser script said {line:?}, expected {step:?}"),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("the browser script did not reach {step:?} within {STEP:?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().ok();
                panic!(
                    "the browser script ended before {step:?} (exit status {status:?}; \
                     its reason is on stderr above)"
                );
            }
        }
    }

    /// Closes the script's stdin and waits for it to exit.
    fn finish(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        tokio::task::block_in_place(|| self.child.wait()).expect("waiting for node")
    }

    fn tell(&mut self, step: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open until finish");
        writeln!(stdin, "{step}").expect("the browser script is still running");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn capture(event: &str, session: &str, second: u32, properties: Value) -> Value {
    let mut properties = properties;
    properties["$session_id"] = json!(session);
    json!({
        "event": event,
        "distinct_id": format!("user_{session}"),
        "timestamp": format!("2026-12-02T10:00:{second:02}Z"),
        "properties": properties,
    })
}

fn config_on(listen: SocketAddr) -> autoplay_connector::ConnectorConfig {
    let mut config = config();
    config.listen = listen;
    config.summary_threshold = 3;
    config
}

async fn live_subscribers(server: &Server) -> f64 {
    server.metric("autoplay_live_subscribers").await
}

/// Until the connector counts `n` subscribers (the page connected).
async fn until_subscribers(server: &Server, n: f64) {
    let deadline = Instant::now() + STEP;
    while live_subscribers(server).await != n {
        assert!(
            Instant::now() < deadline,
            "the page did not (re)connect within {STEP:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The page opened through `url`, connected, and showing the first session.
async fn first_session(
    server: &Server,
    url: &str,
    scenario: &str,
    chromium: &Path,
    screenshot: &Path,
) -> Driver {
    let mut browser = Driver::start(url, chromium, scenario, screenshot);
    browser.reached("connected").await;
    until_subscribers(server, 1.0).await;
    let before = json!([
        capture(
            "$pageview",
            "sess_before",
            0,
            json!({"$current_url": "https://app.example.com/pricing", "title": "Pricing", "email": "alice@example.com"})
        ),
        capture(
            "$autocapture",
            "sess_before",
            4,
            json!({"$event_type": "click", "$el_text": "Start trial", "$current_url": "https://app.example.com/pricing"})
        ),
        capture(
            "$autocapture",
            "sess_before",
            9,
            json!({"$event_type": "click", "$el_text": "<img src=x onerror=window.pwned=1>", "$current_url": "https://app.example.com/trial/42"})
        ),
        capture(
            "$pageview",
            "sess_before",
            15,
            json!({"$current_url": "https://app.example.com/trial/42/billing", "title": "Billing"})
        ),
    ]);
    let response = server.post_webhook("acme", before.to_string()).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    browser.tell("posted");
    browser.reached("seen first session").await;
    browser
}

/// Or why the test is skipped (`None`).
fn chromium_or_skip() -> Option<PathBuf> {
    match prerequisites() {
        Ok(chromium) => Some(chromium),
        Err(missing) if !required() => {
            eprintln!("SKIPPED the live view browser test: {missing}");
            None
        }
        Err(missing) => panic!(
            "the live view browser test must run here (AUTOPLAY_BROWSER_TEST or CI is set): {missing}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_sessions_live_and_survives_a_restart() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let screenshot = std::env::var_os("AUTOPLAY_LIVE_VIEW_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("live-view.png"));
    let _ = std::fs::remove_file(&screenshot);

    let server = Server::start(config_on("127.0.0.1:0".parse().unwrap())).await;
    let addr = server.addr;
    let mut browser =
        first_session(&server, &server.url(""), "restart", &chromium, &screenshot).await;

    // The restart: every stream ends, the port is free, a new run takes it.
    server.shutdown.shutdown();
    server.task.await.unwrap().unwrap();
    let server = Server::start(config_on(addr)).await;
    assert_eq!(server.addr, addr);
    until_subscribers(&server, 1.0).await;
    let after = json!([
        capture(
            "$pageview",
            "sess_after",
            20,
            json!({"$current_url": "https://app.example.com/signup", "title": "Sign up", "email": "bob@example.com"})
        ),
        capture(
            "$autocapture",
            "sess_after",
            25,
            json!({"$event_type": "change", "$el_text": "work email", "$current_url": "https://app.example.com/signup"})
        ),
        capture(
            "$autocapture",
            "sess_after",
            31,
            json!({"$event_type": "submit", "$el_text": "signup", "$current_url": "https://app.example.com/signup"})
        ),
    ]);
    let response = server.post_webhook("acme", after.to_string()).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    browser.tell("restarted and posted");
    browser.reached("done").await;

    let status = browser.finish();
    assert!(status.success(), "the browser script failed: {status}");
    let png = std::fs::read(&screenshot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} is no screenshot ({} bytes)",
        screenshot.display(),
        png.len()
    );
    eprintln!("screenshot: {}", screenshot.display());
    server.shutdown.shutdown();
}

/// A TCP relay between the browser and the connector that can cut every
/// connection and hold new ones in its backlog: a network drop, with the
/// connector still running. It keeps the head of each request it relays.
struct Relay {
    addr: SocketAddr,
    open: tokio::sync::watch::Sender<bool>,
    cut: Arc<Mutex<CancellationToken>>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, mut is_open) = tokio::sync::watch::channel(true);
        let cut = Arc::new(Mutex::new(CancellationToken::new()));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (cut_, heads_) = (cut.clone(), heads.clone());
        tokio::spawn(async move {
            loop {
                if is_open.wait_for(|open| *open).await.is_err() {
                    return;
                }
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let cut = cut_.lock().unwrap().clone();
                let heads = heads_.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut first = vec![0u8; 8192];
                    let n = match client.read(&mut first).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    heads
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&first[..n]).into_owned());
                    if server.write_all(&first[..n]).await.is_err() {
                        return;
                    }
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Relay {
            addr,
            open,
            cut,
            heads,
        }
    }

    /// Closes every relayed connection and leaves new ones waiting.
    fn drop_connections(&self) {
        self.open.send_replace(false);
        let old = std::mem::take(&mut *self.cut.lock().unwrap());
        old.cancel();
    }

    fn resume(&self) {
        self.open.send_replace(true);
    }

    /// The `Last-Event-ID` headers of the stream requests relayed.
    fn last_event_ids(&self) -> Vec<String> {
        self.heads
            .lock()
            .unwrap()
            .iter()
            .filter(|head| head.starts_with("GET /stream/"))
            .flat_map(|head| head.lines().map(str::to_owned).collect::<Vec<_>>())
            .filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("last-event-id")
                    .then(|| value.trim().to_owned())
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_itself_resumes_a_dropped_stream_by_last_event_id() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let server = Server::start(config_on("127.0.0.1:0".parse().unwrap())).await;
    let relay = Relay::start(server.addr).await;
    let url = format!("http://{}", relay.addr);
    let unused = Path::new(env!("CARGO_TARGET_TMPDIR")).join("live-view-drop.png");
    let mut browser = first_session(&server, &url, "drop", &chromium, &unused).await;
    assert!(
        relay.last_event_ids().is_empty(),
        "the first stream resumed nothing"
    );

    relay.drop_connections();
    until_subscribers(&server, 0.0).await;
    // Published while the browser is away: it must come from the replay buffer.
    let gap = json!(capture(
        "$autocapture",
        "sess_gap",
        40,
        json!({"$event_type": "click", "$el_text": "Retry export", "$current_url": "https://app.example.com/export"})
    ));
    let response = server.post_webhook("acme", gap.to_string()).await;
    assert_eq!(response.status(), 200);
    relay.resume();
    until_subscribers(&server, 1.0).await;
    browser.tell("dropped and posted");
    browser.reached("done").await;
    assert!(browser.finish().success());
    // Actions (1) and their summary (2) were shown before the drop.
    assert_eq!(relay.last_event_ids(), ["2"]);
    server.shutdown.shutdown();
}
