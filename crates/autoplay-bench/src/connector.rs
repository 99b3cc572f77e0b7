//! Parts 2–4, driven through a real connector: a child process running
//! `autoplay connector` (the CLI as shipped), a poster in
//! this process sending `POST /events/acme` at a fixed rate with the send time in
//! each first action's title (`t:<unix ns>:<seq>`), and consumers in their own
//! child processes (hidden `sub` subcommand) or, for fan-out, raw subscribers here.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use autoplay_sdk::{ActionsPayload, AsyncConnectorClient, ConnectorClient, OverflowPolicy};

use crate::report::quantile;

/// The API key of the benchmark product `acme`.
pub const KEY: &str = "bench-key";

pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Raises the open-files limit: to 131,072 when allowed (root, or
/// `CAP_SYS_RESOURCE`), else the soft limit to the hard one. Returns the limit.
pub fn raise_nofile() -> u64 {
    const WANTED: libc::rlim_t = 131_072;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_max < WANTED {
            let more = libc::rlimit {
                rlim_cur: WANTED,
                rlim_max: WANTED,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &more) == 0 {
                return WANTED;
            }
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

/// A connector child process.
pub struct ConnectorProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl ConnectorProcess {
    /// Starts `autoplay connector` (the CLI as shipped, with its allocator) with
    /// product `acme` and the given summary threshold (0: off).
    pub fn start(summary_threshold: usize) -> Option<Self> {
        Self::start_with(summary_threshold, &[])
    }

    /// [`start`](Self::start) with more `autoplay connector` arguments
    /// (`--store ...`, `--replay-events ...`).
    pub fn start_with(summary_threshold: usize, extra: &[String]) -> Option<Self> {
        let exe = crate::binaries::built("autoplay-cli", "autoplay")?;
        let mut child = Command::new(exe)
            .args([
                "connector",
                "--listen",
                "127.0.0.1:0",
                "--log-level",
                "error",
            ])
            .args(["--product", &format!("acme:{KEY}")])
            .args(["--summary-threshold", &summary_threshold.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // "autoplay connector listening on http://<addr>"
        let mut line = String::new();
        BufReader::new(child.stdout.take()?)
            .read_line(&mut line)
            .ok()?;
        let addr = line.trim().rsplit("http://").next()?.parse().ok()?;
        Some(Self { child, addr })
    }

    pub fn stream_url(&self) -> String {
        format!("http://{}/stream/acme", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The value of the counter or gauge `name` in the connector's `/metrics`
/// (0 when it cannot be read).
pub async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .ok()
        .and_then(|r| r.error_for_status().ok());
    let Some(response) = response else { return 0 };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

impl Drop for ConnectorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `/events` batch of three actions (~830 bytes on the stream), the first
/// action's title carrying the send time and sequence number.
pub fn event_batch(seq: u64, sent_ns: u64) -> String {
    format!(
        "{{\"session_id\":\"ps_{:04}\",\"user_id\":\"user_456\",\"email\":\"alice@example.com\",\"actions\":[\
{{\"event_type\":\"pageview\",\"title\":\"t:{sent_ns}:{seq}\",\"description\":\"Viewed Dashboard\",\"canonical_url\":\"https://app.example.com/dashboard\",\"raw_url\":\"https://app.example.com/dashboard?tab=overview\",\"ts\":\"2024-01-15T10:30:00Z\",\"properties\":{{\"referrer\":\"https://app.example.com/login\"}}}},\
{{\"event_type\":\"click\",\"title\":\"Export CSV button\",\"description\":\"Clicked 'Export CSV'\",\"canonical_url\":\"https://app.example.com/dashboard\",\"raw_url\":\"https://app.example.com/dashboard\",\"ts\":\"2024-01-15T10:30:03Z\",\"properties\":{{}}}},\
{{\"event_type\":\"pageview\",\"title\":\"Billing\",\"description\":\"Viewed Billing\",\"canonical_url\":\"https://app.example.com/settings/:id/billing\",\"raw_url\":\"https://app.example.com/settings/8812/billing\",\"ts\":\"2024-01-15T10:30:05Z\",\"properties\":{{}}}}]}}",
        seq % 64
    )
}

/// Parses `t:<ns>:<seq>`.
pub fn parse_title(title: &str) -> Option<(u64, u64)> {
    let rest = title.strip_prefix("t:")?;
    let (ns, seq) = rest.split_once(':')?;
    Some((ns.parse().ok()?, seq.parse().ok()?))
}

/// What the poster achieved.
pub struct Posted {
    pub events: u64,
    pub secs: f64,
    pub failures: u64,
    pub rtt_p50_us: f64,
}

/// Posts `n` single-batch events at `rate` per second from `tasks` paced tasks.
pub async fn post_at_rate(addr: SocketAddr, n: u64, rate: f64, tasks: u64) -> Posted {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(tasks as usize)
        .build()
        .expect("reqwest client");
    let url = format!("http://{addr}/events/acme");
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let failures = Arc::new(AtomicU64::new(0));
    let rtts = Arc::new(Mutex::new(Vec::with_capacity(n as usize)));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (client, url, failures, rtts) =
            (client.clone(), url.clone(), failures.clone(), rtts.clone());
        handles.push(tokio::spawn(async move {
            let mut seq = t;
            while seq < n {
                tokio::time::sleep_until(start + period * seq as u32).await;
                let sent = Instant::now();
                let body = event_batch(seq, unix_ns());
                let ok = client
                    .post(&url)
                    .bearer_auth(KEY)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                rtts.lock().unwrap().push(sent.elapsed().as_nanos() as u64);
                seq += tasks;
            }
        }));
    }
    let began = Instant::now();
    for h in handles {
        let _ = h.await;
    }
    let secs = began.elapsed().as_secs_f64();
    let mut rtts = std::mem::take(&mut *rtts.lock().unwrap());
    rtts.sort_unstable();
    Posted {
        events: n,
        secs,
        failures: failures.load(Ordering::Relaxed),
        rtt_p50_us: quantile(&rtts, 0.5) as f64 / 1000.0,
    }
}

/// The hidden `sub <kind> <mode> <url> <n>` subcommand: one of our clients
/// subscribed to the connector. `kind`: `blocking` | `async`; `mode`: `latency` |
/// `slow-default` | `slow-workers8` | `slow-block`. Prints one JSON line.
pub fn sub(kind: &str, mode: &str, url: &str, n: u64) {
    if kind == "raw" {
        raw_latency(url, n);
    }
    struct Seen {
        /// From the connector's `forwarded_at` (its publish time) to the callback.
        latencies: Vec<u64>,
        /// From the poster's clock before the POST to the callback.
        from_post: Vec<u64>,
        seqs: HashSet<u64>,
        duplicates: u64,
        last: Instant,
    }
    let seen = Arc::new(Mutex::new(Seen {
        latencies: Vec::with_capacity(n as usize),
        from_post: Vec::with_capacity(n as usize),
        seqs: HashSet::with_capacity(n as usize),
        duplicates: 0,
        last: Instant::now(),
    }));
    let slow = mode.starts_with("slow");
    let record = {
        let seen = seen.clone();
        move |p: &ActionsPayload| {
            let now = unix_ns();
            if let Some((sent, seq)) = p.actions.first().and_then(|a| parse_title(&a.title)) {
                let forwarded = (p.forwarded_at.unwrap_or(0.0) * 1e9) as u64;
                let mut s = seen.lock().unwrap();
                s.latencies.push(now.saturating_sub(forwarded));
                s.from_post.push(now.saturating_sub(sent));
                if !s.seqs.insert(seq) {
                    s.duplicates += 1;
                }
                s.last = Instant::now();
            }
        }
    };
    let started = Instant::now();
    let dropped: Box<dyn Fn() -> u64>;
    let _keep: Box<dyn std::any::Any>;
    if kind == "blocking" {
        let mut b = ConnectorClient::builder(url).token(KEY);
        b = match mode {
            "slow-workers8" => b.workers(8),
            "slow-block" => b.overflow_policy(OverflowPolicy::Block),
            _ => b,
        };
        let client = b
            .on_actions(move |p| {
                record(&p);
                if slow {
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
            .run_in_background()
            .expect("start the client");
        let client = Arc::new(client);
        let c = client.clone();
        dropped = Box::new(move || c.dropped_count());
        _keep = Box::new(client);
    } else {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut b = AsyncConnectorClient::builder(url).token(KEY);
        b = match mode {
            "slow-workers8" => b.workers(8),
            "slow-block" => b.overflow_policy(OverflowPolicy::Block),
            _ => b,
        };
        let client = b
            .on_actions(move |p| {
                record(&p);
                async move {
                    if slow {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
            .build()
            .expect("build the client");
        let _task = rt.spawn({
            let client = client.clone();
            async move { client.run().await }
        });
        let c = client.clone();
        dropped = Box::new(move || c.dropped_count());
        _keep = Box::new(rt);
    }
    // Tell the parent we are subscribing, then wait for the events or for quiet.
    println!("ready");
    let _ = std::io::stdout().flush();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        std::thread::sleep(Duration::from_millis(5));
        let (got, last) = {
            let s = seen.lock().unwrap();
            (s.seqs.len() as u64, s.last)
        };
        if got >= n || Instant::now() > deadline {
            break;
        }
        if got > 0 && last.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let s = seen.lock().unwrap();
    let mut result = latency_summary(&s.latencies, &s.from_post);
    result["events"] = s.seqs.len().into();
    result["dropped"] = dropped().into();
    result["duplicates"] = s.duplicates.into();
    result["secs"] = started.elapsed().as_secs_f64().into();
    println!("{result}");
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}

/// A consumer child started with `sub` (or the Python script); reads `ready`,
/// then the JSON result when `finish` is called.
pub struct SubProcess {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl SubProcess {
    pub fn start(mut command: Command) -> Option<Self> {
        command.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = command.spawn().ok()?;
        let stdout = child.stdout.take()?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Some(Self { child, lines: rx })
    }

    /// Waits for a line starting with `{` (the result).
    pub fn result(&mut self, timeout: Duration) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            if line.starts_with('{') {
                return serde_json::from_str(&line).ok();
            }
        }
    }
}

impl Drop for SubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident and peak memory of process `pid`, in KiB.
pub fn proc_memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds (user + system) used so far by process `pid`.
pub fn proc_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz.max(1.0)
}

/// The transport baseline for part 2: a bare socket subscriber (no SSE parser, no
/// decode, no queue) that reads each send time straight out of the bytes as they
/// arrive. Prints the same JSON line as `sub`, then exits.
fn raw_latency(url: &str, n: u64) -> ! {
    use std::io::Read;
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').expect("url with a path");
    let mut socket = std::net::TcpStream::connect(host).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("read timeout");
    write!(
        socket,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nAuthorization: Bearer {KEY}\r\n\r\n"
    )
    .expect("send the request");
    println!("ready");
    let _ = std::io::stdout().flush();
    let started = Instant::now();
    let title = memchr::memmem::Finder::new(b"\"title\":\"t:");
    let forwarded_at = memchr::memmem::FinderRev::new(b"\"forwarded_at\":");
    let mut latencies = Vec::with_capacity(n as usize);
    let mut from_post = Vec::with_capacity(n as usize);
    let mut seqs = HashSet::with_capacity(n as usize);
    let mut buf = vec![0u8; 64 * 1024];
    while (seqs.len() as u64) < n {
        let got = match socket.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(got) => got,
        };
        let now = unix_ns();
        let chunk = &buf[..got];
        for at in title.find_iter(chunk) {
            let rest = &chunk[at + 11..];
            // `<ns>:<seq>"`, whole within this read (a frame cut by the read is skipped).
            let Some(end) = memchr::memchr(b'"', rest) else {
                continue;
            };
            // The frame's `forwarded_at` comes before its actions.
            let forwarded = forwarded_at.rfind(&chunk[..at]).and_then(|f| {
                let number = &chunk[f + 15..at];
                let end = number.iter().position(|b| !b".0123456789".contains(b))?;
                std::str::from_utf8(&number[..end])
                    .ok()?
                    .parse::<f64>()
                    .ok()
            });
            if let Some((sent, seq)) = std::str::from_utf8(&rest[..end])
                .ok()
                .and_then(|t| parse_title(&format!("t:{t}")))
                && let Some(forwarded) = forwarded
                && seqs.insert(seq)
            {
                latencies.push(now.saturating_sub((forwarded * 1e9) as u64));
                from_post.push(now.saturating_sub(sent));
            }
        }
    }
    let mut result = latency_summary(&latencies, &from_post);
    result["events"] = seqs.len().into();
    result["dropped"] = 0.into();
    result["duplicates"] = 0.into();
    result["secs"] = started.elapsed().as_secs_f64().into();
    println!("{result}");
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}

/// Quantiles in µs of both latency series, skipping the first 10% of arrivals
/// (connection warm-up): `p50_us`…`max_us` from the connector's publish time,
/// `post_p99_us` from before the POST.
fn latency_summary(from_connector: &[u64], from_post: &[u64]) -> serde_json::Value {
    let sorted = |values: &[u64]| {
        let mut v = values[values.len() / 10..].to_vec();
        v.sort_unstable();
        v
    };
    let (lat, post) = (sorted(from_connector), sorted(from_post));
    let us = |v: &[u64], q: f64| quantile(v, q) as f64 / 1000.0;
    serde_json::json!({
        "p50_us": us(&lat, 0.5),
        "p99_us": us(&lat, 0.99),
        "p999_us": us(&lat, 0.999),
        "max_us": lat.last().map_or(0.0, |&x| x as f64 / 1000.0),
        "post_p99_us": us(&post, 0.99),
    })
}
