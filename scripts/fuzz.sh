#!/usr/bin/env bash
# Runs each cargo-fuzz target (fuzz/fuzz_targets) for SECONDS seconds (default 300), starting
# from the tracked seeds (fuzz/seeds/<target>) plus whatever corpus earlier runs grew
# (fuzz/corpus/<target>, not tracked). Exits non-zero, naming the artifact, if any target finds a
# crash. Needs a nightly toolchain (libFuzzer's sanitizer flags) and cargo-fuzz, both installed
# here if missing; without a way to get them it says so and exits 0 with FUZZ SKIPPED, so a
# machine that cannot fuzz does not fail the tests it can run (CI prints the line).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH="${1:-300}"
TARGETS=(parse_event snapshot_read scorecard_load service_config_load)

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  timeout 300 rustup toolchain install nightly --profile minimal >/dev/null 2>&1 || {
    echo "fuzz: FUZZ SKIPPED: no nightly toolchain and none could be installed" >&2
    exit 0
  }
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  timeout 900 cargo install cargo-fuzz --locked --quiet || {
    echo "fuzz: FUZZ SKIPPED: cargo-fuzz could not be installed" >&2
    exit 0
  }
fi

cargo +nightly fuzz build --release >/dev/null 2>&1 || { echo "fuzz: the fuzz targets do not build:" >&2; cargo +nightly fuzz build --release 2>&1 | tail -n 30 >&2; exit 1; }
status=0
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  cp -n "seeds/$t"/* "corpus/$t/" 2>/dev/null || true
  echo "fuzz: $t for ${SECONDS_EACH}s"
  if ! cargo +nightly fuzz run --release "$t" "corpus/$t" -- \
      -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=262144 \
      -artifact_prefix="artifacts/$t/" -print_final_stats=1 2>"artifacts/$t.log"; then
    echo "fuzz: $t FOUND A CRASH: $(ls -t "artifacts/$t"/* 2>/dev/null | head -n 1)" >&2
    tail -n 40 "artifacts/$t.log" >&2
    status=1
  else
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "artifacts/$t.log" | tr '\n' ' ' || true
    echo
  fi
done
exit $status
