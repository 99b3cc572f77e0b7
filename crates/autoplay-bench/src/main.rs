//! `autoplay-bench`: the Autoplay SDK and connector measured side by side with
//! peers and the limits, in one run, writing `docs/benchmarks.md`.
//!
//! ```sh
//! cargo run --release -p autoplay-bench -- all
//! cargo run --release -p autoplay-bench -- throughput|parser|latency|slow|fanout|store|cluster
//! cargo run --release -p autoplay-bench -- store memory file:///tmp/autoplay-store
//! cargo run --release -p autoplay-bench --features embedded-dbs -- embedded-dbs
//! ```
//!
//! Every invocation rewrites the sections of `docs/benchmarks.md` of the parts
//! it ran and keeps the others; `store STORE...` only prints its table.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod binaries;
mod blaster;
mod cluster;
mod connector;
// Only `Outcome` is used here: the consumers run in the `autoplay-consume` binaries.
#[allow(dead_code)]
mod consume;
#[cfg(feature = "embedded-dbs")]
mod embedded_dbs;
mod model;
mod parsers;
mod parts;
mod python;
mod redis_server;
mod report;
mod store;
#[path = "../../autoplay-sdk/benches/support/stream.rs"]
mod stream;
mod throughput;

const PARTS: &[(&str, &str)] = &[
    ("throughput", "1. Client throughput"),
    ("latency", "2. Latency"),
    ("slow", "3. Slow callbacks"),
    ("fanout", "4. Connector fan-out and ingest"),
    ("parser", "5. Parser"),
    ("store", "6. Stores"),
    ("cluster", "7. Cluster"),
];

fn workspace_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

fn usage() -> ! {
    eprintln!(
        "usage: autoplay-bench all | throughput | parser | latency | slow | fanout | store | cluster\n\
         \x20      autoplay-bench store STORE... | embedded-dbs\n\
         (a part rewrites its section of docs/benchmarks.md; `store STORE...` prints a table)"
    );
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else { usage() };
    match command.as_str() {
        // Hidden: serve the benchmark stream until killed (for profiling a consumer:
        // `perf record -g autoplay-consume blocking <url> 100000`).
        "blast" => {
            println!("{}", blaster::start(stream::stream_body()));
            loop {
                std::thread::park();
            }
        }
        // Hidden: one of our clients subscribed to a connector.
        "sub" => {
            let [_, kind, mode, url, n] = args.as_slice() else {
                usage()
            };
            let n: u64 = n.parse().unwrap_or_else(|_| usage());
            connector::sub(kind, mode, url, n);
        }
        // Hidden: one process's share of part 7's subscribers.
        "fan-sub" => cluster::subscribers_child(&args[1..]),
        // Ingest and replay of the stores named, printed (not written to
        // docs/benchmarks.md); without names, part 6 below.
        "store" if args.len() > 1 => println!("{}", store::table(&args[1..])),
        // The embedded store's candidates on our frames, printed.
        #[cfg(feature = "embedded-dbs")]
        "embedded-dbs" => {
            let work = workspace_root().join("target/autoplay-bench");
            std::fs::create_dir_all(&work).expect("create target/autoplay-bench");
            println!("{}", embedded_dbs::run(&work));
        }
        #[cfg(not(feature = "embedded-dbs"))]
        "embedded-dbs" => {
            eprintln!(
                "embedded-dbs needs the feature: cargo run --release -p autoplay-bench \
                 --features embedded-dbs -- embedded-dbs"
            );
            std::process::exit(2);
        }
        "all" => write_report(&PARTS.iter().map(|p| p.0).collect::<Vec<_>>(), "all"),
        part if PARTS.iter().any(|p| p.0 == part) => write_report(&[part], part),
        _ => usage(),
    }
}

/// The command that writes a section, as the report quotes it.
fn command_line(arg: &str) -> String {
    if cfg!(debug_assertions) {
        format!("cargo run -p autoplay-bench -- {arg}")
    } else {
        format!("cargo run --release -p autoplay-bench -- {arg}")
    }
}

