//! The client against hostile or merely unusual servers on 127.0.0.1 (issue 11):
//! ids it cannot send back, ids of 15 MiB, events of 8 MiB into a slow consumer,
//! oversized events, server-set waits, and credentials in the URL.
//!
//! The memory tests run the client in a child process (this test binary, running
//! one `#[ignore]`d test) and read its peak resident set (`VmHWM` in
//! `/proc/self/status`): the harness process holds other tests' memory. The parent
//! watches the child's resident set and kills it past a limit, so that code without
//! the bounds fails the test instead of exhausting the machine.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use autoplay_sdk::{
    AsyncConnectorClient, ConnectorClient, ConnectorClientBuilder, Error, FailureReason,
};
use futures_util::StreamExt;
use support::*;

const WAIT: Duration = Duration::from_secs(20);
const MIB: usize = 1024 * 1024;

/// Peak resident set allowed to the client with the default settings in every
/// hostile case (issue 11: "< 64 MiB peak with the defaults").
const PEAK_LIMIT_KIB: u64 = 64 * 1024;

/// Past this resident set the parent kills the child: the bounds are gone.
const KILL_PAST_KIB: u64 = 512 * 1024;

fn fast(url: &str) -> ConnectorClientBuilder {
    ConnectorClient::builder(url)
        .initial_backoff(Duration::from_millis(5))
        .max_backoff(Duration::from_millis(20))
        .read_timeout(Duration::from_secs(10))
}

/// Counts payloads, keeping their titles.
#[derive(Clone, Default)]
struct Titles(Arc<Mutex<Vec<String>>>);

impl Titles {
    fn wire(&self, builder: ConnectorClientBuilder) -> ConnectorClientBuilder {
        let seen = self.clone();
        builder.on_actions(move |p| {
            let title = p
                .actions
                .first()
                .map(|a| a.title.to_string())
                .unwrap_or_default();
            seen.0.lock().unwrap().push(title);
        })
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn get(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------
// Ids

#[test]
fn an_id_with_a_control_character_does_not_end_reconnection() {
    for bad in ["7\u{1}x", "7\u{7f}", "a\tb"] {
        let first = format!("id: {bad}\n{}", actions_frame_without_id("s", "first"));
        let server = TestServer::start(move |n, _| match n {
            0 => Reply::stream(vec![write(&first)]),
            1 => Reply::stream(vec![write(actions_frame(8, "s", "second")), Step::Stall]),
            _ => Reply::stream(vec![Step::Stall]),
        });
        let titles = Titles::default();
        let bg = titles
            .wire(fast(&server.url()))
            .run_in_background()
            .unwrap();
        wait_until(WAIT, "two payloads over two connections", || {
            titles.len() == 2
        });
        drop(bg);
        let requests = server.requests();
        assert_eq!(titles.get(), ["first", "second"], "{bad:?}");
        assert_eq!(
            requests[1].header("last-event-id"),
            None,
            "{bad:?}: the next request goes without it"
        );
    }
}

#[test]
fn an_initial_id_that_cannot_be_sent_is_refused_at_build() {
    match ConnectorClient::builder("http://127.0.0.1:1/stream/acme")
        .last_event_id("7\u{1}")
        .build()
    {
        Err(Error::InvalidConfig(msg)) => assert!(msg.contains("last_event_id"), "{msg}"),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a control character in last_event_id was accepted"),
    }
}

#[tokio::test]
async fn an_id_over_the_limit_is_ignored_and_short_ones_are_kept() {
    let long = "9".repeat(5000);
    let body = format!(
        "id: 1\n{}id: {long}\n{}",
        actions_frame_without_id("s", "a"),
        actions_frame_without_id("s", "b")
    );
    let server = TestServer::always(Reply::stream(vec![write(&body), Step::Stall]));
    let client = AsyncConnectorClient::builder(server.url()).build().unwrap();
    let ids: Vec<Option<String>> = client
        .raw_events()
        .take(2)
        .map(|e| e.unwrap().id.map(|id| id.to_string()))
        .collect()
        .await;
    assert_eq!(ids, [Some("1".to_owned()), Some("1".to_owned())]);
    // The bound is configurable.
    let client = AsyncConnectorClient::builder(server.url())
        .max_id_len(8000)
        .build()
        .unwrap();
    let ids: Vec<Option<String>> = client
        .raw_events()
        .take(2)
        .map(|e| e.unwrap().id.map(|id| id.to_string()))
        .collect()
        .await;
    assert_eq!(ids[1].as_deref(), Some(long.as_str()));
}

// ---------------------------------------------------------------------------------
// Memory, measured in a child process

/// What a child process reported.
struct ChildReport {
    /// `key=value` pairs of its `RESULT` line.
    values: Vec<(String, String)>,
    peak_kib: u64,
}

impl ChildReport {
    fn get(&self, key: &str) -> u64 {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in the child's report"))
    }
}

/// Runs the ignored test `name` of this binary in a child process, with the stream
/// URL in `HOSTILE_URL`, and returns what it reported. Panics (and kills it) when
/// its resident set passes [`KILL_PAST_KIB`] or it runs past `timeout`.
fn run_child(name: &str, url: &str, timeout: Duration) -> ChildReport {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HOSTILE_URL", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let stdout = child.stdout.take().unwrap();
    // Read everything, so that the child never writes into a closed pipe.
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.find("RESULT ").map(|at| l[at..].to_owned()))
            .last()
    });
    let started = Instant::now();
    let mut most_seen = 0;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the child {name} failed: {status}");
            break;
        }
        let rss = rss_kib(&pid).unwrap_or(0);
        most_seen = most_seen.max(rss);
        if rss > KILL_PAST_KIB || started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "killed the child {name}: resident set {rss} KiB (most seen {most_seen} KiB) \
                 after {:?}",
                started.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let line = reader.join().unwrap().expect("the child reported nothing");
    let values: Vec<(String, String)> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    eprintln!("{name}: {line}");
    let peak_kib = values
        .iter()
        .find(|(k, _)| k == "peak_kib")
        .and_then(|(_, v)| v.parse().ok())
        .expect("a peak_kib in the report");
    ChildReport { values, peak_kib }
}

