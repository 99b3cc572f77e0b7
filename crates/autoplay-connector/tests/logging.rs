//! What the connector logs: subscribers and refusals at INFO, and never a key
//! or a secret, even at trace level and on failures.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use autoplay_connector::{LlmConfig, Secret, sign_webhook};
use common::*;
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Every test's logs, in one process-wide subscriber (there can be only one):
/// each test tells its lines apart by its own product ids.
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        logs
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs() {
    let logs = logs();

    let mut config = config();
    config.summary_threshold = 1;
    // An LLM that refuses connections: the failure path gets logged.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let mut llm = LlmConfig::new(dead_url, "m");
    llm.api_key = Some(Secret::new("sk-llm-secret"));
    config.llm = Some(llm);
    tracing::info!(config = ?config, "starting");
    let server = Server::start(config).await;

    let client = reqwest::Client::new();
    for key in [ACME_KEY, BETA_KEY, "ak_wrong_guess"] {
        let _ = client
            .get(server.url("/stream/acme"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
    }
    let body = fixture("capture-pageview");
    for signature in [
        sign_webhook(ACME_SECRET, body.as_bytes()),
        sign_webhook("whsec_wrong", body.as_bytes()),
    ] {
        client
            .post(server.url("/webhook/acme"))
            .header("x-posthog-signature", signature)
            .body(body.clone())
            .send()
            .await
            .unwrap();
    }
    let mut sse = server.stream("acme", ACME_KEY, Some(0)).await;
    server
        .post_events(
            "acme",
            &json!({"session_id": "s", "actions": [{"type": "click", "title": "x"}]}),
        )
        .await;
    // Wait for the (failed, then embedded) summary so its log lines are written.
    while sse.next_event(WAIT).await.expect("summary").event != "summary" {}
    assert!(server.metric("autoplay_llm_failures_total").await >= 1.0);
    server.shutdown.shutdown();
    let _ = tokio::time::timeout(WAIT, server.task).await;

    let text = logs.text();
    assert!(text.contains("connector bound"), "{text}");
    assert!(text.contains("LLM summary failed"), "{text}");
    assert!(text.contains("<redacted>"), "{text}");
    for secret in [
        ACME_KEY,
        BETA_KEY,
        ACME_SECRET,
        "ak_wrong_guess",
        "whsec_wrong",
        "sk-llm-secret",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} appears in the logs:\n{text}"
        );
    }
}

/// The INFO lines of `product`'s that contain `message`.
fn info_lines(text: &str, product: &str, message: &str) -> Vec<String> {
    let product = format!("product_id=\"{product}\"");
    text.lines()
        .filter(|line| line.contains(" INFO ") && line.contains(&product) && line.contains(message))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_and_refusals_are_logged_at_info() {
    const KEY: &str = "ak_gamma_logged";
    let logs = logs();
    let config = config().with_product(
        autoplay_connector::ProductConfig::new("gamma")
            .with_api_key(KEY)
            .unwrap()
            .with_ingest_by_api_keys(),
    );
    let server = Server::start(config).await;
    let client = reqwest::Client::new();
    let status = |request: reqwest::RequestBuilder| async move {
        request.send().await.unwrap().status().as_u16()
    };
    let gamma = server.url("/stream/gamma");
    assert_eq!(
        status(client.get(server.url("/stream/gamma-nope"))).await,
        404
    );
    assert_eq!(status(client.get(&gamma)).await, 401);
    assert_eq!(
        status(client.get(&gamma).bearer_auth("ak_gamma_wrong")).await,
        401
    );
    assert_eq!(status(client.get(&gamma).bearer_auth(ACME_KEY)).await, 403);

    let ingested = client
        .post(server.url("/events/gamma"))
        .bearer_auth(KEY)
        .json(&json!({"session_id": "s", "actions": [{"type": "click", "title": "x"}]}))
        .send()
        .await
        .unwrap();
    assert!(ingested.status().is_success(), "{}", ingested.status());
    let mut sse = server.stream("gamma", KEY, Some(0)).await;
    assert!(sse.next_event(WAIT).await.is_some());
    drop(sse);

    // The subscriber's leaving is logged when the server notices the closed socket.
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let text = logs.text();
        if !info_lines(&text, "gamma", "subscriber left").is_empty() || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    server.shutdown.shutdown();

    for (product, message) in [
        ("gamma-nope", "stream request refused: unknown product"),
        ("gamma", "stream request refused: no API key"),
        ("gamma", "stream request refused: wrong API key"),
        (
            "gamma",
            "stream request refused: the API key belongs to another product",
        ),
    ] {
        assert_eq!(
            info_lines(&text, product, message).len(),
            1,
            "{message}:\n{text}"
        );
    }
    let connected = info_lines(&text, "gamma", "subscriber connected");
    assert_eq!(connected.len(), 1, "{text}");
    assert!(connected[0].contains("last_event_id=0"), "{}", connected[0]);
    assert!(connected[0].contains("replayed=1"), "{}", connected[0]);
    let left = info_lines(&text, "gamma", "subscriber left");
    assert_eq!(left.len(), 1, "{text}");
    assert!(left[0].contains("sent=1"), "{}", left[0]);
    for secret in [KEY, "ak_gamma_wrong", ACME_KEY] {
        assert!(
            !text.contains(secret),
            "{secret} appears in the logs:\n{text}"
        );
    }
}
