//! Part 7, `autoplay-bench cluster`: three `autoplay connector --store
//! redis://…` replicas on one `redis-server`, 50,000 concurrent subscribers
//! across them, measured, not extrapolated.
//!
//! One process here can hold only ~19,800 sockets (hard open-files limit
//! 20,000), so the subscribers live in several child processes of this binary
//! (hidden `fan-sub` subcommand), each a bare HTTP/1.1 GET per subscriber
//! counting frames, bound to one of several loopback source addresses so that no
//! source address runs out of ephemeral ports. Each child reports its counts as
//! one JSON line every 50 ms on stdout and takes `mark` (start counting from
//! here) on stdin; it exits when its stdin closes.
//!
//! Before that, a light-load run times publish → delivered on a subscriber of
//! the replica that ingested and of the other two.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::connector::{
    ConnectorProcess, KEY, event_batch, metric, post_at_rate, proc_cpu_secs, proc_memory_kib,
    raise_nofile,
};
use crate::parts::{ms, poster_runtime, runtime, self_command, subscriber};
use crate::redis_server::{self, RedisServer};
use crate::report::{mib, quantile, thousands};

/// Concurrent subscribers over the whole cluster (the figure;
/// `AUTOPLAY_BENCH_CLUSTER_SUBSCRIBERS` changes it, for a quick look).
const TOTAL: usize = 50_000;

