//! Abuse cases from issue 13, each measured on a connector in a child process:
//! its RSS from `/proc/<pid>/status` and its descriptors from `/proc/<pid>/fd`.
//!
//! The child is this test binary itself, re-run on the ignored test
//! `child_connector` with `AUTOPLAY_HARDENING_CHILD` set: the connector under test
//! is the library, nothing else shares its process, and no other binary needs to
//! be built first.
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHILD: &str = "AUTOPLAY_HARDENING_CHILD";

/// Not a test: the connector process the other tests measure.
#[test]
#[ignore = "run by the other tests of this file as their child process"]
fn child_connector() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let seconds = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .map_or(default, |v| v.parse().unwrap())
    };
    let mut config = config();
    config.body_read_timeout = Duration::from_secs_f64(seconds("CHILD_BODY_TIMEOUT_S", 15.0));
    config.write_timeout = Duration::from_secs_f64(seconds("CHILD_WRITE_TIMEOUT_S", 30.0));
    config.heartbeat_interval = Duration::from_secs_f64(seconds("CHILD_HEARTBEAT_S", 30.0));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let connector = autoplay_connector::Connector::bind(config).await.unwrap();
        println!("child listening on {}", connector.local_addr());
        connector.serve().await.unwrap();
    });
}

/// A connector in a child process, killed when dropped.
struct Child {
    process: std::process::Child,
    addr: SocketAddr,
}

impl Child {
    fn spawn(env: &[(&str, &str)]) -> Child {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["child_connector", "--exact", "--ignored", "--nocapture"])
            .env(CHILD, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut process = command.spawn().unwrap();
        let stdout = process.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines.next().expect("the child exited").unwrap();
            if let Some(addr) = line.strip_prefix("child listening on ") {
                break addr.parse().unwrap();
            }
        };
        // Keep draining its stdout so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Child { process, addr }
    }

    fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Resident memory, KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Open descriptors.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// One counter of `/metrics`, over a connection closed right after.
    async fn metric(&self, name: &str) -> f64 {
        let (_, body) = request(self.addr, "GET /metrics HTTP/1.1\r\n", &[], b"").await;
        body.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name}"))
    }

    /// Polls until `condition` holds, failing after `within`.
    async fn wait_until(&self, within: Duration, what: &str, condition: impl Fn(&Child) -> bool) {
        let deadline = Instant::now() + within;
        while !condition(self) {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// One request with `Connection: close`; the status code and the body.
async fn request(
    addr: SocketAddr,
    request_line: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{request_line}Host: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, socket.read_to_end(&mut response))
        .await
        .expect("no response")
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn webhook_head(content_length: usize, credential: (&str, &str)) -> String {
    format!(
        "POST /webhook/acme HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {content_length}\r\n{}: {}\r\n\r\n",
        credential.0, credential.1
    )
}

/// The first bytes of the response, once its head is in (or EOF).
async fn read_head(socket: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    (!got.is_empty()).then(|| String::from_utf8_lossy(&got).into_owned())
}

const FIVE_MIB: usize = 5 * 1024 * 1024;

/// Issue 13: "20 such connections took RSS from 5.6 to 101 MiB, and 95.6 MiB
/// stayed after they closed". Now a request without a valid credential is refused
/// from its head: nothing of its body is read, let alone buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_bodies_cost_no_buffering() {
    let child = Child::spawn(&[]);
    let (status, _) = request(
        child.addr,
        "POST /webhook/acme HTTP/1.1\r\n",
        &[("x-posthog-secret", ACME_SECRET)],
        fixture("capture-pageview").as_bytes(),
    )
    .await;
    assert_eq!(status, 200);

    // Refused before a byte of the body is sent.
    let mut socket = TcpStream::connect(child.addr).await.unwrap();
    socket
        .write_all(webhook_head(FIVE_MIB, ("x-posthog-secret", "wrong")).as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut socket, Duration::from_secs(2))
        .await
        .expect("no answer before the body: the connector waits to read it");
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );

    let before = child.rss_kib();
    let body = vec![b' '; FIVE_MIB];
    let senders: Vec<_> = (0..20)
        .map(|i| {
            let body = body.clone();
            let addr = child.addr;
            tokio::spawn(async move {
                let mut socket = TcpStream::connect(addr).await.unwrap();
                let credential = if i % 2 == 0 {
                    ("x-posthog-secret", "wrong")
                } else {
                    ("authorization", "Bearer ak_acme")
                };
                socket
                    .write_all(webhook_head(FIVE_MIB, credential).as_bytes())
                    .await
                    .unwrap();
                // The connector closes the connection after its 401, so the rest
                // of the body may well be refused by the kernel: that is the point.
                let _ = socket.write_all(&body).await;
                read_head(&mut socket, WAIT).await
            })
        })
        .collect();
    let peak = {
        let mut peak = 0;
        for sender in senders {
            if let Some(head) = sender.await.unwrap() {
                assert!(head.starts_with("HTTP/1.1 401"), "{head}");
            }
            peak = peak.max(child.rss_kib());
        }
        peak
    };
    let after = child.rss_kib();
    eprintln!(
        "20 unauthenticated 5 MiB bodies: RSS {} KiB before, {} KiB at the highest seen, {} KiB after",
        before, peak, after
    );
    assert!(
        after.saturating_sub(before) < 8 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    assert_eq!(child.metric("autoplay_auth_failures_total").await, 21.0);
}

/// Issue 13: "Slow request bodies are never timed out (50 of 50 still open after
/// 40 s)". Now each gets 408 and its connection closed at the body timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_are_closed_at_the_body_timeout() {
    let child = Child::spawn(&[("CHILD_BODY_TIMEOUT_S", "1")]);
    let idle_fds = child.fds();
    let mut sockets = Vec::new();
    for _ in 0..50 {
        let mut socket = TcpStream::connect(child.addr).await.unwrap();
        socket
            .write_all(webhook_head(1000, ("x-posthog-secret", ACME_SECRET)).as_bytes())
            .await
            .unwrap();
        socket.write_all(b"[{\"event\":").await.unwrap();
        sockets.push(socket);
    }
    let started = Instant::now();
    child
        .wait_until(WAIT, "the slow bodies never reached the connector", |c| {
            c.fds() >= idle_fds + 50
        })
        .await;
    let held = child.fds();
    for socket in &mut sockets {
        let head = read_head(socket, Duration::from_secs(4))
            .await
            .expect("a slow body was never answered");
        assert!(head.starts_with("HTTP/1.1 408"), "{head}");
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(2), socket.read_to_end(&mut rest))
            .await
            .expect("the connection stayed open after the 408")
            .unwrap();
    }
    let elapsed = started.elapsed();
    child
        .wait_until(
            Duration::from_secs(2),
            "the connector still holds the slow connections",
            |c| c.fds() <= idle_fds + 1,
        )
        .await;
    eprintln!(
        "50 slow bodies: {idle_fds} fds idle, {held} while held, {} after the 1 s body timeout \
         (all closed {:.2} s after they started)",
        child.fds(),
        elapsed.as_secs_f64()
    );
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    assert_eq!(
        child.metric("autoplay_body_read_timeouts_total").await,
        50.0
    );
}

