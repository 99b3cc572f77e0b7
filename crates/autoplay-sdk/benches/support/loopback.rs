//! The end-to-end loopback benchmark, shared by the system-allocator and mimalloc
//! variants: a blaster serves the benchmark stream from memory and each client
//! counts typed payloads in a callback.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use autoplay_sdk::{AsyncConnectorClient, ConnectorClient, OverflowPolicy};
use criterion::{Criterion, Throughput};

use crate::stream::{EVENTS, stream_body};

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
        assert!(
            Instant::now() < deadline,
            "stalled at {}",
            count.load(Ordering::Relaxed)
        );
        // Sleep rather than spin: a spinning waiter would take a core from the client.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Measures both clients; `group` names the criterion group (one per allocator).
pub fn bench(c: &mut Criterion, group: &str) {
    let url = blaster(stream_body());
    let mut group = c.benchmark_group(group);
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
