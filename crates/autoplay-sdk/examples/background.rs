//! Background usage: the client runs on its own threads while the application goes
//! on; dropping the handle stops it (the Rust form of the published context manager).
//!
//! ```sh
//! cargo run --example background -- http://127.0.0.1:8080/stream/demo <token>
//! ```

use std::time::Duration;

use autoplay_sdk::{ActionsPayload, ConnectorClient};

fn on_actions(payload: ActionsPayload) {
    println!(
        "session {:?}: {} actions",
        payload.session_id,
        payload.count()
    );
    for action in &payload.actions {
        println!("  {} — {}", action.title, action.canonical_url);
    }
}

fn main() -> Result<(), autoplay_sdk::Error> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8080/stream/demo".into());
    let token = args.next().unwrap_or_default();

    let client = ConnectorClient::builder(url)
        .token(token)
        .on_actions(on_actions)
        .run_in_background()?;

    // The application continues here.
    std::thread::sleep(Duration::from_secs(60));

    println!("dropped so far: {}", client.dropped_count());
    client.stop();
    client.join()
}
