//! End to end over loopback: a blaster serves a pre-generated stream of ~800-byte
//! actions events (1 in 10 a summary, a heartbeat every 1,000) from memory; the
//! blocking and async clients count typed payloads in a callback.
//!
//! cargo bench -p autoplay-sdk --bench client_loopback

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use autoplay_sdk::{AsyncConnectorClient, ConnectorClient, OverflowPolicy};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const EVENTS: u64 = 100_000;

/// The stream body: `EVENTS` payloads plus heartbeats.
fn stream_body() -> Arc<Vec<u8>> {
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

/// Serves `body` to every connection, then holds the connection open (so the
/// client never reconnects during a measurement).
fn blaster(body: Arc<Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { continue };
            let body = body.clone();
            std::thread::spawn(move || {
                let mut head = [0u8; 4096];
                let _ = socket.read(&mut head);
                let _ = socket.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n",
                );
                let _ = socket.write_all(&body);
                // Wait for the client to hang up.
                while socket.read(&mut head).is_ok_and(|n| n > 0) {}
            });
        }
    });
    format!("http://{addr}/stream/acme")
}

fn wait_for(count: &AtomicU64, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "stalled at {}", count.load(Ordering::Relaxed));
        std::thread::yield_now();
    }
}

fn bench(c: &mut Criterion) {
    let url = blaster(stream_body());
    let mut group = c.benchmark_group("client_loopback");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));

    group.bench_function("blocking_client", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let count = Arc::new(AtomicU64::new(0));
                let (a, s) = (count.clone(), count.clone());
                let started = Instant::now();
                let client = ConnectorClient::builder(&url)
                    .overflow_policy(OverflowPolicy::Block)
                    .on_actions(move |_| {
                        a.fetch_add(1, Ordering::Relaxed);
                    })
                    .on_summary(move |_| {
                        s.fetch_add(1, Ordering::Relaxed);
                    })
                    .run_in_background()
                    .unwrap();
                wait_for(&count, EVENTS);
                total += started.elapsed();
                drop(client);
            }
            total
        })
    });

    group.bench_function("async_client", |b| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let count = Arc::new(AtomicU64::new(0));
                let (a, s) = (count.clone(), count.clone());
                let started = Instant::now();
                let client = AsyncConnectorClient::builder(&url)
                    .overflow_policy(OverflowPolicy::Block)
                    .on_actions(move |_| {
                        a.fetch_add(1, Ordering::Relaxed);
                        std::future::ready(())
                    })
                    .on_summary(move |_| {
                        s.fetch_add(1, Ordering::Relaxed);
                        std::future::ready(())
                    })
                    .build()
                    .unwrap();
                let task = runtime.spawn({
                    let client = client.clone();
                    async move { client.run().await }
                });
                wait_for(&count, EVENTS);
                total += started.elapsed();
                client.stop();
                runtime.block_on(task).unwrap().unwrap();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