/// Runs `parts` and rewrites their sections of `docs/benchmarks.md`, keeping
/// every other section as the file has it (each says which run produced it).
/// The file is written after every part, so a later part's failure keeps the
/// earlier ones' figures.
fn write_report(parts: &[&str], arg: &str) {
    let root = workspace_root();
    let work = root.join("target/autoplay-bench");
    std::fs::create_dir_all(&work).expect("create target/autoplay-bench");
    let path = root.join("docs/benchmarks.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let old_sections = report::sections(&old);
    let invocation_started = report::now_utc();
    let commit = report::git_commit(&root);
    let mut fresh: Vec<(&str, report::Section)> = Vec::new();
    for (name, title) in PARTS {
        if !parts.contains(name) {
            continue;
        }
        eprintln!("== {title}");
        let started_at = report::now_utc();
        let load_before = report::loadavg();
        let clock = Instant::now();
        let mut notes = Vec::new();
        let body = match *name {
            "throughput" => throughput::run(&root, &work, &mut notes),
            "parser" => parser_section(),
            "latency" => parts::latency(&root, &work),
            "slow" => parts::slow(&root, &work),
            "fanout" => parts::fanout(),
            "store" => store::section(),
            "cluster" => cluster::section(),
            _ => "Not implemented yet.\n".to_string(),
        };
        let mut text = format!(
            "_Generated by `{}`{} at commit `{commit}`, started {started_at}, took {:.0} s, on {} × {}; \
             load average (1, 5, 15 min) {load_before} at the start, {} at the end._\n\n",
            command_line(arg),
            if cfg!(debug_assertions) {
                " (a debug build: not figures to keep)"
            } else {
                ""
            },
            clock.elapsed().as_secs_f64(),
            report::nproc(),
            report::cpu_model(),
            report::loadavg(),
        );
        for note in &notes {
            let _ = writeln!(text, "- {note}");
        }
        if !notes.is_empty() {
            text.push('\n');
        }
        text.push_str(&body);
        fresh.push((
            *name,
            report::Section {
                title: (*title).to_owned(),
                body: text,
            },
        ));
        write_document(
            &root,
            &path,
            arg,
            &invocation_started,
            &old_sections,
            &fresh,
        );
    }
}

/// The document: a header with this invocation's machine and versions, every
/// part's section (fresh, or kept from `old`), then `old`'s other sections.
fn write_document(
    root: &std::path::Path,
    path: &std::path::Path,
    arg: &str,
    started_at: &str,
    old: &[report::Section],
    fresh: &[(&str, report::Section)],
) {
    let mut header = String::new();
    let _ = writeln!(
        header,
        "# Benchmarks\n\n<!-- Generated by `autoplay-bench`: each section by the command its first line names; do not edit by hand. -->\n"
    );
    let _ = writeln!(
        header,
        "Each section below starts with the command that produced it, the commit, when it \
         started, how long it took, the CPU and the load average: a run of one part rewrites \
         only that part's section and keeps the others as they were. All figures come from \
         127.0.0.1; the VM is shared and noisy (±15% between runs is common, see \
         `docs/performance.md`), so compare within a section, not across sections.\n"
    );
    header.push_str(
        "How to run: `cargo run --release -p autoplay-bench -- all` (every section; 6–12 \
         minutes here), or one part: `throughput`, `latency`, `slow`, `fanout`, `parser`, \
         `store`, `cluster`. Needs `python3` with `venv`/`pip` and access to PyPI for the \
         published SDK (installed once into `target/autoplay-bench/venv-published`); our Python \
         package is measured when `crates/autoplay-python` has left a wheel in `target/wheels`; \
         parts 6 and 7 start their own `redis-server` (Debian package `redis-server`, or \
         `$REDIS_SERVER`). `AUTOPLAY_BENCH_RUNS=n` changes the runs per throughput consumer \
         (default 5) and the rounds of part 6 (default 3). The criterion version of part 5 is `cargo bench -p autoplay-bench --bench \
         parsers`. Nothing here runs under `cargo test`.\n\n",
    );
    let mut machine = String::new();
    let _ = writeln!(
        machine,
        "Of the latest invocation (`{}`, started {started_at}); each section names its own CPU \
         and load.\n",
        command_line(arg)
    );
    let _ = writeln!(
        machine,
        "- CPU: {} × {} (`nproc` = {})",
        report::nproc(),
        report::cpu_model(),
        report::nproc()
    );
    let _ = writeln!(machine, "- Kernel: {}", report::kernel());
    let _ = writeln!(machine, "- {}", report::rustc_version());
    let _ = writeln!(
        machine,
        "- Release profile; global allocator: mimalloc in the bench binary; the connector (the \
         `autoplay` CLI) on the system allocator; part 1 names each consumer's in its row"
    );
    let versions = report::crate_versions(
        root,
        &[
            "autoplay-sdk",
            "autoplay-connector",
            "reqwest-eventsource",
            "eventsource-client",
            "eventsource-stream",
            "reqwest",
            "hyper",
            "tokio",
            "serde_json",
            "mimalloc",
            "redb",
            "redis",
        ],
    );
    let _ = writeln!(
        machine,
        "- Crates (Cargo.lock): {}",
        versions
            .iter()
            .map(|(n, v)| format!("{n} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let machine = report::Section {
        title: MACHINE.to_owned(),
        body: machine,
    };
    let titles: Vec<&str> = PARTS.iter().map(|p| p.1).collect();
    let fresh: Vec<report::Section> = fresh.iter().map(|(_, s)| s.clone()).collect();
    let (sections, others) = report::merge(machine, &titles, &fresh, old, |title| {
        let name = PARTS.iter().find(|p| p.1 == title).map_or("all", |p| p.0);
        format!(
            "Not run yet: `{}` writes this section.\n",
            command_line(name)
        )
    });
    let doc = report::assemble(&header, &sections, &others);
    std::fs::write(path, doc).expect("write docs/benchmarks.md");
    eprintln!("wrote {}", path.display());
}

/// The header's section of machine facts and versions.
const MACHINE: &str = "Machine and versions";

/// Part 5 in the main command: a repeated timing loop over the same bytes.
fn parser_section() -> String {
    const ITERS: usize = 15;
    let body = stream::stream_body();
    let frames = stream::EVENTS + stream::EVENTS / 1000;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Both parsers read the benchmark stream ({:.1} MiB, {} frames) from memory in 16 KiB \
         chunks and hand out owned events; median of {ITERS} timed passes after 2 warm-up passes, \
         one thread. `eventsource-stream` is polled directly (no runtime). The criterion version is \
         `cargo bench -p autoplay-bench --bench parsers`.\n",
        body.len() as f64 / (1024.0 * 1024.0),
        report::thousands(frames as f64)
    );
    out.push_str(
        "| parser | MiB/s median | min | max | events/s median |\n|---|---:|---:|---:|---:|\n",
    );
    let mut medians = Vec::new();
    type Parse = fn(&[u8]) -> u64;
    let parsers: [(&str, Parse); 2] = [
        ("`autoplay_sdk::sse::SseParser` (ours)", parsers::ours),
        ("`eventsource-stream`", parsers::eventsource_stream),
    ];
    for (label, parse) in parsers {
        for _ in 0..2 {
            assert_eq!(parse(&body), frames);
        }
        let mut secs = Vec::new();
        for _ in 0..ITERS {
            let t = Instant::now();
            std::hint::black_box(parse(&body));
            secs.push(t.elapsed().as_secs_f64());
        }
        let rates: Vec<f64> = secs
            .iter()
            .map(|s| body.len() as f64 / (1024.0 * 1024.0) / s)
            .collect();
        let (med, min, max) = report::median_min_max(&rates);
        let (med_s, _, _) = report::median_min_max(&secs);
        medians.push(med);
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} |",
            report::thousands(med),
            report::thousands(min),
            report::thousands(max),
            report::thousands(frames as f64 / med_s)
        );
    }
    let _ = writeln!(
        out,
        "\nOurs is {:.1}× `eventsource-stream` on these bytes.",
        medians[0] / medians[1]
    );
    out
}
