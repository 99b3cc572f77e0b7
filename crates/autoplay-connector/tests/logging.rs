//! Keys and secrets never reach the logs, even at trace level and on failures.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

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

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
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
