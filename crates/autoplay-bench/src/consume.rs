//! The consumer side of the throughput benchmark, run in a child process so each
//! consumer's peak RSS and allocator state are its own: `autoplay-consume <kind>
//! <url> <n>` (the system allocator, what a Rust program gets unless it sets one)
//! or `autoplay-consume-mimalloc` (the same code with mimalloc as the global
//! allocator). Prints one JSON line:
//! `{"events": n, "secs": t, "cpu_secs": c, "hwm_kib": k, "rss_kib": r, "dropped": d}`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use autoplay_sdk::{AsyncConnectorClient, ConnectorClient, OverflowPolicy};
use futures_util::StreamExt;

use crate::model;

/// The consumers a child process can run.
pub const KINDS: &[&str] = &[
    "blocking",
    "async",
    "reqwest-eventsource",
    "eventsource-client",
    "raw-split",
    "raw-decode",
];

/// What one child measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    pub events: u64,
    pub secs: f64,
    /// CPU time of the whole process (all threads, user + system) over `secs`.
    pub cpu_secs: f64,
    pub hwm_kib: u64,
    pub rss_kib: u64,
    pub dropped: u64,
}

impl Outcome {
    pub fn to_json(self) -> String {
        format!(
            "{{\"events\": {}, \"secs\": {}, \"cpu_secs\": {}, \"hwm_kib\": {}, \"rss_kib\": {}, \"dropped\": {}}}",
            self.events, self.secs, self.cpu_secs, self.hwm_kib, self.rss_kib, self.dropped
        )
    }

    pub fn from_json(line: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
        let u = |k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
        Some(Self {
            events: u("events") as u64,
            secs: u("secs"),
            cpu_secs: u("cpu_secs"),
            hwm_kib: u("hwm_kib") as u64,
            rss_kib: u("rss_kib") as u64,
            dropped: u("dropped") as u64,
        })
    }

    /// CPU time per delivered event, in microseconds (0 when not reported).
    pub fn cpu_us_per_event(&self) -> f64 {
        if self.events > 0 {
            self.cpu_secs * 1e6 / self.events as f64
        } else {
            0.0
        }
    }