/// Issue 13: "A subscriber that never reads is dropped from the channel but its
/// connection stays open (fd held, counted as live)". Now the connection is closed
/// once it has taken nothing for the write timeout, and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_reads_nothing_is_closed_at_the_write_timeout() {
    let child = Child::spawn(&[("CHILD_WRITE_TIMEOUT_S", "1"), ("CHILD_HEARTBEAT_S", "0.2")]);
    let idle_fds = child.fds();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut silent = socket.connect(child.addr).await.unwrap();
    silent
        .write_all(
            format!(
                "GET /stream/acme HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {ACME_KEY}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let head = read_head(&mut silent, WAIT).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(child.metric("autoplay_live_subscribers").await, 1.0);
    // The /metrics request just made closes its own connection a moment after it is
    // answered: wait for that rather than count it as the subscriber's.
    child
        .wait_until(
            WAIT,
            "the subscriber's connection is not the one fd held",
            |c| c.fds() == idle_fds + 1,
        )
        .await;

    // More than every socket buffer between the two ends holds.
    let pad = "x".repeat(100 * 1024);
    let actions: Vec<_> = (0..30)
        .map(|i| serde_json::json!({"event_type": "click", "title": format!("B{i}"), "properties": {"pad": pad}}))
        .collect();
    let body = serde_json::json!({"session_id": "s", "actions": actions}).to_string();
    for _ in 0..6 {
        let (status, _) = request(
            child.addr,
            "POST /events/acme HTTP/1.1\r\n",
            &[("x-posthog-secret", ACME_SECRET)],
            body.as_bytes(),
        )
        .await;
        assert_eq!(status, 200);
    }
    let published = Instant::now();
    let held = child.fds();
    child
        .wait_until(
            Duration::from_secs(6),
            "the silent subscriber's connection is still open",
            |c| c.fds() <= idle_fds,
        )
        .await;
    eprintln!(
        "a subscriber that reads nothing: {idle_fds} fds idle, {held} while it is connected, \
         {} {:.2} s after the last publish (write timeout 1 s)",
        child.fds(),
        published.elapsed().as_secs_f64()
    );
    assert_eq!(child.metric("autoplay_live_subscribers").await, 0.0);
    assert_eq!(child.metric("autoplay_write_timeouts_total").await, 1.0);
}
