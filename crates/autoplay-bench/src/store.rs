//! Part 6, `autoplay-bench store`: webhook ingest and `Last-Event-ID` replay
//! of one connector per store, side by side in one run: `memory`, the embedded
//! store (`file://<temp dir>`) and Redis (a `redis-server` this benchmark starts,
//! [`crate::redis_server`]), plus a second Redis replica that ingested nothing
//! serving the same window.
//!
//! Each store gets a fresh `autoplay connector` child (the CLI as shipped,
//! system allocator) in each of three rounds (`AUTOPLAY_BENCH_RUNS`), 5 s of the part-4 ingest load (PostHog batches of 100 events from
//! 8 connections, summaries every 10 actions), then one subscriber with
//! `Last-Event-ID: 0` reading the whole replay window (up to 200,000 frames):
//! replay events/s = frames / time from the request to the last frame.
//! `autoplay-bench store STORE...` measures the stores named and prints the
//! table instead.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::connector::{ConnectorProcess, KEY, metric, proc_cpu_secs, proc_memory_kib};
use crate::redis_server::{self, RedisServer};
use crate::report::{median_min_max, mib, thousands};

/// Frames kept for replay in the benchmark connectors.
const WINDOW: u64 = 200_000;

/// Seconds of ingest per store.
const INGEST_SECS: u64 = 5;

/// A connector on `store` with the benchmark's window and summaries every 10 actions.
fn start(store: &str) -> Option<ConnectorProcess> {
    let mut args = vec![
        "--replay-events".to_owned(),
        WINDOW.to_string(),
        "--replay-bytes".to_owned(),
        (1u64 << 30).to_string(),
    ];
    // `memory` is the default: passing no flag also measures a connector that
    // predates `--store`.
    if store != "memory" {
        args.extend(["--store".to_owned(), store.to_owned()]);
    }
    ConnectorProcess::start_with(10, &args)
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
    // The connector joins ready frames into one chunk, so the last chunk may carry
    // frames published after `expected` was read (late summaries): count only those
    // asked for.
    (frames.min(expected), started.elapsed().as_secs_f64())
}

/// One store's figures.
struct Row {
    label: String,
    accepted: u64,
    ingest_secs: f64,
    failures: u64,
    cpu_pct: f64,
    frames: u64,
    expected: u64,
    replay_secs: f64,
    rss_kib: u64,
}

impl Row {
    fn ingest_rate(&self) -> f64 {
        self.accepted as f64 / self.ingest_secs.max(1e-9)
    }

    fn replay_rate(&self) -> f64 {
        self.frames as f64 / self.replay_secs.max(1e-9)
    }
}

