//! `autoplay connector --store <dir>` as shipped: 10,000 events posted, the
//! process `kill -9`ed while they are being posted, started again on the same
//! directory, and the rest posted; a client reading from the start gets every
//! event answered 200, once, with ids strictly increasing across the restart.
#![cfg(unix)]

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;

const BIN: &str = env!("CARGO_BIN_EXE_autoplay");
const KEY: &str = "ak_store";
const SECRET: &str = "whsec_store";

struct Connector {
    child: std::process::Child,
    addr: String,
}

impl Connector {
    fn start(dir: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args([
                "connector",
                "--listen",
                "127.0.0.1:0",
                "--log-level",
                "error",
            ])
            .args(["--store", &format!("file://{}", dir.display())])
            .args(["--replay-events", "50000", "--summary-threshold", "0"])
            .env("AUTOPLAY_PRODUCTS", format!("acme:{KEY}:{SECRET}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the connector");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        stdout.read_line(&mut banner).unwrap();
        let addr = banner
            .trim()
            .rsplit("http://")
            .next()
            .expect("listening on http://ADDR")
            .to_owned();
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Connector { child, addr }
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        // SIGKILL: the point of the test.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("autoplay-store-cli-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Posts events `from..to` (one action titled `e<n>` each) from 8 connections,
/// each stopping at its first failure; returns those answered 200 and the first
/// never tried.
async fn post(addr: &str, from: usize, to: usize, acked: Arc<AtomicUsize>) -> (Vec<usize>, usize) {
    let next = Arc::new(AtomicUsize::new(from));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (next, acked, url) = (
            next.clone(),
            acked.clone(),
            format!("http://{addr}/events/acme"),
        );
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut ok = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= to {
                    return ok;
                }
                let body = serde_json::json!({
                    "session_id": format!("s{}", n % 40),
                    "actions": [{"event_type": "click", "title": format!("e{n}")}],
                });
                match client
                    .post(&url)
                    .header("x-posthog-secret", SECRET)
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        ok.push(n);
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => return ok,
                }
            }
        }));
    }
    let mut ok = Vec::new();
    for task in tasks {
        ok.extend(task.await.unwrap());
    }
    (ok, next.load(Ordering::Relaxed).min(to))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_publishing_loses_nothing_acknowledged() {
    const EVENTS: usize = 10_000;
    let dir = TempDir::new();
    let mut connector = Connector::start(&dir.0);
    let acked_count = Arc::new(AtomicUsize::new(0));
    let posting = {
        let addr = connector.addr.clone();
        let acked_count = acked_count.clone();
        tokio::spawn(async move { post(&addr, 0, EVENTS, acked_count).await })
    };
    while acked_count.load(Ordering::Relaxed) < EVENTS / 3 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    connector.child.kill().unwrap();
    connector.child.wait().unwrap();
    let (mut acked, untried) = posting.await.unwrap();
    assert!(untried < EVENTS, "the kill came after the last post");

    let connector = Connector::start(&dir.0);
    let (again, _) = post(&connector.addr, untried, EVENTS, Arc::default()).await;
    assert_eq!(again.len(), EVENTS - untried);
    acked.extend(again);

    // A client reading the whole window, which holds every event of both runs.
    let response = reqwest::Client::new()
        .get(format!("http://{}/stream/acme", connector.addr))
        .bearer_auth(KEY)
        .header("last-event-id", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut buffer = Vec::new();
    let mut ids = Vec::new();
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut missing: HashSet<usize> = acked.iter().copied().collect();
    // Until every acknowledged event came, then what else the window holds.
    loop {
        let wait = if missing.is_empty() { 0.3 } else { 10.0 };
        let chunk = match tokio::time::timeout(Duration::from_secs_f64(wait), body.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            _ => break,
        };
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = buffer.drain(..end + 2).collect();
            let text = std::str::from_utf8(&frame).unwrap();
            let Some(id) = text.strip_prefix("id: ") else {
                continue;
            };
            ids.push(id.split('\n').next().unwrap().parse::<u64>().unwrap());
            let data = text.split("\ndata: ").nth(1).unwrap().trim_end();
            let json: serde_json::Value = serde_json::from_str(data).unwrap();
            let n: usize = json["actions"][0]["title"].as_str().unwrap()[1..]
                .parse()
                .unwrap();
            missing.remove(&n);
            *seen.entry(n).or_default() += 1;
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged events are missing",
        missing.len()
    );
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids do not strictly increase across the restart"
    );
    assert_eq!(ids.first(), Some(&1));
}
