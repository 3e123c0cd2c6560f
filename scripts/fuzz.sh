#!/usr/bin/env bash
# Fuzzing with cargo-fuzz (libFuzzer). cargo-fuzz passes nightly-only flags; RUSTC_BOOTSTRAP=1
# lets the stable toolchain take them. See FUZZING.md for the targets and the results.
#
#   scripts/fuzz.sh smoke               every target for a few seconds (what CI runs; stats in
#                                        fuzz/stats/smoke-<target>.log)
#   scripts/fuzz.sh run RUNS [TARGET…]   every target (or those named) for RUNS executions (or
#                                        MAX_SECONDS, default 1200, whichever comes first), with
#                                        AddressSanitizer; stats in fuzz/stats/<target>.log
#
# Each run starts from fuzz/seeds/<target> (valid inputs, committed) and grows fuzz/corpus/<target>
# (not committed). A crash leaves its input in fuzz/artifacts/<target>/: copy it to
# fuzz/regressions/<target>/ with the fix, and `cargo test --test fuzz_corpus` keeps it fixed.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz --version 0.13.2
fi

ALL=(otlp_protobuf otlp_json decompress config env_expansion ottl expr syslog prometheus_text container disk_queue zipkin fluentforward)
mode=${1:-smoke}
shift || true

case "$mode" in
  smoke)
    # No sanitizer: a panic is what these targets look for, and the build is much faster. Its
    # own target directory, so that it does not rebuild over a long run's sanitizer build.
    sanitizer=(-s none --target-dir target/smoke)
    limit=(-max_total_time=4)
    targets=("${ALL[@]}")
    log=smoke-
    ;;
  run)
    runs=${1:?usage: fuzz.sh run RUNS [TARGET...]}
    shift
    sanitizer=()
    limit=(-runs="$runs" -max_total_time="${MAX_SECONDS:-1200}")
    if [ $# -gt 0 ]; then targets=("$@"); else targets=("${ALL[@]}"); fi
    log=
    ;;
  *)
    echo "usage: $0 smoke | run RUNS [TARGET...]" >&2
    exit 2
    ;;
esac

cargo fuzz build -O "${sanitizer[@]}"
mkdir -p stats
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  dirs=("corpus/$t" "seeds/$t")
  # The Collector configs of ../shared are seeds for the config loader too (not copied here).
  if [ "$t" = config ] && [ -d ../../shared/collector-configs ]; then
    dirs+=(../../shared/collector-configs)
  fi
  echo "== $t"
  # -timeout catches inputs that take seconds (a quadratic path is a defect too).
  rc=0
  cargo fuzz run -O "${sanitizer[@]}" "$t" "${dirs[@]}" -- \
    "${limit[@]}" -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"stats/$log$t.log" 2>&1 || rc=$?
  grep -E '^(Done|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))|INITED|panicked|ERROR' "stats/$log$t.log" || true
  grep -E '^#[0-9]+' "stats/$log$t.log" | tail -1 || true
  if [ "$rc" != 0 ]; then
    echo "fuzz target $t failed (exit $rc): see fuzz/stats/$log$t.log and fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
