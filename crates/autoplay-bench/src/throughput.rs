//! Part 1, client throughput: the same pre-generated stream from the in-memory
//! blaster to each consumer in turn, each in its own child process.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::consume::Outcome;
use crate::report::{median_min_max, mib, quantile, thousands};
use crate::{blaster, python, stream};

/// Runs per consumer (`AUTOPLAY_BENCH_RUNS` overrides, for a quick look).
fn runs() -> usize {
    crate::report::env_count("AUTOPLAY_BENCH_RUNS", 5)
}

struct Consumer {
    letter: &'static str,
    label: String,
    /// The global allocator of the consumer's process, shown in its row.
    allocator: &'static str,
    command: Command,
}

/// The two consumer binaries: the same code on the system allocator and on mimalloc.
const CONSUMER_BINARIES: [(&str, &str, &str); 2] = [
    ("autoplay-consume", "system", ""),
    ("autoplay-consume-mimalloc", "mimalloc", "-mi"),
];

/// Runs a child consumer and parses its JSON line (`None` on failure or timeout).
pub fn run_child(mut command: Command, timeout: Duration) -> Option<Outcome> {
    command.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = command.spawn().ok()?;
    let stdout = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let started = Instant::now();
    let line = rx.recv_timeout(timeout).ok();
    if line.is_none() {
        eprintln!("  consumer timed out after {:?}", started.elapsed());
        let _ = child.kill();
    }
    let _ = child.wait();
    line.and_then(|l| Outcome::from_json(&l))
}

/// Our Rust consumers and the Rust peers and limits, each on the system allocator
/// and on mimalloc (letter suffix `-mi`); empty when a consumer binary cannot be built.
fn rust_consumers(url: &str, ns: &str, skipped: &mut Vec<String>) -> Vec<Consumer> {
    const KINDS: [(&str, &str, &str); 6] = [
        (
            "a",
            "blocking",
            "our Rust `ConnectorClient` (blocking, `OverflowPolicy::Block`)",
        ),
        (
            "b",
            "async",
            "our Rust `AsyncConnectorClient` (tokio, 2 workers, `Block`)",
        ),
        (
            "e",
            "reqwest-eventsource",
            "`reqwest-eventsource` + serde_json",
        ),
        (
            "f",
            "eventsource-client",
            "LaunchDarkly `eventsource-client` + serde_json",
        ),
        (
            "g1",
            "raw-split",
            "limit: raw socket read + frame split (one thread)",
        ),
        (
            "g2",
            "raw-decode",
            "limit: raw read + serde_json decode of every data line (one thread)",
        ),
    ];
    let mut out = Vec::new();
    for (bin, allocator, suffix) in CONSUMER_BINARIES {
        let Some(exe) = crate::binaries::built("autoplay-bench", bin) else {
            skipped.push(format!(
                "every `{bin}` ({allocator}) row: the binary is not built"
            ));
            continue;
        };
        for (letter, kind, label) in KINDS {
            let mut command = Command::new(&exe);
            command.args([kind, url, ns]);
            out.push(Consumer {
                letter: format!("{letter}{suffix}").leak(),
                label: label.to_owned(),
                allocator,
                command,
            });
        }
    }
    out
}

/// The allocator of the Python rows: the extension sets mimalloc for its Rust core.
const PYTHON_EXTENSION: &str = "mimalloc (Rust core), pymalloc";
/// The published SDK is pure Python.
const PYTHON_PURE: &str = "pymalloc / system";

