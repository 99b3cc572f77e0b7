//! `autoplay-bench store [STORE...]`: webhook ingest and `Last-Event-ID` replay
//! of one connector per store (`memory`, `file://<dir>`, ...), side by side.
//!
//! Prints a Markdown table on stdout (it does not rewrite `docs/benchmarks.md`;
//! the figures and the command go into `docs/deploy.md` by hand). Each store gets
//! a fresh `autoplay connector` child (the CLI as shipped, mimalloc), 5 s of the
//! part-4 ingest load (PostHog batches of 100 events from 8 connections, summaries
//! every 10 actions), then one subscriber with `Last-Event-ID: 0` reading the
//! whole replay window (up to 200,000 frames): replay events/s = frames / time
//! from the request to the last frame.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::connector::KEY;
use crate::report::{mib, thousands};

/// Frames kept for replay in the benchmark connectors.
const WINDOW: u64 = 200_000;

struct StoreConnector {
    child: Child,
    addr: SocketAddr,
}

impl Drop for StoreConnector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(store: &str) -> Option<StoreConnector> {
    let exe = crate::binaries::built("autoplay-cli", "autoplay")?;
    let mut command = Command::new(exe);
    command
        .args([
            "connector",
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "error",
        ])
        .args(["--product", &format!("acme:{KEY}")])
        .args(["--summary-threshold", "10"])
        .args(["--replay-events", &WINDOW.to_string()])
        .args(["--replay-bytes", &(1u64 << 30).to_string()]);
    // `memory` is the default: passing no flag also measures a connector that
    // predates `--store`.
    if store != "memory" {
        command.args(["--store", store]);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take()?)
        .read_line(&mut line)
        .ok()?;
    let addr = line.trim().rsplit("http://").next()?.parse().ok()?;
    Some(StoreConnector { child, addr })
}

async fn published(addr: SocketAddr) -> u64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .ok()
        .and_then(|r| r.error_for_status().ok());
    let Some(response) = text else { return 0 };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("autoplay_events_published_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Reads `expected` frames after `Last-Event-ID: 0`; returns (frames, seconds).
async fn replay(addr: SocketAddr, expected: u64) -> (u64, f64) {
    let started = Instant::now();
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/stream/acme"))
        .bearer_auth(KEY)
        .header("last-event-id", "0")
        .send()
        .await;
    let Ok(response) = response else {
        return (0, 0.0);
    };
    let mut body = response.bytes_stream();
    let mut frames = 0u64;
    // A frame ends with a blank line; the pair may straddle two chunks.
    let mut last_was_newline = false;
    let deadline = started + Duration::from_secs(120);
    while frames < expected && Instant::now() < deadline {
        let Ok(Some(Ok(chunk))) = tokio::time::timeout(Duration::from_secs(5), body.next()).await
        else {
            break;
        };
        for &b in chunk.iter() {
            if b == b'\n' {
                if last_was_newline {
                    frames += 1;
                }
                last_was_newline = !last_was_newline;
            } else {
                last_was_newline = false;
            }
        }
    }
    (frames, started.elapsed().as_secs_f64())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Runs the stores given (default: `memory`) and returns the Markdown section.
pub fn run(stores: &[String]) -> String {
    let stores: Vec<String> = if stores.is_empty() {
        vec!["memory".to_owned()]
    } else {
        stores.to_vec()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| store | events accepted | ingest events/s | failed requests | frames replayed | replay events/s | connector RSS MiB |\n\
         |---|---:|---:|---:|---:|---:|---:|"
    );
    for store in &stores {
        eprintln!("store: {store}");
        let Some(conn) = start(store) else {
            let _ = writeln!(out, "| {store} | could not start | | | | | |");
            continue;
        };
        let (accepted, secs, failures) = rt.block_on(crate::parts::ingest(conn.addr, 5));
        let expected = rt.block_on(published(conn.addr)).min(WINDOW);
        let (frames, replay_secs) = rt.block_on(replay(conn.addr, expected));
        let rss = rss_kib(conn.child.id());
        let _ = writeln!(
            out,
            "| {store} | {} | {} | {failures} | {} of {} | {} | {} |",
            thousands(accepted as f64),
            thousands(accepted as f64 / secs),
            thousands(frames as f64),
            thousands(expected as f64),
            thousands(frames as f64 / replay_secs.max(1e-9)),
            mib(rss),
        );
    }
    out
}
