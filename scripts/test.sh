#!/usr/bin/env bash
# The project's one test command (README "Test"; .ci/run calls exactly this).
# cargo fetches every crate it needs from crates.io; missing system tools come from apt.
set -euo pipefail
cd "$(dirname "$0")/.."
# One full build per run: incremental caches would only cost disk (GiBs) and time.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# System tools the tests run, from Debian's packages when missing (CI runs as root):
# curl (the README's curl example), redis-server (the Redis store's tests: each
# starts its own on a free port), and Chromium, Node.js and npm for the live view's
# headless browser test (crates/autoplay-connector/tests/ui_browser.rs).
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# nginx for crates/autoplay-cli/tests/replicas_nginx.rs (docs/deploy/nginx.conf); Debian puts it in /usr/sbin.
{ command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } || missing+=(nginx)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q && apt-get install -y -q "${missing[@]}"
    else
        echo "the tests need ${missing[*]}: install them (Debian: apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi
# playwright-core for the browser test, pinned in tests/browser's package-lock.json.
# Here the browser test must run, never skip: it fails if anything is missing.
browser_dir=crates/autoplay-connector/tests/browser
if [ ! -d "$browser_dir/node_modules/playwright-core" ] \
    || [ "$browser_dir/package-lock.json" -nt "$browser_dir/node_modules/.package-lock.json" ]; then
    (cd "$browser_dir" && npm ci --no-audit --no-fund)
fi
export AUTOPLAY_BROWSER_TEST=1

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --lib --bins --tests --examples --locked
cargo test --workspace --doc --locked
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
# The published Python autoplay-sdk (0.1.0 and the latest release) against our connector.
bash scripts/published_sdk/test.sh
# Our Python package, built from source, against the real connector.
bash crates/autoplay-python/test.sh