/// Runs part 1 and returns its markdown section.
pub fn run(root: &Path, work: &Path, notes: &mut Vec<String>) -> String {
    let body = stream::stream_body();
    let n = stream::EVENTS;
    let url = blaster::start(body.clone());
    let ns = n.to_string();

    let mut section = String::new();
    let mut skipped = Vec::new();
    let mut consumers = rust_consumers(&url, &ns, &mut skipped);
    match python::ours_env(root, work) {
        Ok(env) => {
            let mut c = Command::new(&env.python);
            c.arg(&env.script).args(["throughput", &url, &ns]);
            consumers.push(Consumer {
                letter: "c",
                allocator: PYTHON_EXTENSION,
                label:
                    "our Python package (Rust core; counting Python callback, default queue of 500)"
                        .into(),
                command: c,
            });
            let mut c = Command::new(&env.python);
            c.arg(&env.script)
                .args(["throughput", &url, &ns, "", "block"]);
            consumers.push(Consumer {
                letter: "c-block",
                allocator: PYTHON_EXTENSION,
                label: "our Python package, `overflow_policy=\"block\"` (counting Python callback)"
                    .into(),
                command: c,
            });
            let mut c = Command::new(&env.python);
            c.arg(&env.async_script).args(["throughput", &url, &ns]);
            consumers.push(Consumer {
                letter: "c-async",
                allocator: PYTHON_EXTENSION,
                label: "our Python package, `AsyncConnectorClient` (counting `async def` callback, default queue of 500)".into(),
                command: c,
            });
            notes.push(env.versions);
        }
        Err(e) => skipped.push(format!("(c) our Python package: skipped: {e}")),
    }
    match python::published_env(work) {
        Ok(env) => {
            let mut c = Command::new(&env.python);
            c.arg(&env.script).args(["throughput", &url, &ns]);
            consumers.push(Consumer {
                letter: "d",
                allocator: PYTHON_PURE,
                label: format!(
                    "published Python `{}` (counting callback, default queue of 500)",
                    python::PUBLISHED
                ),
                command: c,
            });
            notes.push(format!(
                "Published Python SDK environment: {}",
                env.versions
            ));
        }
        Err(e) => skipped.push(format!("(d) the published Python SDK: skipped: {e}")),
    }
    match python::published_latest_env(work) {
        Ok(env) => {
            let mut c = Command::new(&env.python);
            c.arg(&env.async_script).args(["throughput", &url, &ns]);
            consumers.push(Consumer {
                letter: "d-async",
                allocator: PYTHON_PURE,
                label: format!(
                    "published Python `{}`, `AsyncConnectorClient` (counting `async def` callback)",
                    python::PUBLISHED_LATEST
                ),
                command: c,
            });
            notes.push(format!(
                "Published Python SDK environment (asyncio row): {}",
                env.versions
            ));
        }
        Err(e) => skipped.push(format!(
            "(d-async) the published Python SDK {}: skipped: {e}",
            python::PUBLISHED_LATEST
        )),
    }

    struct Row {
        letter: &'static str,
        label: String,
        allocator: &'static str,
        rates: Vec<f64>,
        hwm: Vec<f64>,
        dropped: Vec<f64>,
        delivered: Vec<f64>,
        cpu_us: Vec<f64>,
        cores: Vec<f64>,
        failed: usize,
    }
    // Round-robin: run 1 of every consumer, then run 2, ..., so a change in the
    // shared machine's background load hits every consumer alike.
    let mut rows: Vec<Row> = consumers
        .iter()
        .map(|c| Row {
            letter: c.letter,
            label: c.label.clone(),
            allocator: c.allocator,
            rates: vec![],
            hwm: vec![],
            dropped: vec![],
            delivered: vec![],
            cpu_us: vec![],
            cores: vec![],
            failed: 0,
        })
        .collect();
    for run in 0..runs() {
        for (consumer, row) in consumers.iter().zip(rows.iter_mut()) {
            match run_child(consumer.fresh_command(), Duration::from_secs(300)) {
                Some(o) if o.events > 0 => {
                    eprintln!(
                        "throughput run {}: ({}) {} events/s, {:.2} µs CPU per event, peak RSS {} MiB, dropped {}",
                        run + 1,
                        consumer.letter,
                        thousands(o.rate()),
                        o.cpu_us_per_event(),
                        mib(o.hwm_kib),
                        o.dropped
                    );
                    row.cpu_us.push(o.cpu_us_per_event());
                    row.cores.push(o.cores_busy());
                    row.rates.push(o.rate());
                    row.hwm.push(o.hwm_kib as f64);
                    row.dropped.push(o.dropped as f64);
                    row.delivered.push(o.events as f64);
                }
                _ => row.failed += 1,
            }
        }
    }

    let pairs = paired_a_and_g2(&consumers);
    // Measured after the consumers, so this burst of work on both cores sits right
    // before none of them.
    let two_core = two_core_factors(sample_actions_data(&body), 2 * runs());

    let median_of = |letter: &str| {
        rows.iter()
            .find(|r| r.letter == letter && !r.rates.is_empty())
            .map(|r| median_min_max(&r.rates).0)
    };
    let d = median_of("d");
    let limit = median_of("g2");
    let limit_mi = median_of("g2-mi");
    let a = median_of("a");
    let a_mi = median_of("a-mi");
    let f_mi = median_of("f-mi");
    let c = median_of("c");
    let c_block = median_of("c-block");
    let f = median_of("f");
    let c_async = median_of("c-async");
    let d_async = median_of("d-async");

    let _ = writeln!(
        section,
        "The stream: {} payload events ({:.1} MiB; ~800-byte `actions` events, 1 in 10 a \
         `summary`, a heartbeat every 1,000, 64 sessions; `crates/autoplay-sdk/benches/support/stream.rs`), \
         served from memory by a blaster thread in the parent process over HTTP/1.1 on 127.0.0.1. \
         Each consumer runs in its own child process, {} runs each, round-robin (run 1 of every consumer, then run 2, ...); the clock \
         starts before the client connects and stops when the callback has counted every typed \
         payload (or, for the published SDK, when delivered + dropped reached the total). \
         Events/s counts payloads delivered to the callback. CPU per event is the child's own \
         CPU time (all its threads, user + system) over the same span, divided by the payloads \
         delivered; cores busy is that CPU time over the span. Peak RSS is the child's `VmHWM`.\n",
        thousands(n as f64),
        body.len() as f64 / (1024.0 * 1024.0),
        runs()
    );
    section.push_str(
        "| consumer | allocator | events/s median | min | max | × (d) | × (f) LaunchDarkly, same allocator | × (g2) limit, same allocator | × (g2) limit, system | CPU µs per event (median) | cores busy (median) | peak RSS MiB (median) | dropped per run (median) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &rows {
        if r.rates.is_empty() {
            let _ = writeln!(
                section,
                "| ({}) {} | {} | failed ({} runs) | | | | | | | | | | | |",
                r.letter, r.label, r.allocator, r.failed
            );
            continue;
        }
        let (med, min, max) = median_min_max(&r.rates);
        let ratio = |base: Option<f64>| base.map_or("–".into(), |b| format!("{:.2}", med / b));
        // Python rows compare with the system-allocator Rust rows.
        let same_allocator = |system: Option<f64>, mimalloc: Option<f64>| {
            if r.allocator == "mimalloc" {
                mimalloc
            } else {
                system
            }
        };
        let (hwm, _, _) = median_min_max(&r.hwm);
        let (dropped, _, _) = median_min_max(&r.dropped);
        let (cpu_us, _, _) = median_min_max(&r.cpu_us);
        let (cores, _, _) = median_min_max(&r.cores);
        let (cpu_us, cores) = if cpu_us > 0.0 {
            (format!("{cpu_us:.2}"), format!("{cores:.2}"))
        } else {
            ("–".to_owned(), "–".to_owned())
        };
        let failed = if r.failed > 0 {
            format!(" ({} runs failed)", r.failed)
        } else {
            String::new()
        };
        let _ = writeln!(
            section,
            "| ({}) {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.letter,
            r.label,
            failed,
            r.allocator,
            thousands(med),
            thousands(min),
            thousands(max),
            ratio(d),
            ratio(same_allocator(f, f_mi)),
            ratio(same_allocator(limit, limit_mi)),
            ratio(limit),
            cpu_us,
            cores,
            mib(hwm as u64),
            thousands(dropped)
        );
    }
    section.push('\n');
    for s in skipped {
        let _ = writeln!(section, "- {s}");
    }
    let _ = writeln!(section);
    let check = |name: &str, got: Option<f64>, need: f64| match got {
        Some(x) => format!(
            "- {name}: {x:.2}× (target ≥ {need}×): **{}**",
            if x >= need { "met" } else { "missed" }
        ),
        None => format!("- {name}: not measured"),
    };
    section.push_str("Our targets (ratios of medians in this run):\n\n");
    let _ = writeln!(
        section,
        "{}",
        check(
            "(a) vs (f), both on the system allocator",
            a.zip(f).map(|(a, f)| a / f),
            2.5
        )
    );
    let _ = writeln!(
        section,
        "{}",
        check(
            "(a-mi) vs (f-mi), both on mimalloc",
            a_mi.zip(f_mi).map(|(a, f)| a / f),
            2.5
        )
    );
    let _ = writeln!(
        section,
        "{}",
        check("(a) vs (d)", a.zip(d).map(|(a, d)| a / d), 12.0)
    );
    let _ = writeln!(
        section,
        "{}",
        check(
            "(a) vs the one-thread read+decode limit (g2), both on the system allocator",
            a.zip(limit).map(|(a, l)| a / l),
            1.0
        )
    );
    let _ = writeln!(
        section,
        "{}",
        check(
            "(a-mi), on mimalloc, vs the limit on the system allocator (g2)",
            a_mi.zip(limit).map(|(a, l)| a / l),
            1.4
        )
    );
    let _ = writeln!(
        section,
        "{}",
        check(
            "(a-mi) vs the limit on mimalloc (g2-mi)",
            a_mi.zip(limit_mi).map(|(a, l)| a / l),
            1.4
        )
    );
    if !pairs.ratios.is_empty() {
        let (med, min, max) = median_min_max(&pairs.ratios);
        let mut sorted = pairs.ratios.clone();
        sorted.sort_by(f64::total_cmp);
        let _ = writeln!(
            section,
            "  - The machine's own speed drifts by up to ~2× within a run (compare (g2)'s CPU per \
             event between runs), which medians of {} runs taken seconds apart only partly \
             cancel. As a second look, {} more pairs ran (a) and (g2) back to back (alternating \
             which went first); the median of the per-pair ratios was {med:.2}× (quartiles \
             {:.2}× and {:.2}×; min {min:.2}×, max {max:.2}×).",
            runs(),
            pairs.ratios.len(),
            quantile(&sorted, 0.25),
            quantile(&sorted, 0.75),
        );
    }
    if !two_core.is_empty() && !pairs.cpu_ratios.is_empty() {
        let (factor, min, max) = median_min_max(&two_core);
        let (cpu_ratio, _, _) = median_min_max(&pairs.cpu_ratios);
        let _ = writeln!(
            section,
            "  - What two cores give here: {} times after the pairs, one thread decoded the \
             stream's actions payload as (g2) does for 100 ms, then two threads at once, then \
             one again; the two did {factor:.2}× the work of one (median; min {min:.2}×, max \
             {max:.2}×). Were (a)'s work split perfectly over two such cores, it would reach \
             (two-core factor) × ((g2)'s CPU per event ÷ (a)'s, median over the pairs: \
             {cpu_ratio:.2}) = {:.2}× of (g2); the rest of the gap is work not shared evenly \
             between (a)'s threads and the blaster's share of the same cores.",
            two_core.len(),
            factor * cpu_ratio,
        );
    }
    let _ = writeln!(
        section,
        "{}",
        check("(c) vs (d)", c.zip(d).map(|(c, d)| c / d), 5.0)
    );
    let _ = writeln!(
        section,
        "{}",
        check(
            "(c-block), no drops, vs (d)",
            c_block.zip(d).map(|(c, d)| c / d),
            5.0
        )
    );
    let _ = writeln!(
        section,
        "{}",
        check(
            "(c-async) vs (d-async), both `AsyncConnectorClient` with an async counting callback",
            c_async.zip(d_async).map(|(c, d)| c / d),
            10.0
        )
    );
    if let Some(r) = rows
        .iter()
        .find(|r| r.letter == "c-async" && !r.rates.is_empty())
    {
        let (dropped, _, hi) = median_min_max(&r.dropped);
        let _ = writeln!(
            section,
            "- (c-async) drops at the default queue size with an async counting callback: median {}, max {} per run (target: none): **{}**",
            thousands(dropped),
            thousands(hi),
            if hi == 0.0 { "met" } else { "missed" }
        );
    }
    if let Some(r) = rows.iter().find(|r| r.letter == "c" && !r.rates.is_empty()) {
        let (dropped, _, hi) = median_min_max(&r.dropped);
        let _ = writeln!(
            section,
            "- (c) drops at the default queue size with a counting callback: median {}, max {} per run (target: none): **{}**",
            thousands(dropped),
            thousands(hi),
            if hi == 0.0 { "met" } else { "missed" }
        );
    }
    if rows.iter().any(|r| r.letter == "c" && !r.rates.is_empty()) {
        section.push_str(
            "- About (c): its events/s counts only payloads the Python callback received. The \
             Rust reader decodes far faster than a Python callback is called, so at the default \
             `max_queue_size=500` with the default drop-newest policy the queue can overflow and \
             events are dropped (last column). The (c-block) row is the same package with back-pressure \
             instead: nothing dropped, every one of the events reaches the callback, and the \
             reader waits for it.\n",
        );
    }
    if let Some(r) = rows.iter().find(|r| r.letter == "d" && !r.rates.is_empty()) {
        let (dropped, lo, hi) = median_min_max(&r.dropped);
        let _ = writeln!(
            section,
            "- The published SDK dropped {} events per run (median; min {}, max {}) out of {} \
             with a callback that only counts, at its default `max_queue_size=500`.",
            thousands(dropped),
            thousands(lo),
            thousands(hi),
            thousands(n as f64)
        );
    }
    section.push('\n');

    // Idle RSS of our clients, each alone in a program of its own.
    section.push_str(
        "### Idle client RSS\n\nOne client in a program that runs nothing else, with the system \
         allocator (`autoplay-idle-client`, `crates/autoplay-bench/src/bin/idle_client.rs`), \
         connected to a stream that sends one heartbeat and then nothing; `VmRSS` after 2 s.\n\n\
         | client | RSS MiB | peak MiB |\n|---|---:|---:|\n",
    );
    let mut idle_rss = Vec::new();
    for (kind, label) in [
        ("blocking", "(a) `ConnectorClient`"),
        ("async", "(b) `AsyncConnectorClient` (2 tokio workers)"),
    ] {
        match idle_client_memory(kind, &format!("{url}/idle")) {
            Some((rss_kib, hwm_kib)) => {
                idle_rss.push(rss_kib);
                let _ = writeln!(section, "| {label} | {} | {} |", mib(rss_kib), mib(hwm_kib));
            }
            None => {
                let _ = writeln!(section, "| {label} | failed | |");
            }
        }
    }
    let _ = writeln!(
        section,
        "\nTarget: idle Rust client RSS < 10 MiB: **{}**. (mimalloc, which the Python \
         extension uses, reserves per-thread heaps: the same idle client measured inside this \
         benchmark binary, which uses mimalloc, takes about 8 MiB more.)\n",
        if idle_rss.len() == 2 && idle_rss.iter().all(|&k| k > 0 && k < 10 * 1024) {
            "met"
        } else {
            "missed"
        },
    );
    section.push_str(
        "Where (a)'s time goes (2026-12-02, after the direct decoder; `docs/performance.md`, \
         third pass): instruction counts, which the VM's noise does not touch (`valgrind \
         --tool=callgrind`, whole process, 20,000 payloads against one `autoplay-bench blast`, \
         system allocator): (a) 291 M, (b) 305 M, (g2) 415 M, so (a) runs on 0.70× (g2)'s \
         instructions (1.13× before the direct decoder). By thread: the callback thread 220 M, \
         of which the direct decoder is about two thirds, the reader 75 M (SSE parsing, the \
         HTTP stack). A payload the direct decoder declines (whitespace, `\\u` escapes, unknown \
         or repeated keys, numeric ids) is decoded by serde_json from the start, at the older \
         cost. CPU time per event (table) is a larger multiple of the instruction count than \
         for (g2), because what the reader allocates and writes the callback thread reads and \
         frees on the other core, and the blaster, in the parent process, needs a share of the \
         same two cores, which (g2), on one core, leaves free. The callback thread takes \
         events from the queue in batches (up to 32 per lock). A SIMD JSON decoder was no way \
         out for these payloads: `sonic-rs` 0.5 decoding the canonical fixture into the same \
         serde structs on one core ran at 301k–359k/s against serde_json's 351k–407k/s, with \
         or without `-C target-cpu=native`.\n\n",
    );
    section.push_str(
        "The allocator column: every Rust consumer runs twice, in two child binaries built from \
         the same code (`crates/autoplay-bench/src/consume.rs`) that differ only in the global \
         allocator: `autoplay-consume` sets none, so it runs on the system allocator (glibc \
         malloc here), what a Rust program gets unless it chooses; `autoplay-consume-mimalloc` \
         sets `#[global_allocator] mimalloc` (rows with `-mi`). The Python rows run in CPython, \
         whose objects use pymalloc; our extension sets mimalloc for its Rust core.\n",
    );
    section
}