fn total_subscribers() -> usize {
    std::env::var("AUTOPLAY_BENCH_CLUSTER_SUBSCRIBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(TOTAL)
}
/// Replicas, at least (more when one process cannot hold its share).
const REPLICAS: usize = 3;
/// Subscriber processes, at least.
const SUBSCRIBER_PROCESSES: usize = 4;
/// Events posted under the full load (each one frame to every subscriber), as
/// part 4 posts at 10,000 subscribers and more.
const EVENTS: u64 = 200;
/// Batches per POST, and how far the poster may run ahead of the slowest
/// subscriber (as in part 4).
const PER_POST: u64 = 50;
const AHEAD: u64 = 400;
/// The light-load latency run: events, at this steady rate.
const LATENCY_EVENTS: u64 = 1_000;
const LATENCY_RATE: f64 = 500.0;
/// Descriptors a process keeps for itself beside its sockets.
const SPARE_FDS: u64 = 300;
/// How often a subscriber child reports.
const REPORT_EVERY: Duration = Duration::from_millis(50);

/// One report line of a subscriber child.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
struct Progress {
    /// Subscribers that got their response headers.
    connected: u64,
    /// Subscribers whose connection failed or ended.
    closed: u64,
    /// Whether the counts below start at the parent's `mark`.
    marked: bool,
    /// Frames received by all of this child's subscribers since the mark.
    total: u64,
    /// The fewest frames one live subscriber received since the mark.
    min: u64,
}

/// The hidden `fan-sub <addr,addr,...> <count> <offset> <sources>` subcommand:
/// `count` subscribers, subscriber `offset + i` on replica `(offset + i) %
/// replicas` from source address 127.0.0.(2 + (offset + i) % sources).
pub fn subscribers_child(args: &[String]) -> ! {
    let [addrs, count, offset, sources] = args else {
        eprintln!("usage: autoplay-bench fan-sub <addr,addr,...> <count> <offset> <sources>");
        std::process::exit(2);
    };
    let addrs: Vec<SocketAddr> = addrs.split(',').filter_map(|a| a.parse().ok()).collect();
    let (Ok(count), Ok(offset), Ok(sources)) = (
        count.parse::<usize>(),
        offset.parse::<usize>(),
        sources.parse::<usize>(),
    ) else {
        eprintln!("fan-sub: count, offset and sources are numbers");
        std::process::exit(2);
    };
    if addrs.is_empty() || sources == 0 {
        eprintln!("fan-sub: no replica address or no source address");
        std::process::exit(2);
    }
    raise_nofile();
    let mark = Arc::new(AtomicBool::new(false));
    {
        let mark = mark.clone();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line.as_deref() {
                    Ok("mark") => mark.store(true, Ordering::Relaxed),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            // The parent closed our stdin (or went away): the run is over.
            std::process::exit(0);
        });
    }
    let frames: Vec<Arc<AtomicU64>> = (0..count).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let connected = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    runtime().block_on(async move {
        tokio::spawn(report(
            frames.clone(),
            connected.clone(),
            closed.clone(),
            mark,
        ));
        // Connect in waves so that no accept backlog overflows.
        for (i, counter) in frames.iter().enumerate() {
            let g = offset + i;
            tokio::spawn(subscriber(
                addrs[g % addrs.len()],
                Ipv4Addr::new(127, 0, 0, 2 + (g % sources) as u8),
                counter.clone(),
                connected.clone(),
                closed.clone(),
                None,
                stop.clone(),
            ));
            if i % 250 == 249 {
                let deadline = Instant::now() + Duration::from_secs(10);
                while connected.load(Ordering::Relaxed) + closed.load(Ordering::Relaxed)
                    < (i + 1) as u64
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
        std::future::pending::<()>().await;
    });
    unreachable!("the runtime runs until stdin closes")
}

/// Prints a [`Progress`] line every [`REPORT_EVERY`].
async fn report(
    frames: Vec<Arc<AtomicU64>>,
    connected: Arc<AtomicU64>,
    closed: Arc<AtomicU64>,
    mark: Arc<AtomicBool>,
) {
    let mut base: Option<Vec<u64>> = None;
    let mut tick = tokio::time::interval(REPORT_EVERY);
    loop {
        tick.tick().await;
        if base.is_none() && mark.load(Ordering::Relaxed) {
            base = Some(frames.iter().map(|c| c.load(Ordering::Relaxed)).collect());
        }
        let closed_now = closed.load(Ordering::Relaxed);
        let mut progress = Progress {
            connected: connected.load(Ordering::Relaxed),
            closed: closed_now,
            marked: base.is_some(),
            ..Progress::default()
        };
        if let Some(base) = &base {
            let mut min = u64::MAX;
            for (c, b) in frames.iter().zip(base) {
                let d = c.load(Ordering::Relaxed) - b;
                progress.total += d;
                // Once some have closed, a subscriber with nothing may be one of them.
                if d > 0 || closed_now == 0 {
                    min = min.min(d);
                }
            }
            progress.min = if min == u64::MAX { 0 } else { min };
        }
        let line = serde_json::to_string(&progress).unwrap_or_default();
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, "{line}")
            .and_then(|_| stdout.flush())
            .is_err()
        {
            std::process::exit(0);
        }
    }
}

/// The subscriber children, killed by PID when dropped.
struct Subscribers {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    progress: Vec<Arc<Mutex<Progress>>>,
}

impl Subscribers {
    fn start(
        addrs: &[SocketAddr],
        total: usize,
        processes: usize,
        sources: usize,
    ) -> Result<Self, String> {
        let list = addrs
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut subs = Self {
            children: Vec::new(),
            stdins: Vec::new(),
            progress: Vec::new(),
        };
        let mut offset = 0;
        for p in 0..processes {
            let count = total / processes + usize::from(p < total % processes);
            let mut command = self_command(&[
                "fan-sub",
                &list,
                &count.to_string(),
                &offset.to_string(),
                &sources.to_string(),
            ]);
            offset += count;
            let mut child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("cannot start a subscriber process: {e}"))?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err("a subscriber process without pipes".into());
            };
            let progress = Arc::new(Mutex::new(Progress::default()));
            let latest = progress.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    match serde_json::from_str::<Progress>(&line) {
                        Ok(p) => *latest.lock().unwrap() = p,
                        Err(e) => eprintln!("cluster: bad progress line {line:?}: {e}"),
                    }
                }
            });
            subs.children.push(child);
            subs.stdins.push(stdin);
            subs.progress.push(progress);
        }
        Ok(subs)
    }

    fn now(&self) -> Vec<Progress> {
        self.progress.iter().map(|p| *p.lock().unwrap()).collect()
    }

    fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    fn mark(&mut self) {
        for stdin in &mut self.stdins {
            let _ = writeln!(stdin, "mark").and_then(|_| stdin.flush());
        }
    }
}