/// The URL a child test reads, or `None` when run outside its parent.
fn child_url() -> Option<String> {
    std::env::var("HOSTILE_URL").ok()
}

fn report(values: &[(&str, u64)]) {
    let mut line = String::from("RESULT");
    for (k, v) in values {
        line.push_str(&format!(" {k}={v}"));
    }
    let peak = peak_rss_kib("self").expect("VmHWM in /proc/self/status");
    line.push_str(&format!(" peak_kib={peak}"));
    println!("{line}");
}

const LONG_ID_EVENTS: usize = 3000;

#[test]
fn a_15_mib_id_followed_by_3000_tiny_events_is_ignored_and_memory_stays_small() {
    let mut head = b"id: ".to_vec();
    head.resize(4 + 15 * MIB, b'7');
    head.push(b'\n');
    let head: Arc<[u8]> = head.into();
    let tiny = (0..LONG_ID_EVENTS)
        .map(|i| actions_frame_without_id("s", &i.to_string()))
        .collect::<String>();
    let server = TestServer::always(Reply::stream(vec![
        Step::Shared(head),
        write(tiny),
        Step::Stall,
    ]));
    let report = run_child("child_long_id", &server.url(), Duration::from_secs(60));
    assert_eq!(report.get("events") as usize, LONG_ID_EVENTS);
    assert_eq!(report.get("with_id"), 0, "the 15 MiB id is ignored");
    assert_eq!(server.request_count(), 1);
    assert!(
        report.peak_kib < PEAK_LIMIT_KIB / 2,
        "peak {} KiB with a 15 MiB id",
        report.peak_kib
    );
}

