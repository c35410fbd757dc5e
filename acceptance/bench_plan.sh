#!/usr/bin/env bash
# Benchmark (not a test): wall time of `terraform plan` for N predictive_clone resources (default
# 100) against the built release provider, through a filesystem mirror. Prints one JSON line:
#   {"bench":"plan_clones","resources":N,"seconds":S,"cpu_seconds":C,"provider_cpu_seconds":P,
#    "terraform_cpu_seconds":T,"provider_processes":K,"init_seconds":I}
# The provider runs under /usr/bin/time, which appends its user+sys CPU time to a log when it
# exits, so the plan's CPU splits into the provider's share and terraform's.
# Usage: acceptance/bench_plan.sh [N]   (after `cargo build --release -p terraform-provider-predictive`)
set -euo pipefail
n="${1:-100}"
here="$(cd "$(dirname "$0")/.." && pwd)"
tools="${PREDICTIVE_TOOLS:-$HOME/.cache/predictive-tools}"
tf="$tools/terraform"
bin="${CARGO_TARGET_DIR:-$HOME/.cache/predictive-target}/release/terraform-provider-predictive"
[ -x "$tf" ] || { echo "no terraform at $tf: run scripts/install-test-deps.sh" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "no /usr/bin/time (apt-get install time): it measures the provider's CPU" >&2; exit 1; }
[ -x "$bin" ] || { echo "no provider at $bin: cargo build --release -p terraform-provider-predictive" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
addr="registry.terraform.io/predictive/predictive"
version="$(grep -m1 '^version' "$here/Cargo.toml" | sed 's/.*"\(.*\)"/\1/')"
mkdir -p "$work/mirror/$addr/$version/linux_amd64" "$work/tf"
cp "$bin" "$work/real-provider"
cat > "$work/mirror/$addr/$version/linux_amd64/terraform-provider-predictive_v$version" <<WRAP
#!/usr/bin/env bash
exec /usr/bin/time -a -o "$work/provider-cpu.log" -f "%U %S" "$work/real-provider" "\$@"
WRAP
chmod +x "$work/mirror/$addr/$version/linux_amd64/terraform-provider-predictive_v$version"
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
: > "$work/provider-cpu.log"
# cpu_seconds: user+sys of terraform and the provider (its child), which is what the plan costs
# on an idle machine; seconds is wall time, which other load on the machine inflates.
TIMEFORMAT="%U %S"
cpu=$( { time "$tf" plan -input=false -no-color -refresh=false >/dev/null 2>&1; } 2>&1 | tail -1 )
t2=$(date +%s.%N)
python3 - "$cpu" "$work/provider-cpu.log" <<PY
import re, sys
u, s = sys.argv[1].split()
total = float(u) + float(s)
lines = [l.split() for l in open(sys.argv[2]) if re.fullmatch(r"[\d.]+ [\d.]+\n?", l)]
provider = sum(float(a) + float(b) for a, b in lines)
print('{"bench":"plan_clones","resources":%d,"seconds":%.3f,"cpu_seconds":%.3f,"provider_cpu_seconds":%.3f,"terraform_cpu_seconds":%.3f,"provider_processes":%d,"init_seconds":%.3f}'
      % ($n, $t2 - $t1, total, provider, total - provider, len(lines), $t1 - $t0))
PY
