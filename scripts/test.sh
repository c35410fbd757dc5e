#!/usr/bin/env bash
# The test suite: installs what it needs, then runs every test of the workspace, the cloud adapters
# (EC2 on moto, Azure and GCP on local fakes) and the Terraform acceptance suite included.
# One feature set and one profile throughout, so a reused build directory stays warm.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/predictive-target}"
export PREDICTIVE_TOOLS="${PREDICTIVE_TOOLS:-$HOME/.cache/predictive-tools}"
[ "${PREDICTIVE_SKIP_INSTALL:-0}" = 1 ] || bash scripts/install-test-deps.sh
cargo build --workspace --release --all-features --bins
cargo test --workspace --release --all-features --no-fail-fast