#[tokio::test]
#[ignore = "run by a_15_mib_id_followed_by_3000_tiny_events_is_ignored_and_memory_stays_small"]
async fn child_long_id() {
    let Some(url) = child_url() else { return };
    let client = AsyncConnectorClient::builder(url).build().unwrap();
    let (mut events, mut with_id) = (0, 0);
    let mut stream = std::pin::pin!(client.raw_events());
    while events < LONG_ID_EVENTS as u64 {
        let event = stream.next().await.unwrap().unwrap();
        events += 1;
        with_id += u64::from(event.id.is_some());
    }
    report(&[("events", events), ("with_id", with_id)]);
}

const BIG_EVENTS: usize = 24;

#[test]
fn eight_mib_events_into_a_slow_consumer_stay_within_the_memory_bound() {
    let frame: Arc<[u8]> = big_actions_frame(1, 8 * MIB).into();
    let mut body: Vec<Step> = (0..BIG_EVENTS)
        .map(|_| Step::Shared(frame.clone()))
        .collect();
    body.push(Step::Stall);
    let server = TestServer::always(Reply::stream(body));
    let report = run_child(
        "child_slow_consumer",
        &server.url(),
        Duration::from_secs(120),
    );
    let (handled, dropped) = (report.get("handled"), report.get("dropped"));
    assert_eq!(handled + dropped, BIG_EVENTS as u64);
    assert!(dropped > 0, "the consumer was meant to fall behind");
    assert!(
        report.peak_kib < PEAK_LIMIT_KIB,
        "peak {} KiB with 8 MiB events ({handled} handled, {dropped} dropped)",
        report.peak_kib
    );
}

