//! Our SSE parser vs `eventsource-stream` on the benchmark stream (issue 5, part 5):
//! `cargo bench -p autoplay-bench --bench parsers`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "../src/parsers.rs"]
mod parsers;
#[path = "../../autoplay-sdk/benches/support/stream.rs"]
mod stream;

fn bench(c: &mut Criterion) {
    let body = stream::stream_body();
    let mut group = c.benchmark_group("sse_parse");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.sample_size(20);
    group.bench_function("autoplay_sdk::sse::SseParser", |b| {
        b.iter(|| parsers::ours(&body))
    });
    group.bench_function("eventsource-stream", |b| {
        b.iter(|| parsers::eventsource_stream(&body))
    });
    group.finish();
    let _ = stream::EVENTS;
}

criterion_group!(benches, bench);
criterion_main!(benches);