impl Consumer {
    /// Its command, built anew (a `Command` cannot be cloned or run twice).
    fn fresh_command(&self) -> Command {
        let mut c = Command::new(self.command.get_program());
        c.args(self.command.get_args());
        c
    }
}

/// (a) against (g2), measured back to back.
#[derive(Default)]
struct Pairs {
    /// (a)'s events/s over (g2)'s, per pair.
    ratios: Vec<f64>,
    /// (g2)'s CPU per event over (a)'s, per pair.
    cpu_ratios: Vec<f64>,
}

/// Runs (a) and (g2) back to back `4 × runs()` times, alternating which goes first.
fn paired_a_and_g2(consumers: &[Consumer]) -> Pairs {
    let find = |letter: &str| consumers.iter().find(|c| c.letter == letter);
    let (Some(a), Some(g2)) = (find("a"), find("g2")) else {
        return Pairs::default();
    };
    let mut pairs = Pairs::default();
    let run = |c: &Consumer| run_child(c.fresh_command(), Duration::from_secs(300));
    for pair in 0..4 * runs() {
        let (oa, og2) = if pair % 2 == 0 {
            let oa = run(a);
            (oa, run(g2))
        } else {
            let og2 = run(g2);
            (run(a), og2)
        };
        let (Some(oa), Some(og2)) = (oa, og2) else {
            continue;
        };
        if oa.events == 0 || og2.events == 0 {
            continue;
        }
        let ratio = oa.rate() / og2.rate();
        eprintln!(
            "pair {}: (a) {} events/s, (g2) {} events/s, ratio {ratio:.2}",
            pair + 1,
            thousands(oa.rate()),
            thousands(og2.rate()),
        );
        pairs.ratios.push(ratio);
        if oa.cpu_secs > 0.0 && og2.cpu_secs > 0.0 {
            pairs
                .cpu_ratios
                .push(og2.cpu_us_per_event() / oa.cpu_us_per_event());
        }
    }
    pairs
}

