//! Session summaries: the embedded summariser, and the LLM backend against a small
//! OpenAI-compatible server started here.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use autoplay_connector::{LlmConfig, Secret};
use autoplay_sdk::models::{Event, SummaryPayload};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::*;
use serde_json::{Value, json};

fn summary_of(frame: &Frame) -> SummaryPayload {
    assert_eq!(frame.event, "summary");
    match Event::decode(&frame.data, &frame.event).unwrap() {
        Event::Summary(summary) => summary,
        Event::Actions(_) => panic!("expected a summary"),
    }
}

/// Reads until a summary arrives; returns it and the actions frames seen before it.
async fn next_summary(sse: &mut SseReader) -> (SummaryPayload, usize) {
    let mut actions = 0;
    loop {
        let frame = sse.next_event(WAIT).await.expect("no summary arrived");
        if frame.event == "summary" {
            return (summary_of(&frame), actions);
        }
        actions += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_summary_after_n_actions() {
    let mut config = config();
    config.summary_threshold = 4;
    let server = Server::start(config).await;
    let mut sse = server.stream("acme", ACME_KEY, None).await;

    // batch-mixed gives sess-A 3 actions; the click fixture (another session) and
    // the pageview fixture (another session again) do not count towards it.
    server.post_webhook("acme", fixture("batch-mixed")).await;
    server
        .post_webhook("acme", fixture("capture-autocapture-click"))
        .await;
    assert!(sse.next_event(WAIT).await.unwrap().event == "actions");
    assert!(sse.next_event(WAIT).await.unwrap().event == "actions");
    assert!(sse.next_event(WAIT).await.unwrap().event == "actions");
    // One more sess-A action crosses the threshold.
    let more = r#"{"event":"$autocapture","distinct_id":"user_456","timestamp":"2024-01-15T10:30:09.000Z",
        "properties":{"$event_type":"submit","$current_url":"https://app.example.com/invoices/77/pay","$session_id":"sess-A",
        "$elements":[{"tag_name":"form","attr__aria-label":"Payment"}]}}"#;
    server.post_webhook("acme", more).await;
    let (summary, actions_before) = next_summary(&mut sse).await;
    assert_eq!(actions_before, 1);
    assert_eq!(summary.product_id.as_deref(), Some("acme"));
    assert_eq!(summary.session_id.as_deref(), Some("sess-A"));
    assert_eq!(summary.replaces, 4);
    assert!(summary.ts.is_some() && summary.forwarded_at.is_some());
    assert_eq!(
        summary.summary,
        "alice@example.com viewed Project board (4 actions). They clicked 'Pay now' and submitted 'Payment'. \
         They also triggered invoice_paid."
    );
    assert_eq!(server.metric("autoplay_summaries_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_per_product_and_off() {
    let mut config = config();
    config.summary_threshold = 2;
    config.products[1].summary_threshold = Some(0);
    let server = Server::start(config).await;
    let beta = reqwest::Client::new();
    let mut acme = server.stream("acme", ACME_KEY, None).await;
    let mut beta_sse = server.stream("beta", BETA_KEY, None).await;
    let body = json!({"session_id": "s", "actions": [{"type": "click", "title": "a"}, {"type": "click", "title": "b"}, {"type": "click", "title": "c"}]});
    server.post_events("acme", &body).await;
    for _ in 0..2 {
        beta.post(server.url("/events/beta"))
            .bearer_auth(BETA_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
    }
    let (summary, _) = next_summary(&mut acme).await;
    // One payload crossed the threshold of 2 with 3 actions: all 3 are covered.
    assert_eq!(summary.replaces, 3);
    assert!(beta_sse.next_event(WAIT).await.unwrap().event == "actions");
    assert!(beta_sse.next_event(WAIT).await.unwrap().event == "actions");
    assert!(
        beta_sse
            .next_event(Duration::from_millis(300))
            .await
            .is_none(),
        "summaries are off for beta"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_evicted() {
    let mut config = config();
    config.summary_threshold = 3;
    config.session_idle_timeout = Duration::from_millis(50);
    let server = Server::start(config).await;
    let mut sse = server.stream("acme", ACME_KEY, None).await;
    let two = json!({"session_id": "s", "actions": [{"type": "click", "title": "a"}, {"type": "click", "title": "b"}]});
    server.post_events("acme", &two).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.metric("autoplay_sessions_evicted_total").await >= 1.0);
    // The two pending actions were forgotten with the session: two more do not
    // reach three... until a third arrives.
    server.post_events("acme", &two).await;
    let one = json!({"session_id": "s", "actions": [{"type": "click", "title": "c"}]});
    server.post_events("acme", &one).await;
    let (summary, actions_before) = next_summary(&mut sse).await;
    assert_eq!(actions_before, 3);
    assert_eq!(summary.replaces, 3);
}

/// (Authorization header, JSON body) of each request the fake received.
type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

#[derive(Clone, Default)]
struct FakeLlm {
    requests: Seen,
    delay: Duration,
    /// The first request waits this much longer.
    first_extra_delay: Duration,
    /// Answer "summary <n>" (n = the request's number from 1) instead of a fixed text.
    numbered: bool,
    fail: bool,
}

async fn chat_completions(
    State(fake): State<FakeLlm>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    let number = {
        let mut requests = fake.requests.lock().unwrap();
        requests.push((auth, body));
        requests.len()
    };
    let extra = if number == 1 {
        fake.first_extra_delay
    } else {
        Duration::ZERO
    };
    tokio::time::sleep(fake.delay + extra).await;
    if fake.fail {
        return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
    }
    let content = if fake.numbered {
        format!("summary {number}")
    } else {
        "  Alice reviewed her project board and paid an invoice.  ".to_owned()
    };
    Json(json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
    }))
    .into_response()
}

async fn start_fake_llm(fake: FakeLlm) -> String {
    let app = axum::Router::new()
        .route(
            "/v1/chat/completions",
            axum::routing::post(chat_completions),
        )
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

fn llm_config(base_url: String, timeout: Duration) -> autoplay_connector::ConnectorConfig {
    let mut config = config();
    config.summary_threshold = 3;
    let mut llm = LlmConfig::new(base_url, "test-model");
    llm.api_key = Some(Secret::new("sk-test"));
    llm.timeout = timeout;
    config.llm = Some(llm);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_backend_writes_the_summary() {
    let fake = FakeLlm::default();
    let base = start_fake_llm(fake.clone()).await;
    let server = Server::start(llm_config(base, Duration::from_secs(5))).await;
    let mut sse = server.stream("acme", ACME_KEY, None).await;
    server.post_webhook("acme", fixture("batch-mixed")).await;
    let (summary, _) = next_summary(&mut sse).await;
    assert_eq!(
        summary.summary,
        "Alice reviewed her project board and paid an invoice."
    );
    assert_eq!(summary.replaces, 3);
    assert_eq!(summary.session_id.as_deref(), Some("sess-A"));

    let requests = fake.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let (auth, body) = &requests[0];
    assert_eq!(auth.as_deref(), Some("Bearer sk-test"));
    assert_eq!(body["model"], "test-model");
    let prompt = body["messages"][1]["content"].as_str().unwrap();
    assert!(
        prompt.contains(
            "1. Viewed Project board \u{2014} https://app.example.com/projects/:id/board"
        ),
        "{prompt}"
    );
    assert!(prompt.contains("3. Triggered invoice_paid"), "{prompt}");
    assert_eq!(server.metric("autoplay_llm_failures_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_failure_falls_back_to_embedded() {
    let fake = FakeLlm {
        fail: true,
        ..FakeLlm::default()
    };
    let base = start_fake_llm(fake.clone()).await;
    let server = Server::start(llm_config(base, Duration::from_secs(5))).await;
    let mut sse = server.stream("acme", ACME_KEY, None).await;
    server.post_webhook("acme", fixture("batch-mixed")).await;
    let (summary, _) = next_summary(&mut sse).await;
    assert!(
        summary
            .summary
            .starts_with("alice@example.com viewed Project board"),
        "{}",
        summary.summary
    );
    assert_eq!(server.metric("autoplay_llm_failures_total").await, 1.0);
    assert_eq!(fake.requests.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_timeout_falls_back_and_never_blocks_ingestion() {
    let fake = FakeLlm {
        delay: Duration::from_secs(3),
        ..FakeLlm::default()
    };
    let base = start_fake_llm(fake.clone()).await;
    let server = Server::start(llm_config(base, Duration::from_secs(1))).await;
    let mut sse = server.stream("acme", ACME_KEY, None).await;
    let start = Instant::now();
    let response = server.post_webhook("acme", fixture("batch-mixed")).await;
    assert_eq!(response.status(), 200);
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "ingestion waited for the LLM"
    );
    // Both actions payloads come before the (late) summary.
    assert_eq!(sse.next_event(WAIT).await.unwrap().event, "actions");
    assert_eq!(sse.next_event(WAIT).await.unwrap().event, "actions");
    let (summary, _) = next_summary(&mut sse).await;
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "the timeout was not applied"
    );
    assert!(summary.summary.starts_with("alice@example.com"));
    assert_eq!(server.metric("autoplay_llm_failures_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_summaries_go_out_in_order_when_the_llm_answers_out_of_order() {
    let fake = FakeLlm {
        first_extra_delay: Duration::from_millis(600),
        numbered: true,
        ..FakeLlm::default()
    };
    let base = start_fake_llm(fake.clone()).await;
    let server = Server::start(llm_config(base, Duration::from_secs(5))).await;
    let mut sse = server.stream("acme", ACME_KEY, None).await;
    let three = |first: usize| {
        json!({"session_id": "s", "actions": (first..first + 3)
            .map(|i| json!({"type": "click", "title": format!("button {i}")}))
            .collect::<Vec<_>>()})
    };
    server.post_events("acme", &three(1)).await;
    let deadline = Instant::now() + WAIT;
    while fake.requests.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the first summary was never asked for"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The second summary's request is answered at once, long before the first's.
    server.post_events("acme", &three(4)).await;
    let (first, _) = next_summary(&mut sse).await;
    let (second, _) = next_summary(&mut sse).await;
    assert_eq!(first.summary, "summary 1");
    assert_eq!(second.summary, "summary 2");
    assert_eq!((first.replaces, second.replaces), (3, 3));
    let prompts: Vec<String> = fake
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body)| body["messages"][1]["content"].as_str().unwrap().to_owned())
        .collect();
    assert!(prompts[0].contains("button 1") && prompts[1].contains("button 4"));
}
