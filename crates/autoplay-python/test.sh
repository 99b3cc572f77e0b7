#!/usr/bin/env bash
# Builds the Python package `autoplay_sdk` from source and runs its pytest suite
# against the real connector on 127.0.0.1.
#
# Needs only Rust (cargo), a C compiler and Python >= 3.10 with pip: it makes a
# virtualenv under target/py-venv (reused when present), installs maturin, pytest and
# mypy into it, installs this package with pip (maturin as the PEP 517 backend),
# checks the stubs against the built module (mypy.stubtest), builds the connector the
# tests start, and runs pytest. Extra arguments go to pytest.
#
#   crates/autoplay-python/test.sh            # everything
#   crates/autoplay-python/test.sh -k async   # a subset
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="${AUTOPLAY_PY_VENV:-$TARGET/py-venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# the maturin backend runs the `maturin` binary found on PATH
export PATH="$VENV/bin:$PATH"

echo "==> installing build and test tools"
"$PY" -m pip install -q --disable-pip-version-check "maturin>=1.5,<2" pytest mypy

echo "==> building and installing autoplay_sdk (pip install $HERE)"
# maturin is in the venv already, so skip pip's isolated build environment.
"$PY" -m pip install -q --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps "$HERE"

echo "==> building the abi3 wheel from a fresh sdist (maturin build --release --sdist)"
DIST="$TARGET/wheels"
rm -rf "$DIST"
"$VENV/bin/maturin" build --quiet --release --sdist -m "$HERE/Cargo.toml" --out "$DIST"
# One wheel for every CPython >= 3.10: the file name must carry the stable-ABI tag.
wheels=("$DIST"/autoplay_sdk-*-cp310-abi3-*.whl)
if [ ! -f "${wheels[0]}" ] || [ ! -f "$(ls "$DIST"/autoplay_sdk-*.tar.gz)" ]; then
    echo "expected an abi3 wheel and an sdist in $DIST, found: $(ls "$DIST")" >&2
    exit 1
fi
DIST_VENV="$TARGET/py-dist-venv"
rm -rf "$DIST_VENV"
"$PYTHON" -m venv "$DIST_VENV"
# No index and no Rust: the wheel alone must install and import.
"$DIST_VENV/bin/python" -m pip install -q --disable-pip-version-check --no-index "${wheels[0]}"
(cd / && "$DIST_VENV/bin/python" -c "import autoplay_sdk, autoplay_sdk._native; print('wheel', autoplay_sdk.__version__, 'imports')")

echo "==> checking the stubs against the built module (mypy.stubtest)"
# Run outside the source tree so the installed package is the one checked.
(cd / && "$PY" -m mypy.stubtest autoplay_sdk)

echo "==> building the test connector"
(cd "$ROOT" && cargo build -q -p autoplay-python --example test_connector)

echo "==> pytest"
cd "$HERE"
exec "$PY" -m pytest -q tests "$@"
