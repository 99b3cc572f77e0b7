//! One throughput consumer on the system allocator (no `#[global_allocator]`), as a
//! Rust program that does not choose an allocator runs: `autoplay-consume <kind>
//! <url> <n>`. `autoplay-bench throughput` spawns it; `autoplay-consume-mimalloc` is
//! the same code on mimalloc.

// The shared module also holds what only the parent uses (parsing the JSON line).
#[allow(dead_code)]
#[path = "../consume.rs"]
mod consume;
#[path = "../model.rs"]
mod model;

fn main() {
    consume::main();
}
