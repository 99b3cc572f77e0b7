//! An application that runs nothing but one idle Autoplay client, with the system
//! allocator, as a Rust user's program would: what the idle-RSS target is about.
//! `autoplay-bench` spawns it against a stream that sends one heartbeat, waits, and
//! reads its `/proc/<pid>/status`. (The benchmark binary itself links every peer
//! client and uses mimalloc, whose per-thread heaps alone add ~8 MiB.)
//!
//! `autoplay-idle-client blocking|async <url>`; runs until killed.

use autoplay_sdk::{AsyncConnectorClient, ConnectorClient};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, url] = args.as_slice() else {
        eprintln!("usage: autoplay-idle-client blocking|async <url>");
        std::process::exit(2);
    };
    match kind.as_str() {
        "blocking" => {
            let _client = ConnectorClient::builder(url)
                .on_actions(|_| {})
                .run_in_background()
                .expect("start the blocking client");
            loop {
                std::thread::park();
            }
        }
        "async" => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            let client = AsyncConnectorClient::builder(url)
                .on_actions(|_| std::future::ready(()))
                .build()
                .expect("build the async client");
            let _ = runtime.block_on(client.run());
        }
        other => {
            eprintln!("unknown client {other:?}: blocking or async");
            std::process::exit(2);
        }
    }
}
