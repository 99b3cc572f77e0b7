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
        apt-get update -q && apt-get install -y -q curl
    else
        echo "the tests need curl: install it (Debian: apt-get install curl)" >&2
        exit 1
    fi
fi

# --- Live view browser test (crates/autoplay-connector/tests/ui_browser.rs) ---
# Headless Debian Chromium driven by playwright-core, pinned in tests/browser's
# package-lock.json. Here the test must run, never skip: it fails if any is missing.
browser_missing=()
command -v chromium >/dev/null 2>&1 || browser_missing+=(chromium)
command -v node >/dev/null 2>&1 || browser_missing+=(nodejs)
command -v npm >/dev/null 2>&1 || browser_missing+=(npm)
if [ "${#browser_missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q && apt-get install -y -q "${browser_missing[@]}"
    else
        echo "the live view test needs ${browser_missing[*]} (Debian: apt-get install ${browser_missing[*]})" >&2
        exit 1
    fi
fi
browser_dir=crates/autoplay-connector/tests/browser
if [ ! -d "$browser_dir/node_modules/playwright-core" ] \
    || [ "$browser_dir/package-lock.json" -nt "$browser_dir/node_modules/.package-lock.json" ]; then
    (cd "$browser_dir" && npm ci --no-audit --no-fund)
fi
export AUTOPLAY_BROWSER_TEST=1
# --- end of the live view block ---

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --lib --bins --tests --examples --locked
cargo test --workspace --doc --locked
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
# The published Python autoplay-sdk (0.1.0 and the latest release) against our connector.
bash scripts/published_sdk/test.sh
# Our Python package, built from source, against the real connector.
bash crates/autoplay-python/test.sh
