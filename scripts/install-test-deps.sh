#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine (Rust, python3/pip, gcc and git are assumed).
# Idempotent: every step checks first. Each area adds its own block below.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
tools="${PREDICTIVE_TOOLS:-$HOME/.cache/predictive-tools}"
mkdir -p "$tools"

apt_updated=0
apt_install() { # apt_install PKG... : installs the Debian packages that are missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated -eq 0 ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# protobuf compiler for tonic/prost code generation
apt_install protobuf-compiler
