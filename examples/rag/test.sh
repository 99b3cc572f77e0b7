#!/usr/bin/env bash
# The RAG example end to end (kept out of scripts/test.sh for its ~4 GiB install;
# .ci/run calls it after the test command): setup.sh, then pytest on test_rag.py,
# which starts `autoplay demo` on a free port, indexes its sessions through
# autoplay_sdk into sqlite-vec with all-MiniLM-L6-v2, asks who failed to export a
# CSV, and reports embeddings/s and the webhook-to-searchable lag.
# Extra arguments go to pytest.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${AUTOPLAY_RAG_VENV:-${CARGO_TARGET_DIR:-$ROOT/target}/rag-venv}"

bash "$HERE/setup.sh"
echo "==> pytest examples/rag"
cd "$HERE"
export HF_HUB_OFFLINE=1
exec "$VENV/bin/python" -m pytest -q -s -p no:cacheprovider test_rag.py "$@"
