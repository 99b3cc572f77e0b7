//! The real connector with a fixed product and key, for the Python test-suite:
//! restarting it on the same address keeps the URL and the key valid.
//!
//! ```text
//! cargo run -p autoplay-python --example test_connector -- 127.0.0.1:0 test ak_test 5 1
//! ```
//! Arguments: listen address, product id, API key, summary threshold (0 = off),
//! heartbeat seconds. Prints `stream:`, `events:` and `key:` lines, then serves until
//! Ctrl-C or SIGTERM.

use std::time::Duration;

use autoplay_connector::{Connector, ConnectorConfig, parse_product_spec, shutdown_signal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_owned());
    let product = arg(1, "test");
    let key = arg(2, "ak_test");
    let mut config = ConnectorConfig {
        listen: arg(0, "127.0.0.1:0").parse()?,
        summary_threshold: arg(3, "0").parse()?,
        heartbeat_interval: Duration::from_secs_f64(arg(4, "1").parse()?),
        ..ConnectorConfig::default()
    };
    config
        .products
        .push(parse_product_spec(&format!("{product}:{key}"))?);
    let connector = Connector::bind(config).await?;
    let stream = connector.stream_url(&product);
    println!("stream:  {stream}");
    println!("webhook: {}", connector.webhook_url(&product));
    println!("events:  {}", stream.replace("/stream/", "/events/"));
    println!("key:     {key}");
    connector.serve_with_shutdown(shutdown_signal()).await?;
    Ok(())
}
