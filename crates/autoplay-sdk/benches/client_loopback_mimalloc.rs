//! The loopback benchmark of `client_loopback` with mimalloc as the global
//! allocator. Decoding allocates a few dozen small strings per event, and in a
//! multi-threaded process glibc's malloc is the largest single cost; an
//! application can choose its allocator (the `autoplay` CLI and the Python
//! extension do), a library cannot.
//!
//! cargo bench -p autoplay-sdk --bench client_loopback_mimalloc

use criterion::{Criterion, criterion_group, criterion_main};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/loopback.rs"]
mod loopback;
#[path = "support/stream.rs"]
mod stream;

fn bench(c: &mut Criterion) {
    loopback::bench(c, "client_loopback_mimalloc");
}

criterion_group!(benches, bench);
criterion_main!(benches);