/// Ingest, then replay, on a fresh connector for `store`.
fn measure(rt: &tokio::runtime::Runtime, label: &str, conn: &ConnectorProcess) -> Row {
    let cpu0 = proc_cpu_secs(conn.pid());
    let (accepted, ingest_secs, failures) =
        rt.block_on(crate::parts::ingest(conn.addr, INGEST_SECS));
    let cpu = proc_cpu_secs(conn.pid()) - cpu0;
    let expected = rt
        .block_on(metric(conn.addr, "autoplay_events_published_total"))
        .min(WINDOW);
    let (frames, replay_secs) = rt.block_on(replay(conn.addr, expected));
    Row {
        label: label.to_owned(),
        accepted,
        ingest_secs,
        failures,
        cpu_pct: cpu / ingest_secs.max(1e-9) * 100.0,
        frames,
        expected,
        replay_secs,
        rss_kib: proc_memory_kib(conn.pid()).0,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

const HEAD: &str = "| store | events accepted | ingest events/s | failed requests | connector CPU % (ingest) | frames replayed | replay events/s | connector RSS MiB |\n\
                    |---|---:|---:|---:|---:|---:|---:|---:|\n";

fn row_line(out: &mut String, row: &Row) {
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {:.0} | {} of {} | {} | {} |",
        row.label,
        thousands(row.accepted as f64),
        thousands(row.ingest_rate()),
        row.failures,
        row.cpu_pct,
        thousands(row.frames as f64),
        thousands(row.expected as f64),
        thousands(row.replay_rate()),
        mib(row.rss_kib),
    );
}

/// `autoplay-bench store STORE...`: the stores named, as a printed table.
pub fn table(stores: &[String]) -> String {
    let rt = runtime();
    let mut out = String::from(HEAD);
    for store in stores {
        eprintln!("store: {store}");
        match start(store) {
            Some(conn) => row_line(&mut out, &measure(&rt, store, &conn)),
            None => {
                let _ = writeln!(out, "| {store} | could not start | | | | | | |");
            }
        }
    }
    out
}

/// Part 6: memory, embedded and Redis side by side, and a Redis replica that
/// did not ingest replaying the same window.
pub fn section() -> String {
    let rt = runtime();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "One `autoplay connector` child per store (the CLI as shipped, on the system allocator), started fresh \
         with a {}-event, 1 GiB replay window: `memory`; the embedded store, `file://<temp dir>` \
         (redb; a webhook is answered once its group commit is on disk, `docs/deploy.md`); Redis, \
         `redis://127.0.0.1:<port>` on a `redis-server` {} that the benchmark starts on a free \
         port with a temp dir and {} (so Redis may lose the last second on a crash). Each gets \
         {INGEST_SECS} s of the part-4 ingest load (`POST /webhook/acme`, PostHog `{{\"batch\": \
         [...]}}` bodies of 100 capture events from 8 keep-alive connections, summaries every 10 \
         actions), then one subscriber with `Last-Event-ID: 0` reads the whole window: replay \
         events/s = frames / time from the request to the last frame. CPU % = the connector's \
         user+system time over the ingest (200% = both cores). The temp dirs are on the machine's \
         one disk (`{}`).\n\n\
         The replica that did not ingest is a second connector on the same Redis, started after \
         the ingest; its replay request goes out as soon as it listens, so its time includes \
         loading the window from Redis (`XREVRANGE`) before it answers.\n",
        thousands(WINDOW as f64),
        redis_server::RedisServer::version(),
        redis_server::SETTINGS,
        std::env::temp_dir().display(),
    );
    let rounds = rounds();
    let _ = writeln!(
        out,
        "The stores are measured in {rounds} rounds, each the four rows in this order, every \
         connector and `redis-server` new: this VM's speed drifts by up to a third within an \
         hour, so stores are compared within a round. The rates below are each store's median \
         over the rounds, the other columns are from its median-ingest round, and the ratios to \
         memory are medians of the per-round ratios; every round's rates are listed after the \
         table.\n"
    );
    out.push_str(HEAD);
    let mut notes = Vec::new();
    // Per round, the rows in `LABELS` order (`None`: that one did not run).
    let mut all: Vec<Vec<Option<Row>>> = Vec::new();
    for round in 1..=rounds {
        eprintln!("store: round {round} of {rounds}");
        all.push(measure_round(&rt, round, &mut notes));
    }
    notes.sort();
    notes.dedup();
    let median = |v: Vec<f64>| median_min_max(&v).0;
    let column = |i: usize| -> Vec<&Row> { all.iter().filter_map(|r| r[i].as_ref()).collect() };
    let mut medians: Vec<Option<(f64, f64)>> = Vec::new();
    for (i, label) in LABELS.iter().enumerate() {
        let rows = column(i);
        if rows.is_empty() {
            medians.push(None);
            continue;
        }
        let ingest = median(rows.iter().map(|r| r.ingest_rate()).collect());
        let replay = median(rows.iter().map(|r| r.replay_rate()).collect());
        medians.push(Some((ingest, replay)));
        let shown = rows
            .iter()
            .min_by(|a, b| {
                (a.ingest_rate() - ingest)
                    .abs()
                    .total_cmp(&(b.ingest_rate() - ingest).abs())
            })
            .expect("a row");
        let replayed = format!(
            "{} of {}",
            thousands(shown.frames as f64),
            thousands(shown.expected as f64)
        );
        if shown.ingest_secs > 0.0 {
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {} | {:.0} | {replayed} | {} | {} |",
                thousands(shown.accepted as f64),
                thousands(ingest),
                shown.failures,
                shown.cpu_pct,
                thousands(replay),
                mib(shown.rss_kib),
            );
        } else {
            let _ = writeln!(
                out,
                "| {label} | — | — | — | — | {replayed} | {} | {} |",
                thousands(replay),
                mib(shown.rss_kib),
            );
        }
    }
    out.push('\n');
    for (i, label) in LABELS.iter().enumerate() {
        let rows = column(i);
        if rows.is_empty() {
            continue;
        }
        let per_round: Vec<String> = rows
            .iter()
            .map(|r| {
                if r.ingest_secs > 0.0 {
                    format!(
                        "{} / {}",
                        thousands(r.ingest_rate()),
                        thousands(r.replay_rate())
                    )
                } else {
                    format!("— / {}", thousands(r.replay_rate()))
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "- {label}, ingest / replay events/s by round: {}",
            per_round.join("; ")
        );
    }
    for note in &notes {
        let _ = writeln!(out, "- {note}");
    }
    let met = |ok: bool| if ok { "met" } else { "missed" };
    for (i, (label, m)) in LABELS.iter().zip(&medians).enumerate() {
        if let Some((ingest, _)) = m
            && column(i).iter().any(|r| r.ingest_secs > 0.0)
        {
            let _ = writeln!(
                out,
                "- Target ≥ 20,000 PostHog events/s ingest, {label}: median {} /s → **{}**",
                thousands(*ingest),
                met(*ingest >= 20_000.0)
            );
        }
    }
    for (i, label) in LABELS.iter().enumerate().skip(1) {
        let pairs: Vec<(&Row, &Row)> = all
            .iter()
            .filter_map(|r| Some((r[0].as_ref()?, r[i].as_ref()?)))
            .collect();
        if pairs.is_empty() {
            continue;
        }
        // Memory's rate over the row's, per round; their median.
        let ratio = |rate: fn(&Row) -> f64| {
            median(
                pairs
                    .iter()
                    .map(|(memory, row)| rate(memory) / rate(row).max(1e-9))
                    .collect(),
            )
        };
        if pairs.iter().all(|(_, row)| row.ingest_secs > 0.0) {
            let ratio = ratio(Row::ingest_rate);
            let _ = writeln!(
                out,
                "- Target ingest within 3× of memory, {label}: memory is {ratio:.2}× it (median of {} rounds) → **{}**",
                pairs.len(),
                met(ratio <= 3.0)
            );
        }
        let ratio = ratio(Row::replay_rate);
        let complete = pairs.iter().all(|(_, row)| row.frames == row.expected);
        let _ = writeln!(
            out,
            "- Target replay within 3× of memory, {label}: memory is {ratio:.2}× it (median of {} rounds{}) → **{}**",
            pairs.len(),
            if complete {
                ", every frame replayed"
            } else {
                "; a replay came back short"
            },
            met(ratio <= 3.0 && complete)
        );
    }
    out
}

/// The rows of part 6, in the order a round measures them.
const LABELS: [&str; 4] = [
    "memory",
    "embedded (`file://<temp dir>`)",
    "Redis, the replica that ingested",
    "Redis, a second replica that did not ingest (replay only)",
];

/// Rounds of part 6 (`AUTOPLAY_BENCH_RUNS` overrides, as for part 1).
fn rounds() -> usize {
    crate::report::env_count("AUTOPLAY_BENCH_RUNS", 3)
}

/// One round: every store on fresh processes, in [`LABELS`] order.
fn measure_round(
    rt: &tokio::runtime::Runtime,
    number: usize,
    notes: &mut Vec<String>,
) -> Vec<Option<Row>> {
    let mut round: Vec<Option<Row>> = Vec::with_capacity(LABELS.len());
    eprintln!("store: memory");
    round.push(start("memory").map(|conn| measure(rt, LABELS[0], &conn)));
    if round[0].is_none() {
        notes.push("memory: the connector did not start".to_owned());
    }
    eprintln!("store: embedded");
    match tempfile::Builder::new()
        .prefix("autoplay-bench-store-")
        .tempdir()
    {
        Ok(dir) => {
            let url = format!("file://{}", dir.path().display());
            round.push(start(&url).map(|conn| measure(rt, LABELS[1], &conn)));
            if round[1].is_none() {
                notes.push("embedded: the connector did not start".to_owned());
            }
        }
        Err(e) => {
            notes.push(format!("embedded: no temp dir: {e}"));
            round.push(None);
        }
    }
    eprintln!("store: redis");
    let redis = match RedisServer::start() {
        Ok(redis) => redis,
        Err(e) => {
            notes.push(format!("Redis: not run: {e}"));
            round.extend([None, None]);
            return round;
        }
    };
    let url = redis.url();
    let cpu0 = proc_cpu_secs(redis.pid());
    let Some(conn) = start(&url) else {
        notes.push("Redis: the connector did not start".to_owned());
        round.extend([None, None]);
        return round;
    };
    let row = measure(rt, LABELS[2], &conn);
    let cpu = proc_cpu_secs(redis.pid()) - cpu0;
    notes.push(format!(
        "`redis-server` during the Redis ingest and replay of round {}: {:.0}% CPU over the \
         ingest's {INGEST_SECS} s (its own work, beside the connector's), RSS {} MiB after.",
        number,
        cpu / row.ingest_secs.max(1e-9) * 100.0,
        mib(proc_memory_kib(redis.pid()).0)
    ));
    let expected = row.expected;
    round.push(Some(row));
    eprintln!("store: redis, second replica");
    match start(&url) {
        Some(second) => {
            let (frames, replay_secs) = rt.block_on(replay(second.addr, expected));
            round.push(Some(Row {
                label: LABELS[3].to_owned(),
                accepted: 0,
                ingest_secs: 0.0,
                failures: 0,
                cpu_pct: 0.0,
                frames,
                expected,
                replay_secs,
                rss_kib: proc_memory_kib(second.pid()).0,
            }));
        }
        None => {
            notes.push("Redis: the second replica did not start".to_owned());
            round.push(None);
        }
    }
    round
}
