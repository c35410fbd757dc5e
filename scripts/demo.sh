#!/usr/bin/env bash
# The main job end to end on the embedded default: installs the build prerequisites (protoc, the
# fonts the plots use, Terraform 1.0.3 for the quickstart), builds, then runs `predictive demo`
# (sim cloud, SQLite in a temporary directory, a bundled real trace, a simulated week).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/predictive-target}"
export PREDICTIVE_TOOLS="${PREDICTIVE_TOOLS:-$HOME/.cache/predictive-tools}"
PREDICTIVE_INSTALL_SET=demo bash scripts/install-test-deps.sh
cargo build --release -p predictive-cli -p terraform-provider-predictive
exec "$CARGO_TARGET_DIR/release/predictive" demo "$@"
