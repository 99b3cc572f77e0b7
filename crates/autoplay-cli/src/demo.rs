//! `autoplay demo`: a connector on a free loopback port, simulated PostHog traffic
//! into it, and the async client printing what comes out. Works offline.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use autoplay_connector::config::random_key;
use autoplay_connector::{Connector, ConnectorConfig, ProductConfig, Secret, sign_webhook};
use autoplay_sdk::{AsyncConnectorClient, Event, OverflowPolicy};
use tokio::sync::Notify;
use tracing::warn;

use crate::CliError;
use crate::cli::DemoArgs;
use crate::listen::print_stream;
use crate::output;
use crate::signal::Shutdown;
use crate::traffic::User;

const PRODUCT: &str = "demo";

pub async fn run(args: DemoArgs, mut shutdown: Shutdown) -> Result<(), CliError> {
    let api_key = random_key("ak_demo_");
    let webhook_secret = random_key("whsec_demo_");
    let product = ProductConfig::new(PRODUCT)
        .with_api_key(api_key.expose())
        .map_err(CliError::failure)?
        .with_webhook_secret(webhook_secret.clone());
    let mut config = ConnectorConfig {
        listen: args.listen,
        summary_threshold: args.summary_threshold,
        ..ConnectorConfig::default()
    }
    .with_product(product);
    // AUTOPLAY_LLM_* opt into LLM summaries; without them (or offline) the embedded
    // summariser writes them.
    config.apply_llm_env();
    let connector = Connector::bind(config).await.map_err(|e| {
        CliError::failure(format!(
            "cannot start the demo connector on {}: {e}",
            args.listen
        ))
    })?;
    let stream_url = connector.stream_url(PRODUCT);
    let webhook_url = connector.webhook_url(PRODUCT);
    let ui_url = connector.ui_url();
    let server_stop = connector.shutdown_handle();
    let server = tokio::spawn(connector.serve());

    output::status(format_args!(
        "demo connector on {stream_url}; {} simulated users posting PostHog webhooks to \
         {webhook_url}; summaries every {} actions. Ctrl-C to stop.",
        args.users, args.summary_threshold
    ));
    // A demo nobody else can attach to shows only half the system: say how.
    output::status(format_args!(
        "to attach another client (a second terminal, a program):\n  \
         stream:  {stream_url}\n  \
         key:     {api_key}\n  \
         webhook: {webhook_url} (secret {secret})\n  \
         shell:   AUTOPLAY_TOKEN={api_key} autoplay listen {stream_url}\n  \
         Python:  ConnectorClient(url=\"{stream_url}\", token=\"{api_key}\")\n  \
         browser: {ui_url} (product {PRODUCT}, paste the key)",
        api_key = api_key.expose(),
        secret = webhook_secret.expose(),
    ));

    let connected = Arc::new(Notify::new());
    let on_connect = connected.clone();
    let client = AsyncConnectorClient::builder(stream_url)
        .token(api_key.expose())
        .overflow_policy(OverflowPolicy::Block)
        .initial_backoff(Duration::from_millis(100))
        .max_backoff(Duration::from_secs(2))
        .on_connect(move |_| on_connect.notify_one())
        .build()?;
    let events = client.events();

    let generator = tokio::spawn(generate(
        webhook_url,
        webhook_secret,
        args.users as usize,
        args.sessions.map(|n| n as usize),
        connected,
    ));
    let result = print_stream(events, args.max_events, &mut shutdown, render).await;

    generator.abort();
    client.stop();
    server_stop.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    result
}

/// A payload's text, under a one-line heading saying who and what.
fn render(event: &Event, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = match event {
        Event::Actions(p) => {
            let who = p
                .email
                .as_deref()
                .or(p.user_id.as_deref())
                .unwrap_or("anonymous");
            write!(out, "[actions] {who}\n{}\n\n", p.to_text())
        }
        Event::Summary(p) => write!(
            out,
            "[summary] session {}, {} actions\n{}\n\n",
            p.session_id.as_deref().unwrap_or("unknown"),
            p.replaces,
            p.to_text()
        ),
    };
}

/// Once the listener is connected, every user posts a batch at once, then one every
/// 0.4–1.2 s; with `sessions`, each user stops after that many.
async fn generate(
    url: String,
    secret: Secret,
    users: usize,
    sessions: Option<usize>,
    connected: Arc<Notify>,
) {
    connected.notified().await;
    let http = reqwest::Client::new();
    let seed = fastrand::u64(..);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..users {
        let (http, url, secret) = (http.clone(), url.clone(), secret.clone());
        let mut user = User::new(n, seed.wrapping_add(n as u64));
        let mut rng = fastrand::Rng::with_seed(seed ^ (n as u64).rotate_left(17));
        tasks.spawn(async move {
            // Stagger the first posts a little so the sessions interleave.
            tokio::time::sleep(Duration::from_millis(60 * n as u64)).await;
            let mut posted = 0_u64;
            loop {
                let events = user.next_batch(SystemTime::now());
                // PostHog sends arrays and `{"batch": [...]}`; use both.
                let body = if n % 2 == 0 {
                    serde_json::json!(events)
                } else {
                    serde_json::json!({ "batch": events })
                };
                let body = serde_json::to_vec(&body).expect("JSON values always serialise");
                let signature = sign_webhook(secret.expose(), &body);
                match http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-posthog-signature", signature)
                    .body(body)
                    .send()
                    .await
                {
                    Ok(response) if response.status().is_success() => posted += 1,
                    Ok(response) => {
                        warn!(status = %response.status(), "the connector refused a webhook")
                    }
                    Err(e) => warn!(error = %e, "could not post a webhook"),
                }
                if sessions
                    .is_some_and(|limit| user.session_done() && user.sessions_started() >= limit)
                {
                    return posted;
                }
                tokio::time::sleep(Duration::from_millis(rng.u64(400..1200))).await;
            }
        });
    }
    let mut posted = 0;
    while let Some(done) = tasks.join_next().await {
        posted += done.unwrap_or(0);
    }
    if let Some(limit) = sessions {
        // Said once, so a script (examples/rag) knows the traffic is complete.
        output::status(format_args!(
            "the simulated users are done: {} sessions, {posted} webhooks accepted; \
             the connector keeps serving (replay included) until Ctrl-C",
            users * limit
        ));
    }
}
