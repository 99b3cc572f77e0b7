#!/usr/bin/env bash
# The published Python autoplay-sdk (0.1.0, the README's version; 0.13.0, the
# first to read `type`, `index` and timestamps; and the latest release) must work
# unchanged against our connector. Installs each into its own
# virtualenv under target/ (reused when present) and runs check.py.
set -euo pipefail
cd "$(dirname "$0")/../.."

python="${PYTHON:-python3}"
cargo build -q -p autoplay-cli --locked
binary="${CARGO_TARGET_DIR:-target}/debug/autoplay"

for spec in "autoplay-sdk==0.1.0" "autoplay-sdk==0.13.0" "autoplay-sdk"; do
    venv="${CARGO_TARGET_DIR:-target}/published-sdk-venv/$(echo "$spec" | tr -c 'a-zA-Z0-9.\n' '_')"
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$spec"
    echo "== $spec ($("$venv/bin/python" -m pip show autoplay-sdk | sed -n 's/^Version: //p'))"
    "$venv/bin/python" scripts/published_sdk/check.py "$binary"
done