/// How much decoding work two threads do together compared with one thread alone,
/// `n` times: one thread for 100 ms, two at once, one again (2.0 when the machine's
/// two cores are truly independent).
fn two_core_factors(sample: &str, n: usize) -> Vec<f64> {
    let span = Duration::from_millis(100);
    (0..n)
        .map(|_| {
            let alone_before = decode_work(sample, span, 1);
            let together = decode_work(sample, span, 2);
            let alone_after = decode_work(sample, span, 1);
            2.0 * together as f64 / (alone_before + alone_after).max(1) as f64
        })
        .collect()
}

/// The data line of the stream's first `actions` event.
fn sample_actions_data(body: &[u8]) -> &str {
    let text = std::str::from_utf8(body).expect("the stream is UTF-8");
    let at = text
        .find("event: actions\ndata: ")
        .expect("the stream has actions events")
        + "event: actions\ndata: ".len();
    let len = text[at..].find('\n').expect("a data line ends");
    &text[at..at + len]
}

/// How many times `threads` threads together decode `data` as (g2) does, in `span`.
fn decode_work(data: &str, span: Duration, threads: usize) -> u64 {
    let decode_for = || {
        let end = Instant::now() + span;
        let mut done = 0u64;
        while Instant::now() < end {
            for _ in 0..32 {
                crate::model::decode("actions", data);
            }
            done += 32;
        }
        done
    };
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..threads).map(|_| scope.spawn(decode_for)).collect();
        decode_for()
            + others
                .into_iter()
                .map(|t| t.join().expect("decoding thread"))
                .sum::<u64>()
    })
}

/// Starts `autoplay-idle-client <kind> <url>`, waits 2 s, and returns its
/// (`VmRSS`, `VmHWM`) in KiB.
fn idle_client_memory(kind: &str, url: &str) -> Option<(u64, u64)> {
    let exe = crate::binaries::built("autoplay-bench", "autoplay-idle-client")?;
    let mut child = Command::new(&exe)
        .args([kind, url])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| eprintln!("  {}: {e}", exe.display()))
        .ok()?;
    std::thread::sleep(Duration::from_secs(2));
    let alive = child.try_wait().ok().flatten().is_none();
    let memory = crate::connector::proc_memory_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    alive.then_some(memory)
}
