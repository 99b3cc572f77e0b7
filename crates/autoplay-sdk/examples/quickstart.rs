//! Quickstart: print every actions batch as embedding-ready text.
//!
//! ```sh
//! cargo run --example quickstart -- http://127.0.0.1:8080/stream/demo <token>
//! ```

use autoplay_sdk::ConnectorClient;

fn main() -> Result<(), autoplay_sdk::Error> {
    tracing_subscriber::fmt()
        .with_env_filter("autoplay_sdk=info")
        .init();
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8080/stream/demo".into());
    let token = args.next().unwrap_or_default(); // empty: falls back to AUTOPLAY_TOKEN

    // run() blocks and reconnects through any failure; 401/403/404 end it with an error.
    ConnectorClient::builder(url)
        .token(token)
        .on_actions(|payload| println!("{}\n", payload.to_text()))
        .on_summary(|summary| println!("[summary] {}\n", summary.to_text()))
        .run()
}
