#!/usr/bin/env bash
# The test suite: installs what it needs, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/predictive-target}"
[ "${PREDICTIVE_SKIP_INSTALL:-0}" = 1 ] || bash scripts/install-test-deps.sh
cargo build --workspace --release --bins
cargo test --workspace --release
