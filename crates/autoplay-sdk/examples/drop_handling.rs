//! Drop handling: a slow callback behind a small queue. Each dropped event is
//! reported with the running total; `workers(n)` or `OverflowPolicy::Block` are the
//! ways not to drop at all.
//!
//! ```sh
//! cargo run --example drop_handling -- http://127.0.0.1:8080/stream/demo <token>
//! ```

use std::time::Duration;

use autoplay_sdk::{ConnectorClient, Event};

fn main() -> Result<(), autoplay_sdk::Error> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8080/stream/demo".into());
    let token = args.next().unwrap_or_default();

    let client = ConnectorClient::builder(url)
        .token(token)
        .max_queue_size(1000)
        .on_actions(|payload| {
            std::thread::sleep(Duration::from_millis(50)); // a slow embedding call
            println!("{}", payload.to_text());
        })
        .on_drop(|event: &Event, total_dropped| {
            eprintln!(
                "WARNING: dropped event (type={}, total={total_dropped})",
                event.kind()
            );
        })
        .build()?;

    let background = client.run_in_background()?;
    loop {
        std::thread::sleep(Duration::from_secs(5));
        println!(
            "dropped so far: {}, waiting in the queue: {}",
            client.dropped_count(),
            client.queue_size()
        );
        if background.is_finished() {
            return background.join();
        }
    }
}
