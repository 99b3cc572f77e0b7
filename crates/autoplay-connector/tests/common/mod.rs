//! Helpers shared by the end-to-end tests: a real connector on 127.0.0.1:0 and a
//! small SSE reader over reqwest.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use autoplay_connector::{Connector, ConnectorConfig, ProductConfig, ShutdownHandle};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde_json::Value;

pub const ACME_KEY: &str = "ak_acme";
pub const ACME_SECRET: &str = "whsec_acme";
pub const BETA_KEY: &str = "ak_beta";

/// Products `acme` (key, webhook secret, summaries off unless set) and `beta`
/// (key, no secret, the key accepted for ingest).
pub fn config() -> ConnectorConfig {
    let config = ConnectorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        summary_threshold: 0,
        ..ConnectorConfig::default()
    };
    config
        .with_product(
            ProductConfig::new("acme")
                .with_api_key(ACME_KEY)
                .unwrap()
                .with_webhook_secret(ACME_SECRET),
        )
        .with_product(
            ProductConfig::new("beta")
                .with_api_key(BETA_KEY)
                .unwrap()
                .with_ingest_by_api_keys(),
        )
}

pub struct Server {
    pub addr: SocketAddr,
    pub shutdown: ShutdownHandle,
    pub task: tokio::task::JoinHandle<Result<(), autoplay_connector::Error>>,
}

impl Server {
    pub async fn start(config: ConnectorConfig) -> Self {
        let connector = Connector::bind(config).await.expect("bind");
        let addr = connector.local_addr();
        let shutdown = connector.shutdown_handle();
        let task = tokio::spawn(connector.serve());
        Server {
            addr,
            shutdown,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn post_webhook(&self, product: &str, body: impl Into<String>) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url(&format!("/webhook/{product}")))
            .header("x-posthog-secret", ACME_SECRET)
            .header("content-type", "application/json")
            .body(body.into())
            .send()
            .await
            .unwrap()
    }

    pub async fn post_events(&self, product: &str, body: &Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.url(&format!("/events/{product}")))
            .header("x-posthog-secret", ACME_SECRET)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
    }

    pub async fn stream(&self, product: &str, key: &str, last_event_id: Option<u64>) -> SseReader {
        let mut request = reqwest::Client::new()
            .get(self.url(&format!("/stream/{product}")))
            .bearer_auth(key);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseReader::new(response.bytes_stream())
    }
}

pub fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/posthog/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

/// One SSE event as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub id: Option<u64>,
    pub event: String,
    pub data: String,
}

impl Frame {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

type ByteStream = std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Splits the connector's frames (it always writes `\n` line ends and
/// `id`/`event`/`data` lines, one data line per event).
pub struct SseReader {
    body: ByteStream,
    buffer: BytesMut,
    pub ended: bool,
}

impl SseReader {
    pub fn new(body: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static) -> Self {
        SseReader {
            body: Box::pin(body),
            buffer: BytesMut::new(),
            ended: false,
        }
    }

    /// The next frame (heartbeats included), `None` at the end of the stream or
    /// after `timeout`.
    pub async fn next_frame(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let raw = self.buffer.split_to(end + 2);
                let text = std::str::from_utf8(&raw[..end]).unwrap();
                let mut frame = Frame {
                    id: None,
                    event: "message".into(),
                    data: String::new(),
                };
                for line in text.split('\n') {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => frame.id = Some(value.parse().unwrap()),
                        "event" => frame.event = value.to_owned(),
                        "data" => frame.data = value.to_owned(),
                        other => panic!("unexpected field {other:?}"),
                    }
                }
                return Some(frame);
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(chunk))) => self.buffer.extend_from_slice(&chunk),
                Ok(Some(Err(_)) | None) => self.ended = true,
            }
        }
    }

    /// The next non-heartbeat frame.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next_frame(left).await?;
            if frame.event != "heartbeat" {
                return Some(frame);
            }
        }
    }
}

pub const WAIT: Duration = Duration::from_secs(5);
