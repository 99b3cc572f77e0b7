//! Runs a connector on 127.0.0.1:8080 (or the address given as the first
//! argument) with a `demo` product, until Ctrl-C.
//!
//! ```text
//! cargo run -p autoplay-connector --example connector -- 127.0.0.1:0
//! ```

use autoplay_connector::{Connector, ConnectorConfig, shutdown_signal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut config = ConnectorConfig::default();
    if let Some(listen) = std::env::args().nth(1) {
        config.listen = listen.parse()?;
    }
    config.apply_llm_env();
    let demo = config.ensure_default_product();
    let connector = Connector::bind(config).await?;
    if let Some(demo) = demo {
        println!("stream:  {}", connector.stream_url(&demo.id));
        println!("webhook: {}", connector.webhook_url(&demo.id));
        println!("key:     {}", demo.api_key.expose());
    }
    connector.serve_with_shutdown(shutdown_signal()).await?;
    Ok(())
}
