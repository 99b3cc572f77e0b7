//! The benchmark stream, shared by the benchmarks: realistic ~800-byte actions
//! events over ~64 sessions, 1 in 10 a summary, a heartbeat every 1,000 events.

use std::sync::Arc;

/// Payload events in the stream (heartbeats not counted).
pub const EVENTS: u64 = 100_000;

/// The stream body: `EVENTS` payloads plus heartbeats.
pub fn stream_body() -> Arc<Vec<u8>> {
    let mut body = Vec::new();
    for i in 1..=EVENTS {
        let session = format!("ps_{:04}", i % 64);
        if i % 10 == 0 {
            body.extend_from_slice(format!(
                "id: {i}\nevent: summary\ndata: {{\"type\":\"summary\",\"product_id\":\"acme\",\"session_id\":\"{session}\",\"summary\":\"The user opened the dashboard, exported a CSV report and went to billing settings.\",\"replaces\":10,\"forwarded_at\":1705314605.25}}\n\n"
            ).as_bytes());
        } else {
            body.extend_from_slice(format!(
                "id: {i}\nevent: actions\ndata: {{\"type\":\"actions\",\"product_id\":\"acme\",\"session_id\":\"{session}\",\"user_id\":\"user_456\",\"email\":\"alice@example.com\",\"ts\":\"2024-01-15T10:30:05Z\",\"forwarded_at\":1705314605.25,\"count\":3,\"actions\":[{{\"event_type\":\"pageview\",\"title\":\"Dashboard\",\"description\":\"Viewed Dashboard\",\"canonical_url\":\"https://app.example.com/dashboard\",\"raw_url\":\"https://app.example.com/dashboard?tab=overview\",\"ts\":\"2024-01-15T10:30:00Z\",\"properties\":{{\"referrer\":\"https://app.example.com/login\"}}}},{{\"event_type\":\"click\",\"title\":\"Export CSV button\",\"description\":\"Clicked 'Export CSV'\",\"canonical_url\":\"https://app.example.com/dashboard\",\"raw_url\":\"https://app.example.com/dashboard\",\"ts\":\"2024-01-15T10:30:03Z\",\"properties\":{{}}}},{{\"event_type\":\"pageview\",\"title\":\"Billing\",\"description\":\"Viewed Billing\",\"canonical_url\":\"https://app.example.com/settings/:id/billing\",\"raw_url\":\"https://app.example.com/settings/8812/billing\",\"ts\":\"2024-01-15T10:30:05Z\",\"properties\":{{}}}}]}}\n\n"
            ).as_bytes());
        }
        if i % 1000 == 0 {
            body.extend_from_slice(b"event: heartbeat\ndata:\n\n");
        }
    }
    Arc::new(body)
}
