#!/usr/bin/env bash
# Benchmark (not a test): wall time of `terraform plan` for N predictive_clone resources (default
# 100) against the built release provider, through a filesystem mirror. Prints one JSON line:
#   {"bench":"plan_clones","resources":N,"seconds":S,"init_seconds":I}
# Usage: acceptance/bench_plan.sh [N]   (after `cargo build --release -p terraform-provider-predictive`)
set -euo pipefail
n="${1:-100}"
here="$(cd "$(dirname "$0")/.." && pwd)"
tools="${PREDICTIVE_TOOLS:-$HOME/.cache/predictive-tools}"
tf="$tools/terraform"
bin="${CARGO_TARGET_DIR:-$HOME/.cache/predictive-target}/release/terraform-provider-predictive"
[ -x "$tf" ] || { echo "no terraform at $tf: run scripts/install-test-deps.sh" >&2; exit 1; }
[ -x "$bin" ] || { echo "no provider at $bin: cargo build --release -p terraform-provider-predictive" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
addr="registry.terraform.io/predictive/predictive"
version="$(grep -m1 '^version' "$here/Cargo.toml" | sed 's/.*"\(.*\)"/\1/')"
mkdir -p "$work/mirror/$addr/$version/linux_amd64" "$work/tf"
cp "$bin" "$work/mirror/$addr/$version/linux_amd64/terraform-provider-predictive_v$version"
cat > "$work/terraformrc" <<RC
provider_installation {
  filesystem_mirror {
    path    = "$work/mirror"
    include = ["$addr"]
  }
  direct {
    exclude = ["$addr"]
  }
}
RC
{
  cat <<TF
terraform {
  required_providers {
    predictive = { source = "predictive/predictive" }
  }
}
provider "predictive" {
  state_path = "$work/state.db"
  history {
    file = "$here/examples/quickstart/history"
  }
}
TF
  for i in $(seq 1 "$n"); do
    cat <<TF
resource "predictive_clone" "c$i" {
  name = "bench-$i"
  source {
    workload = "web"
  }
  clouds    = ["aws"]
  quantile  = 0.$((90 + i % 9))
  max_count = 20
}
TF
  done
} > "$work/tf/main.tf"
export TF_CLI_CONFIG_FILE="$work/terraformrc" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
cd "$work/tf"
t0=$(date +%s.%N)
"$tf" init -input=false -no-color >/dev/null
t1=$(date +%s.%N)
# cpu_seconds: user+sys of terraform and the provider (its child), which is what the plan costs
# on an idle machine; seconds is wall time, which other load on the machine inflates.
TIMEFORMAT="%U %S"
cpu=$( { time "$tf" plan -input=false -no-color -refresh=false >/dev/null 2>&1; } 2>&1 | tail -1 )
t2=$(date +%s.%N)
python3 -c "u,s='$cpu'.split(); print('{\"bench\":\"plan_clones\",\"resources\":$n,\"seconds\":%.3f,\"cpu_seconds\":%.3f,\"init_seconds\":%.3f}' % ($t2-$t1, float(u)+float(s), $t1-$t0))"
