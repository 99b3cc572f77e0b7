//! One throughput consumer on mimalloc: `autoplay-consume-mimalloc <kind> <url>
//! <n>`, the same code as `autoplay-consume` (system allocator) but for the global
//! allocator, so the two rows of a consumer differ in nothing else.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The shared module also holds what only the parent uses (parsing the JSON line).
#[allow(dead_code)]
#[path = "../consume.rs"]
mod consume;
#[path = "../model.rs"]
mod model;

fn main() {
    consume::main();
}
