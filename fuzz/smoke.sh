#!/usr/bin/env bash
# Smoke pass over every cairn fuzz target: build once, write the seed corpus, replay the saved
# regressions, then fuzz each target for N seconds (default 10). Exits non-zero if any target
# crashed; crashing inputs land in fuzz/artifacts/<target>/. Needs nightly and cargo-fuzz.
#
#   fuzz/smoke.sh [SECONDS]            e.g. fuzz/smoke.sh 60
#   FUZZ_TARGETS="tree lock" fuzz/smoke.sh 5   (only these targets)
set -euo pipefail

secs="${1:-10}"
cd "$(dirname "$0")/.."
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"

targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list | grep -vx 'make-seeds')}"
cargo +nightly fuzz build
"fuzz/target/$triple/release/make-seeds"

failed=()
for t in $targets; do
    mkdir -p "fuzz/corpus/$t"
    dirs=("fuzz/corpus/$t")
    # Saved crash inputs run first, as read-only seeds: a fixed bug must stay fixed.
    if [ -d "fuzz/regressions/$t" ]; then dirs+=("fuzz/regressions/$t"); fi
    echo "=== $t: ${secs}s"
    if ! cargo +nightly fuzz run "$t" "${dirs[@]}" -- -max_total_time="$secs" -print_final_stats=1; then
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz smoke: crashes in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz smoke: all targets ran ${secs}s without a crash"
