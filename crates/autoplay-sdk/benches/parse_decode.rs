//! The read path without the network: SSE parsing alone, payload decoding alone,
//! and both, over the benchmark stream fed in 16 KiB chunks (what a socket read
//! typically returns).
//!
//! cargo bench -p autoplay-sdk --bench parse_decode

use std::hint::black_box;

use autoplay_sdk::Event;
use autoplay_sdk::sse::{SseEvent, SseItem, SseParser};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/stream.rs"]
mod stream;
use stream::{EVENTS, stream_body};

const CHUNK: usize = 16 * 1024;

fn parse(body: &[u8], mut on_event: impl FnMut(SseEvent)) {
    let mut parser = SseParser::new();
    for chunk in body.chunks(CHUNK) {
        parser
            .feed(chunk, |item| {
                if let SseItem::Event(event) = item {
                    on_event(event);
                }
            })
            .unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let body = stream_body();
    let mut events = Vec::new();
    parse(&body, |e| events.push(e));
    let payloads: Vec<SseEvent> = events
        .into_iter()
        .filter(|e| e.event != "heartbeat")
        .collect();
    assert_eq!(payloads.len() as u64, EVENTS);

    let mut group = c.benchmark_group("read_path");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(20);

    group.bench_function("parse", |b| {
        b.iter(|| {
            let mut n = 0u64;
            parse(black_box(&body), |e| {
                black_box(&e);
                n += 1;
            });
            n
        })
    });

    group.bench_function("decode", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for e in &payloads {
                if let Ok(event) = Event::decode(black_box(&e.data), &e.event) {
                    black_box(&event);
                    n += 1;
                }
            }
            assert_eq!(n, EVENTS);
        })
    });

    group.bench_function("parse_and_decode", |b| {
        b.iter(|| {
            let mut n = 0u64;
            parse(black_box(&body), |e| {
                if let Ok(event) = Event::decode(&e.data, &e.event) {
                    black_box(&event);
                    n += 1;
                }
            });
            assert_eq!(n, EVENTS);
        })
    });
    group.finish();

    let mut bytes = c.benchmark_group("read_path_bytes");
    bytes.throughput(Throughput::Bytes(body.len() as u64));
    bytes.sample_size(20);
    bytes.bench_function("parse", |b| {
        b.iter(|| parse(black_box(&body), |e| drop(black_box(e))))
    });
    bytes.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
