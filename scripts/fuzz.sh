#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a while each. Not part of CI: too long, and CI's
# `cargo test` already replays the checked-in inputs (crates/*/tests/fuzz_corpus.rs).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     # default: 60 s, every target, one after another
#
# Works on the stable toolchain: cargo-fuzz builds with `-s none` (no sanitizer; ASan needs
# nightly) and `-a` (debug assertions, so arithmetic overflow panics). Installs cargo-fuzz
# 0.13.2 if it is missing.
#
# Inputs: fuzz/corpus/<target>/ (checked-in seeds, read only) plus fuzz/work/<target>/ (what
# libFuzzer adds, git-ignored). A crash lands in fuzz/artifacts/<target>/; reproduce it with
# `cargo fuzz run <target> -s none -a --fuzz-dir fuzz <file>`, fix it, and move the file to
# fuzz/regressions/<target>/ so `cargo test` replays it. To keep new coverage, merge the work
# corpus into a copy of the seeds and add a few dozen of the new files at most, e.g.
#   fuzz/target/x86_64-unknown-linux-gnu/release/<target> -merge=1 -set_cover_merge=1 \
#       -use_counters=0 <copy-of-seeds> fuzz/work/<target>
# (`cargo fuzz cmin <target> -s none -a --fuzz-dir fuzz <dir>` works on stable too, but keeps
# every input that adds a counter feature, which is hundreds.) The min-* seeds are up to 40 per
# target from such a merge, picked greedily by the code edges each adds.
# Dictionaries in fuzz/dict/<target>.dict are used when present.
#
# Prints, per target, libFuzzer's final `#N DONE` line and executions, and whether it crashed;
# exits 1 if any target crashed (or failed to run).
set -euo pipefail

cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
case $seconds in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
    ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi

flags=(-s none -a --fuzz-dir fuzz)
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi
# Build everything once up front, so build time does not eat into the first run.
cargo fuzz build "${flags[@]}"

failed=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t"
    log="fuzz/work/$t.log"
    extra=()
    [ -f "fuzz/dict/$t.dict" ] && extra+=("-dict=fuzz/dict/$t.dict")
    echo "== $t: ${seconds}s (log: $log)"
    start=$(date +%s)
    set +e
    cargo fuzz run "${flags[@]}" "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=20 -print_final_stats=1 "${extra[@]}" >"$log" 2>&1
    rc=$?
    set -e
    wall=$(($(date +%s) - start))
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    [ -n "$done_line" ] && echo "$done_line"
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
    if [ "$rc" -ne 0 ] || [ -n "$artifact" ]; then
        failed=1
        grep -m 1 -A 2 -E "panicked at|ERROR: libFuzzer" "$log" || tail -n 20 "$log"
        result="CRASH (exit $rc) ${artifact:-see $log}"
    else
        result="no crash"
    fi
    summary+=("$t: ${execs:-?} executions in ${wall}s, $(find "fuzz/work/$t" -type f | wc -l) inputs in fuzz/work/$t: $result")
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