impl Drop for Subscribers {
    fn drop(&mut self) {
        self.stdins.clear();
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The system's limits that bound this part.
struct Limits {
    nofile: u64,
    port_range: (u64, u64),
    file_max: u64,
}

fn read_limits() -> Limits {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let range: Vec<u64> = read("/proc/sys/net/ipv4/ip_local_port_range")
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    Limits {
        nofile: raise_nofile(),
        port_range: match range.as_slice() {
            [lo, hi] => (*lo, *hi),
            _ => (32768, 60999),
        },
        file_max: read("/proc/sys/fs/file-max").trim().parse().unwrap_or(0),
    }
}

/// Pages of memory the kernel's TCP sockets hold now (`/proc/net/sockstat`),
/// against `net.ipv4.tcp_mem`'s pressure threshold.
fn tcp_mem_pages() -> u64 {
    std::fs::read_to_string("/proc/net/sockstat")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields
                .windows(2)
                .find(|w| w[0] == "mem")
                .and_then(|w| w[1].parse().ok())
        })
        .unwrap_or(0)
}

/// `net.ipv4.tcp_mem`: (low, pressure, high) in pages.
fn tcp_mem_limits() -> (u64, u64, u64) {
    let v: Vec<u64> = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_mem")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    match v.as_slice() {
        [a, b, c] => (*a, *b, *c),
        _ => (0, 0, 0),
    }
}

/// Quantiles in ms of `samples` (arrival order), first 10% skipped.
fn latency_ms(samples: &[u64]) -> (usize, String, String, String) {
    let mut v = samples[samples.len() / 10..].to_vec();
    v.sort_unstable();
    let q = |q: f64| ms(quantile(&v, q) as f64 / 1000.0);
    (
        v.len(),
        q(0.5),
        q(0.99),
        ms(v.last().copied().unwrap_or(0) as f64 / 1000.0),
    )
}

