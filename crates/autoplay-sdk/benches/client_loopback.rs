//! End to end over loopback with the system allocator: a blaster serves a
//! pre-generated stream of ~800-byte actions events (1 in 10 a summary, a heartbeat
//! every 1,000) from memory; the blocking and async clients count typed payloads in
//! a callback.
//!
//! cargo bench -p autoplay-sdk --bench client_loopback

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "support/loopback.rs"]
mod loopback;
#[path = "support/stream.rs"]
mod stream;

fn bench(c: &mut Criterion) {
    loopback::bench(c, "client_loopback");
}

criterion_group!(benches, bench);
criterion_main!(benches);