    /// Cores kept busy on average over the run (0 when CPU time is not reported).
    pub fn cores_busy(&self) -> f64 {
        if self.secs > 0.0 {
            self.cpu_secs / self.secs
        } else {
            0.0
        }
    }

    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.events as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// `VmHWM` (peak RSS) and `VmRSS` of this process, in KiB.
pub fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// CPU time this process has used so far (all threads, user + system), in seconds.
pub fn process_cpu_secs() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn wait_for(count: &AtomicU64, n: u64, dropped: impl Fn() -> u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while count.load(Ordering::Relaxed) + dropped() < n {
        if Instant::now() > deadline {
            eprintln!("stalled at {}", count.load(Ordering::Relaxed));
            std::process::exit(3);
        }
        // Sleep rather than spin: a spinning waiter would take a core from the client.
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The `main` of both consumer binaries: `<kind> <url> <n>`, one JSON line out.
pub fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, url, n] = args.as_slice() else {
        eprintln!("usage: autoplay-consume[-mimalloc] <kind> <url> <n>; kinds: {KINDS:?}");
        std::process::exit(2);
    };
    let Ok(n) = n.parse() else {
        eprintln!("<n> must be a count, not {n:?}");
        std::process::exit(2);
    };
    println!("{}", run(kind, url, n).to_json());
}

/// Runs one consumer against `url` until `n` typed payloads were counted.
pub fn run(kind: &str, url: &str, n: u64) -> Outcome {
    let started = Instant::now();
    let cpu_at_start = process_cpu_secs();
    let (events, dropped) = match kind {
        "blocking" => blocking(url, n),
        "async" => asynchronous(url, n),
        "reqwest-eventsource" => (reqwest_eventsource(url, n), 0),
        "eventsource-client" => (eventsource_client(url, n), 0),
        "raw-split" => (raw(url, n, false), 0),
        "raw-decode" => (raw(url, n, true), 0),
        other => {
            eprintln!("unknown consumer {other}; one of {KINDS:?}");
            std::process::exit(2);
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let cpu_secs = process_cpu_secs() - cpu_at_start;
    let (hwm_kib, rss_kib) = memory_kib();
    Outcome {
        events,
        secs,
        cpu_secs,
        hwm_kib,
        rss_kib,
        dropped,
    }
}

fn blocking(url: &str, n: u64) -> (u64, u64) {
    let count = Arc::new(AtomicU64::new(0));
    let (a, s) = (count.clone(), count.clone());
    let client = ConnectorClient::builder(url)
        .overflow_policy(OverflowPolicy::Block)
        .on_actions(move |_| {
            a.fetch_add(1, Ordering::Relaxed);
        })
        .on_summary(move |_| {
            s.fetch_add(1, Ordering::Relaxed);
        })
        .run_in_background()
        .expect("start the blocking client");
    wait_for(&count, n, || client.dropped_count());
    (count.load(Ordering::Relaxed), client.dropped_count())
}

fn asynchronous(url: &str, n: u64) -> (u64, u64) {
    let rt = runtime();
    let count = Arc::new(AtomicU64::new(0));
    let (a, s) = (count.clone(), count.clone());
    let client = AsyncConnectorClient::builder(url)
        .overflow_policy(OverflowPolicy::Block)
        .on_actions(move |_| {
            a.fetch_add(1, Ordering::Relaxed);
            std::future::ready(())
        })
        .on_summary(move |_| {
            s.fetch_add(1, Ordering::Relaxed);
            std::future::ready(())
        })
        .build()
        .expect("build the async client");
    let _task = rt.spawn({
        let client = client.clone();
        async move { client.run().await }
    });
    wait_for(&count, n, || client.dropped_count());
    (count.load(Ordering::Relaxed), client.dropped_count())
}

fn reqwest_eventsource(url: &str, n: u64) -> u64 {
    use reqwest_eventsource::{Event, EventSource};
    runtime().block_on(async {
        let mut source = EventSource::get(url);
        let mut count = 0;
        while let Some(item) = source.next().await {
            match item {
                Ok(Event::Message(m)) => {
                    if model::decode(&m.event, &m.data) {
                        count += 1;
                        if count >= n {
                            break;
                        }
                    }
                }
                Ok(Event::Open) => {}
                Err(e) => {
                    eprintln!("reqwest-eventsource: {e}");
                    break;
                }
            }
        }
        source.close();
        count
    })
}

fn eventsource_client(url: &str, n: u64) -> u64 {
    use eventsource_client::{Client, ClientBuilder, SSE};
    use launchdarkly_sdk_transport::HyperTransport;
    runtime().block_on(async {
        let transport = HyperTransport::builder()
            .build_http()
            .expect("hyper transport");
        let client = ClientBuilder::for_url(url)
            .expect("url")
            .build_with_transport(transport);
        let mut stream = client.stream();
        let mut count = 0;
        while let Some(item) = stream.next().await {
            match item {
                Ok(SSE::Event(e)) => {
                    if model::decode(&e.event_type, &e.data) {
                        count += 1;
                        if count >= n {
                            break;
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("eventsource-client: {e:?}");
                    break;
                }
            }
        }
        count
    })
}

/// Connects with a bare HTTP/1.1 GET and returns the socket positioned after the
/// response head, plus any body bytes read with it.
fn raw_connect(url: &str) -> (TcpStream, Vec<u8>) {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').expect("url with a path");
    let mut socket = TcpStream::connect(host).expect("connect");
    write!(
        socket,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .expect("send the request");
    let mut head = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = socket.read(&mut buf).expect("read the response head");
        assert!(n > 0, "connection closed before the response head");
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = memchr::memmem::find(&head, b"\r\n\r\n") {
            let body = head.split_off(end + 4);
            return (socket, body);
        }
    }
}

/// The limits: read the socket on this thread and split frames (`decode = false`,
/// counting blank lines, heartbeats included), or also decode every `data:` line
/// with serde_json into the peer structs (`decode = true`).
fn raw(url: &str, n: u64, decode: bool) -> u64 {
    let (mut socket, first) = raw_connect(url);
    let mut buf = vec![0u8; 64 * 1024];
    if decode {
        let mut state = LineState::default();
        state.feed(&first);
        while state.count < n {
            let got = socket.read(&mut buf).expect("read");
            assert!(got > 0, "stream ended at {}", state.count);
            state.feed(&buf[..got]);
        }
        state.count
    } else {
        // Frames to see: the payloads plus one heartbeat per 1,000.
        let frames_wanted = n + n / 1000;
        let finder = memchr::memmem::Finder::new(b"\n\n");
        let mut frames = 0u64;
        let mut prev_nl = false;
        let mut count = |chunk: &[u8]| {
            if prev_nl && chunk.first() == Some(&b'\n') {
                frames += 1;
            }
            frames += finder.find_iter(chunk).count() as u64;
            prev_nl = chunk.last() == Some(&b'\n');
            frames
        };
        let mut seen = count(&first);
        while seen < frames_wanted {
            let got = socket.read(&mut buf).expect("read");
            assert!(got > 0, "stream ended at {seen}");
            seen = count(&buf[..got]);
        }
        n
    }
}

/// A minimal line splitter for the read+decode limit.
#[derive(Default)]
struct LineState {
    carry: Vec<u8>,
    event: String,
    count: u64,
}

impl LineState {
    fn feed(&mut self, chunk: &[u8]) {
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', chunk) {
            if self.carry.is_empty() {
                self.line(&chunk[start..nl]);
            } else {
                let mut line = std::mem::take(&mut self.carry);
                line.extend_from_slice(&chunk[start..nl]);
                self.line(&line);
                line.clear();
                self.carry = line;
            }
            start = nl + 1;
        }
        self.carry.extend_from_slice(&chunk[start..]);
    }

    fn line(&mut self, line: &[u8]) {
        if let Some(name) = line.strip_prefix(b"event: ") {
            self.event.clear();
            self.event.push_str(std::str::from_utf8(name).unwrap_or(""));
        } else if let Some(data) = line.strip_prefix(b"data: ") {
            let data = std::str::from_utf8(data).unwrap_or("");
            if model::decode(&self.event, data) {
                self.count += 1;
            }
        } else if line.is_empty() {
            self.event.clear();
        }
    }
}