/// One subscriber per replica, [`LATENCY_EVENTS`] posted to the first replica
/// at [`LATENCY_RATE`]; returns the section's lines.
fn light_latency(addrs: &[SocketAddr]) -> String {
    // Its own runtime: dropping it at the end closes these subscribers' sockets.
    let rt = runtime();
    let samples: Vec<Arc<Mutex<Vec<u64>>>> = addrs
        .iter()
        .map(|_| Arc::new(Mutex::new(Vec::new())))
        .collect();
    let frames: Vec<Arc<AtomicU64>> = addrs.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
    let connected = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    for (i, addr) in addrs.iter().enumerate() {
        rt.spawn(subscriber(
            *addr,
            Ipv4Addr::new(127, 0, 0, 2),
            frames[i].clone(),
            connected.clone(),
            closed.clone(),
            Some(samples[i].clone()),
            stop.clone(),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while connected.load(Ordering::Relaxed) < addrs.len() as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    // The poster runs at nice 10 (as in part 2), the subscribers at the normal priority.
    let posted = poster_runtime().block_on(post_at_rate(addrs[0], LATENCY_EVENTS, LATENCY_RATE, 4));
    let deadline = Instant::now() + Duration::from_secs(10);
    while samples
        .iter()
        .any(|s| (s.lock().unwrap().len() as u64) < LATENCY_EVENTS)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let taken: Vec<Vec<u64>> = samples
        .iter()
        .map(|s| std::mem::take(&mut *s.lock().unwrap()))
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Publish → delivered, light load: one more subscriber per replica (the same bare \
         subscriber), {} events posted to replica 1 at a steady {} events/s by 4 paced tasks at \
         nice 10 (one 3-action batch per `POST /events/acme`, the send time in the first \
         action's title); latency = the frame read by the subscriber − the poster's clock \
         before the POST, so it includes the POST, the `XADD` to Redis and each replica's tail \
         reading it back (`XREAD`). First 10% of each subscriber's arrivals skipped (warm-up). \
         Sent at {} events/s; POST round trip p50 {} ms; {} POSTs failed.\n",
        thousands(LATENCY_EVENTS as f64),
        thousands(LATENCY_RATE),
        thousands(posted.events as f64 / posted.secs.max(1e-9)),
        ms(posted.rtt_p50_us),
        posted.failures
    );
    out.push_str(
        "| subscriber on | frames received | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n",
    );
    let skip_warm_up = |v: &[u64]| v[v.len() / 10..].to_vec();
    let received = |i: usize| frames[i].load(Ordering::Relaxed);
    let (_, p50, p99, max) = latency_ms(&taken[0]);
    let _ = writeln!(
        out,
        "| replica 1, the one that ingested | {} | {p50} | {p99} | {max} |",
        thousands(received(0) as f64)
    );
    // The other replicas' arrivals pooled, each with its own warm-up skipped.
    let others: Vec<u64> = taken[1..].iter().flat_map(|v| skip_warm_up(v)).collect();
    let mut sorted = others.clone();
    sorted.sort_unstable();
    let q = |q: f64| ms(quantile(&sorted, q) as f64 / 1000.0);
    let _ = writeln!(
        out,
        "| replicas 2–{}, which did not (pooled) | {} | {} | {} | {} |",
        addrs.len(),
        thousands((1..addrs.len()).map(received).sum::<u64>() as f64),
        q(0.5),
        q(0.99),
        ms(sorted.last().copied().unwrap_or(0) as f64 / 1000.0)
    );
    out
}

/// What the full-load run measured.
struct FullRun {
    connected: u64,
    closed: u64,
    connect_secs: f64,
    live: Vec<u64>,
    posted: u64,
    deliveries: u64,
    expected: u64,
    secs: f64,
    idle_kib: Vec<u64>,
    after_kib: Vec<u64>,
    hwm_kib: Vec<u64>,
    cpu_pct: Vec<f64>,
    disconnects: Vec<u64>,
    redis: (u64, u64, f64),
    subscribers_cpu_pct: f64,
    subscribers_hwm_kib: u64,
    load_before_post: String,
    /// The most pages the kernel's TCP sockets held while delivering.
    tcp_mem_peak: u64,
}

fn full_run(
    rt: &tokio::runtime::Runtime,
    replicas: &[ConnectorProcess],
    redis: &RedisServer,
    total: usize,
    processes: usize,
    sources: usize,
) -> Result<FullRun, String> {
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    let mut subs = Subscribers::start(&addrs, total, processes, sources)?;
    let began = Instant::now();
    let deadline = began + Duration::from_secs(180);
    let mut last_change = (0, Instant::now());
    loop {
        let now = subs.now();
        let done: u64 = now.iter().map(|p| p.connected + p.closed).sum();
        if done >= total as u64 || Instant::now() > deadline {
            break;
        }
        if done != last_change.0 {
            last_change = (done, Instant::now());
        } else if last_change.1.elapsed() > Duration::from_secs(20) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let connect_secs = began.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let live: Vec<u64> = addrs
        .iter()
        .map(|a| rt.block_on(metric(*a, "autoplay_live_subscribers")))
        .collect();
    subs.mark();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !subs.now().iter().all(|p| p.marked) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let pids: Vec<u32> = replicas.iter().map(ConnectorProcess::pid).collect();
    let idle_kib: Vec<u64> = pids.iter().map(|&p| proc_memory_kib(p).0).collect();
    let cpu0: Vec<f64> = pids.iter().map(|&p| proc_cpu_secs(p)).collect();
    let redis_cpu0 = proc_cpu_secs(redis.pid());
    let sub_pids = subs.pids();
    let subs_cpu0: f64 = sub_pids.iter().map(|&p| proc_cpu_secs(p)).sum();
    let load_before_post = crate::report::loadavg();
    let now = subs.now();
    let connected: u64 = now.iter().map(|p| p.connected).sum();
    let closed: u64 = now.iter().map(|p| p.closed).sum();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let posted = rt.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("http://{}/events/acme", addrs[0]);
        let mut posted = 0;
        while posted < EVENTS && Instant::now() < deadline {
            let slowest = |subs: &Subscribers| subs.now().iter().map(|p| p.min).min().unwrap_or(0);
            while posted >= slowest(&subs) + AHEAD && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let batch = PER_POST.min(EVENTS - posted);
            let sent = crate::connector::unix_ns();
            let body = format!(
                "[{}]",
                (posted..posted + batch)
                    .map(|s| event_batch(s, sent))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let ok = client
                .post(&url)
                .bearer_auth(KEY)
                .header("content-type", "application/json")
                .body(body)
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if !ok {
                eprintln!("cluster: a POST failed");
            }
            posted += batch;
        }
        posted
    });
    let delivered = |subs: &Subscribers| subs.now().iter().map(|p| p.total).sum::<u64>();
    let expected = posted * connected.saturating_sub(closed);
    // The time of the last delivery seen (to within one report period).
    let mut last = (delivered(&subs), Instant::now());
    let mut tcp_mem_peak = tcp_mem_pages();
    while last.0 < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        tcp_mem_peak = tcp_mem_peak.max(tcp_mem_pages());
        let t = delivered(&subs);
        if t != last.0 {
            last = (t, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
    let secs = last.1.duration_since(started).as_secs_f64();
    let cpu_pct = pids
        .iter()
        .zip(&cpu0)
        .map(|(&p, c0)| (proc_cpu_secs(p) - c0) / secs.max(1e-9) * 100.0)
        .collect();
    let memory: Vec<(u64, u64)> = pids.iter().map(|&p| proc_memory_kib(p)).collect();
    let subscribers_cpu_pct = (sub_pids.iter().map(|&p| proc_cpu_secs(p)).sum::<f64>() - subs_cpu0)
        / secs.max(1e-9)
        * 100.0;
    let subscribers_hwm_kib = sub_pids.iter().map(|&p| proc_memory_kib(p).1).sum();
    let disconnects = addrs
        .iter()
        .map(|a| {
            rt.block_on(metric(*a, "autoplay_slow_subscriber_disconnects_total"))
                + rt.block_on(metric(*a, "autoplay_write_timeouts_total"))
        })
        .collect();
    let (redis_rss, redis_hwm) = proc_memory_kib(redis.pid());
    let redis_cpu = (proc_cpu_secs(redis.pid()) - redis_cpu0) / secs.max(1e-9) * 100.0;
    let now = subs.now();
    Ok(FullRun {
        connected,
        closed: now.iter().map(|p| p.closed).sum(),
        connect_secs,
        live,
        posted,
        deliveries: last.0,
        expected,
        secs,
        idle_kib,
        after_kib: memory.iter().map(|m| m.0).collect(),
        hwm_kib: memory.iter().map(|m| m.1).collect(),
        cpu_pct,
        disconnects,
        redis: (redis_rss, redis_hwm, redis_cpu),
        subscribers_cpu_pct,
        subscribers_hwm_kib,
        load_before_post,
        tcp_mem_peak,
    })
}

/// Part 7.
pub fn section() -> String {
    let total = total_subscribers();
    let limits = read_limits();
    let per_process = limits.nofile.saturating_sub(SPARE_FDS).max(1) as usize;
    let replicas_n = REPLICAS.max(total.div_ceil(per_process));
    let processes = SUBSCRIBER_PROCESSES.max(total.div_ceil(per_process));
    let ports = limits.port_range.1.saturating_sub(limits.port_range.0) + 1;
    // Every source address gets at most three quarters of the ephemeral ports.
    let sources = 8
        .max(total.div_ceil((ports as usize * 3 / 4).max(1)))
        .min(250);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{replicas_n} replicas, each `autoplay connector --store redis://127.0.0.1:<port>` (the \
         CLI as shipped, {} build, system allocator, 2 tokio workers, summaries off, heartbeats every \
         3,600 s so that none is counted as a delivery), on one `redis-server` {} started by the \
         benchmark on a free port with a temp dir and {}. {} subscribers in total, subscriber \
         *i* on replica *i* mod {replicas_n} (~{} each), opened from {processes} child processes \
         of the benchmark binary (`autoplay-bench fan-sub`, tokio with 2 workers each; each \
         subscriber a bare HTTP/1.1 GET counting frames, as in part 4) and bound to 127.0.0.2–{} \
         ({sources} source addresses). Then {EVENTS} events (three-action batches, {PER_POST} per \
         `POST /events/acme`, at most {AHEAD} ahead of the slowest subscriber) are posted to \
         replica 1 only; every replica's tail reads them from Redis and fans them out to its own \
         subscribers. Deliveries = frames received by all subscribers; deliveries/s = deliveries \
         / time from the first POST to the last delivery. RSS idle = each replica's `VmRSS` with \
         every subscriber connected, before the first POST; peak = `VmHWM` at the end. CPU = \
         user+system time / the same span (200% = both cores; every process of this part shares \
         the machine's 2 cores).\n",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        RedisServer::version(),
        redis_server::SETTINGS,
        thousands(total as f64),
        thousands((total / replicas_n) as f64),
        1 + sources,
    );
    let _ = writeln!(
        out,
        "Limits, read and adapted to (no sysctl changed, nothing run as root): open files per \
         process {} (the benchmark and the connector raise their soft limit to the hard one; \
         raising the hard one needs `CAP_SYS_RESOURCE`), so one process holds ~{} sockets; \
         ephemeral ports {}–{} (`net.ipv4.ip_local_port_range`, {} per source address, hence \
         the {sources} source addresses); `fs.file-max` {}.\n",
        thousands(limits.nofile as f64),
        thousands(per_process as f64),
        limits.port_range.0,
        limits.port_range.1,
        thousands(ports as f64),
        thousands(limits.file_max as f64),
    );
    if limits.file_max != 0 && limits.file_max < 3 * total as u64 {
        let _ = writeln!(
            out,
            "Not run: `fs.file-max` ({}) is below the ~{} descriptors this part needs.",
            limits.file_max,
            3 * total
        );
        return out;
    }
    let redis = match RedisServer::start() {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(out, "Not run: {e}.");
            return out;
        }
    };
    let store = vec![
        "--store".to_owned(),
        redis.url(),
        "--heartbeat-s".to_owned(),
        "3600".to_owned(),
    ];
    let replicas: Vec<ConnectorProcess> = (0..replicas_n)
        .filter_map(|_| ConnectorProcess::start_with(0, &store))
        .collect();
    if replicas.len() < replicas_n {
        let _ = writeln!(out, "Not run: a replica did not start.");
        return out;
    }
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
    let rt = runtime();
    eprintln!("cluster: light-load latency");
    let latency = light_latency(&addrs);
    eprintln!("cluster: {total} subscribers from {processes} processes");
    let run = match full_run(&rt, &replicas, &redis, total, processes, sources) {
        Ok(run) => run,
        Err(e) => {
            let _ = writeln!(out, "Not run: {e}.");
            return out;
        }
    };
    let rate = run.deliveries as f64 / run.secs.max(1e-9);
    out.push_str(
        "| subscribers | connected | disconnected | connect time s | events posted | deliveries | of expected | deliveries/s |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let _ = writeln!(
        out,
        "| {} | {} | {} | {:.1} | {} | {} | {} | {} |\n",
        thousands(total as f64),
        thousands(run.connected as f64),
        thousands(run.closed as f64),
        run.connect_secs,
        thousands(run.posted as f64),
        thousands(run.deliveries as f64),
        thousands(run.expected as f64),
        thousands(rate),
    );
    out.push_str(
        "| process | live subscribers (its `/metrics`) | RSS idle MiB | RSS after MiB | peak (`VmHWM`) MiB | CPU % | slow-subscriber disconnects + write timeouts |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for i in 0..replicas.len() {
        let _ = writeln!(
            out,
            "| replica {}{} | {} | {} | {} | {} | {:.0} | {} |",
            i + 1,
            if i == 0 { " (ingests)" } else { "" },
            thousands(run.live[i] as f64),
            mib(run.idle_kib[i]),
            mib(run.after_kib[i]),
            mib(run.hwm_kib[i]),
            run.cpu_pct[i],
            run.disconnects[i]
        );
    }
    let sum = |v: &[u64]| v.iter().sum::<u64>();
    let _ = writeln!(
        out,
        "| all {} replicas | {} | {} | {} | {} | {:.0} | {} |",
        replicas.len(),
        thousands(sum(&run.live) as f64),
        mib(sum(&run.idle_kib)),
        mib(sum(&run.after_kib)),
        mib(sum(&run.hwm_kib)),
        run.cpu_pct.iter().sum::<f64>(),
        sum(&run.disconnects)
    );
    let _ = writeln!(
        out,
        "| `redis-server` | | | {} | {} | {:.0} | |",
        mib(run.redis.0),
        mib(run.redis.1),
        run.redis.2
    );
    let _ = writeln!(
        out,
        "| the {processes} subscriber processes (load generator) | | | | {} | {:.0} | |\n",
        mib(run.subscribers_hwm_kib),
        run.subscribers_cpu_pct
    );
    let met = |ok: bool| if ok { "met" } else { "missed" };
    let peak = sum(&run.hwm_kib);
    let _ = writeln!(
        out,
        "- Load average (1, 5, 15 min) just before the first POST: {} (2 cores; the machine is \
         shared with other work).",
        run.load_before_post
    );
    let (_, pressure, high) = tcp_mem_limits();
    let _ = writeln!(
        out,
        "- Kernel TCP memory while delivering: at most {} MiB (`/proc/net/sockstat`, sampled \
         every 5 ms); `net.ipv4.tcp_mem` puts the pressure threshold at {} MiB and the limit at \
         {} MiB.",
        thousands(run.tcp_mem_peak as f64 * 4096.0 / 1048576.0),
        thousands(pressure as f64 * 4096.0 / 1048576.0),
        thousands(high as f64 * 4096.0 / 1048576.0)
    );
    let _ = writeln!(
        out,
        "- {} concurrent subscribers, measured: {} connected → **{}**",
        thousands(total as f64),
        thousands(run.connected as f64),
        met(run.connected >= total as u64 && sum(&run.live) >= total as u64)
    );
    let _ = writeln!(
        out,
        "- Target connector RSS < 1 GiB for the {} replicas together: sum of peaks {} MiB (idle \
         sum {} MiB) → **{}**",
        replicas.len(),
        mib(peak),
        mib(sum(&run.idle_kib)),
        met(peak < 1024 * 1024)
    );
    let _ = writeln!(
        out,
        "- Target ≥ 1,000,000 deliveries/s over the whole cluster: {} /s → **{}**\n",
        thousands(rate),
        met(rate >= 1_000_000.0)
    );
    out.push_str(&latency);
    out
}
