#!/usr/bin/env bash
# The project's one test command (README "Test"; .ci/run calls exactly this).
# cargo fetches every crate it needs from crates.io; missing system tools come from apt.
set -euo pipefail
cd "$(dirname "$0")/.."
# One full build per run: incremental caches would only cost disk (GiBs) and time.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# System tools the tests run (the README's curl example); CI runs as root.
if ! command -v curl >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q && apt_updated=1 && apt-get install -y -q curl
    else
        echo "the tests need curl: install it (Debian: apt-get install curl)" >&2
        exit 1
    fi
fi

# redis-server for the Redis store's tests (each starts its own on a free port).
if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        if [ -z "${apt_updated:-}" ]; then apt-get update -q; fi
        apt-get install -y -q redis-server
    else
        echo "the tests need redis-server: install it (Debian: apt-get install redis-server)" >&2
        exit 1
    fi
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --lib --bins --tests --examples --locked
cargo test --workspace --doc --locked
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
# The published Python autoplay-sdk (0.1.0 and the latest release) against our connector.
bash scripts/published_sdk/test.sh
# Our Python package, built from source, against the real connector.
bash crates/autoplay-python/test.sh