#[test]
#[ignore = "run by eight_mib_events_into_a_slow_consumer_stay_within_the_memory_bound"]
fn child_slow_consumer() {
    let Some(url) = child_url() else { return };
    let handled = Arc::new(AtomicU64::new(0));
    let h = handled.clone();
    let client = ConnectorClient::builder(url)
        .on_actions(move |_| {
            std::thread::sleep(Duration::from_millis(200));
            h.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .unwrap();
    let bg = client.run_in_background().unwrap();
    wait_until(
        Duration::from_secs(100),
        "every event handled or dropped",
        || handled.load(Ordering::Relaxed) + client.dropped_count() == BIG_EVENTS as u64,
    );
    let dropped = client.dropped_count();
    drop(bg);
    report(&[
        ("handled", handled.load(Ordering::Relaxed)),
        ("dropped", dropped),
    ]);
}

// ---------------------------------------------------------------------------------
// Oversized events

#[test]
fn an_oversized_event_is_skipped_and_every_later_event_arrives() {
    let huge: Arc<[u8]> = big_actions_frame(2, 17 * MIB).into();
    let later: String = (3..=102)
        .map(|id| actions_frame(id, "s", &id.to_string()))
        .collect();
    let server = TestServer::always(Reply::stream(vec![
        write(actions_frame(1, "s", "1")),
        Step::Shared(huge),
        write(later),
        Step::Stall,
    ]));
    let titles = Titles::default();
    let client = titles.wire(fast(&server.url())).build().unwrap();
    let bg = client.run_in_background().unwrap();
    wait_until(WAIT, "101 payloads", || titles.len() == 101);
    let oversized = client.oversized_count();
    drop(bg);
    let expected: Vec<String> = (1..=102)
        .filter(|&id| id != 2)
        .map(|id| id.to_string())
        .collect();
    assert_eq!(titles.get(), expected);
    assert_eq!(oversized, 1);
    assert_eq!(server.request_count(), 1, "no reconnection");
}

const HUGE_EVENTS: usize = 3;

#[test]
fn events_far_over_the_limit_are_never_held() {
    let huge: Arc<[u8]> = big_actions_frame(2, 40 * MIB).into();
    let mut body: Vec<Step> = vec![write(actions_frame(1, "s", "first"))];
    body.extend((0..HUGE_EVENTS).map(|_| Step::Shared(huge.clone())));
    body.push(write(actions_frame(3, "s", "last")));
    body.push(Step::Stall);
    let server = TestServer::always(Reply::stream(body));
    let report = run_child("child_oversized", &server.url(), Duration::from_secs(60));
    assert_eq!(report.get("payloads"), 2);
    assert_eq!(report.get("oversized"), HUGE_EVENTS as u64);
    assert_eq!(server.request_count(), 1);
    // The parser holds at most `max_event_size` (16 MiB) of an event before it
    // knows it is oversized and drops it. glibc may keep that freed buffer's
    // memory while the next event's grows (its mmap threshold rises with freed
    // big chunks), so the peak may reach base + 2 × 16 MiB (44 MiB seen in CI);
    // holding one whole 40 MiB event would be base + 40 MiB, above this bound.
    assert!(
        report.peak_kib < 48 * 1024,
        "peak {} KiB with 40 MiB events",
        report.peak_kib
    );
}

#[test]
#[ignore = "run by events_far_over_the_limit_are_never_held"]
fn child_oversized() {
    let Some(url) = child_url() else { return };
    let titles = Titles::default();
    let client = titles.wire(ConnectorClient::builder(url)).build().unwrap();
    let bg = client.run_in_background().unwrap();
    wait_until(Duration::from_secs(50), "the last payload", || {
        titles.len() == 2
    });
    let oversized = client.oversized_count();
    drop(bg);
    report(&[("payloads", titles.len() as u64), ("oversized", oversized)]);
}

#[test]
fn a_stream_of_oversized_events_is_read_through_without_reconnecting() {
    let huge = format!("id: 5\nevent: actions\ndata: {}\n\n", "x".repeat(4000));
    let body: String = huge.repeat(50) + &actions_frame(6, "s", "last");
    let server = TestServer::start(move |n, _| match n {
        0 => Reply::stream(vec![write(&body), Step::Stall]),
        _ => Reply::stream(vec![Step::Stall]),
    });
    let titles = Titles::default();
    let client = titles
        .wire(fast(&server.url()).max_event_size(1024))
        .build()
        .unwrap();
    let bg = client.run_in_background().unwrap();
    wait_until(WAIT, "the last payload", || titles.len() == 1);
    assert_eq!(client.oversized_count(), 50);
    drop(bg);
    assert_eq!(server.request_count(), 1);
}

// ---------------------------------------------------------------------------------
// Server-set waits (real time; the exact waits are in tests/retry_timing.rs)

fn request_gaps(server: &TestServer, n: usize) -> Vec<Duration> {
    let at: Vec<Instant> = server
        .wait_for_requests(n, WAIT)
        .iter()
        .map(|r| r.at)
        .collect();
    at.windows(2).map(|w| w[1] - w[0]).take(n - 1).collect()
}

#[test]
fn after_retry_600_no_reconnection_comes_before_600_ms() {
    let server = TestServer::start(|n, _| match n {
        0 => Reply::stream(vec![
            write("retry: 600\n"),
            write(actions_frame(1, "s", "a")),
        ]),
        _ => Reply::stream(vec![Step::Stall]),
    });
    let bg = fast(&server.url()).run_in_background().unwrap();
    let gaps = request_gaps(&server, 2);
    drop(bg);
    assert!(gaps[0] >= Duration::from_millis(600), "{gaps:?}");
}

#[test]
fn a_server_that_sends_one_event_and_drops_sees_the_backoff_grow() {
    let server =
        TestServer::start(|n, _| Reply::stream(vec![write(actions_frame(n as u64 + 1, "s", "a"))]));
    let bg = ConnectorClient::builder(server.url())
        .initial_backoff(Duration::from_millis(40))
        .max_backoff(Duration::from_secs(5))
        .run_in_background()
        .unwrap();
    let gaps = request_gaps(&server, 5);
    drop(bg);
    for (gap, floor_ms) in gaps.iter().zip([40, 80, 160, 320]) {
        assert!(*gap >= Duration::from_millis(floor_ms), "{gaps:?}");
    }
}

#[test]
fn server_set_waits_are_capped() {
    let cases = [
        Reply::stream(vec![write("retry: 86400000\n\n")]),
        Reply::status(503).header("Retry-After", "999999999"),
    ];
    for first in cases {
        let server = TestServer::start(move |n, _| match n {
            0 => first.clone(),
            _ => Reply::stream(vec![Step::Stall]),
        });
        let delays = Arc::new(Mutex::new(Vec::new()));
        let d = delays.clone();
        let bg = ConnectorClient::builder(server.url())
            .max_backoff(Duration::from_secs(2))
            .on_retry(move |_, delay, _| d.lock().unwrap().push(delay))
            .run_in_background()
            .unwrap();
        wait_until(WAIT, "a retry", || !delays.lock().unwrap().is_empty());
        drop(bg);
        assert_eq!(delays.lock().unwrap()[0], Duration::from_secs(600));
    }
    // And with a lower ceiling, the client does come back.
    let server = TestServer::start(|n, _| match n {
        0 => Reply::stream(vec![write("retry: 86400000\n\n")]),
        _ => Reply::stream(vec![Step::Stall]),
    });
    let bg = ConnectorClient::builder(server.url())
        .max_server_delay(Duration::from_millis(300))
        .run_in_background()
        .unwrap();
    let gaps = request_gaps(&server, 2);
    drop(bg);
    assert!(gaps[0] >= Duration::from_millis(300), "{gaps:?}");
}

// ---------------------------------------------------------------------------------
// Secrets

const SECRET: &str = "s3cr3t-pw";

#[test]
fn url_credentials_never_appear_in_errors_or_hooks() {
    let server = TestServer::start(|n, _| match n {
        0 => Reply::stream(vec![write(actions_frame(1, "s", "a"))]),
        _ => Reply::status(500),
    });
    let url = format!("http://alice:{SECRET}@{}/stream/acme", server.addr);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (c, r) = (seen.clone(), seen.clone());
    let err = fast(&url)
        .max_retries(2)
        .on_connect(move |url| c.lock().unwrap().push(url.to_owned()))
        .on_retry(move |_, _, why| r.lock().unwrap().push(why.to_string()))
        .run()
        .unwrap_err();
    let mut shown = seen.lock().unwrap().clone();
    shown.push(err.to_string());
    shown.push(format!("{err:?}"));
    assert!(
        matches!(
            &err,
            Error::RetriesExhausted {
                last_failure: FailureReason::Status(500),
                ..
            }
        ),
        "{err:?}"
    );
    // The credentials still reach the server, as basic auth.
    assert!(
        server.requests()[0]
            .header("authorization")
            .is_some_and(|a| a.starts_with("Basic "))
    );
    // Fatal statuses, unreachable servers and bad configuration name the URL too.
    let fatal = TestServer::always(Reply::status(401));
    let err = fast(&format!("http://alice:{SECRET}@{}/stream/acme", fatal.addr))
        .run()
        .unwrap_err();
    assert_eq!(err.status_code(), Some(401));
    shown.push(err.to_string());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = fast(&format!(
        "http://alice:{SECRET}@127.0.0.1:{port}/stream/acme"
    ))
    .max_retries(0)
    .run()
    .unwrap_err();
    shown.push(err.to_string());
    for bad in [
        format!("ftp://alice:{SECRET}@127.0.0.1/stream/acme"),
        format!("http://alice:{SECRET}@[::1/stream/acme"),
    ] {
        shown.push(
            ConnectorClient::builder(bad)
                .build()
                .err()
                .unwrap()
                .to_string(),
        );
    }
    for text in &shown {
        assert!(
            !text.contains(SECRET) && !text.contains("alice"),
            "a secret in {text:?}"
        );
    }
    assert!(shown[0].contains("***@127.0.0.1"), "{shown:?}");
}
