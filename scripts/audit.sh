#!/usr/bin/env bash
# cargo audit of Cargo.lock against the RustSec advisory DB (a step of scripts/test.sh).
#
# cargo-audit is the prebuilt 0.22.2 pinned in scripts/requirements-tools.txt, installed into
# <repo>/.venv by scripts/venv.sh (run here if it is missing).
#
# Fails on a vulnerability, an `unsound` advisory or a yanked crate in Cargo.lock.
# `unmaintained` notices are printed and counted ("N allowed warnings") but do not fail:
# they say nothing is wrong with the code we ship, and often have no drop-in replacement.
# The yanked check reads cargo's crates.io index (its local cache with WSAT_ADVISORY_DB); a
# crate it cannot look up is not checked and is counted in one note line, never a failure.
#
# The advisory DB:
#   default             cargo-audit fetches github.com/RustSec/advisory-db into
#                       ~/.cargo/advisory-db. If that fetch fails (no network, GitHub
#                       unreachable) the step prints
#                         audit: SKIPPED: the RustSec advisory DB cannot be fetched (<error>)
#                       and succeeds, unless WSAT_REQUIRE_AUDIT=1.
#   WSAT_ADVISORY_DB    a directory in the advisory-db layout (crates/<name>/RUSTSEC-*.md;
#                       no git metadata needed), used as it is (--no-fetch). A DB that does
#                       not load, or loads no advisory, fails the step.
#
# Env knobs:
#   WSAT_ADVISORY_DB=DIR   use this advisory DB, do not fetch
#   WSAT_REQUIRE_AUDIT=1   an unfetchable DB fails the step instead of skipping it
#
# The last line printed is the verdict, one line starting with "audit: " (OK, FAILED or
# SKIPPED); scripts/test.sh repeats it in its summary.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"

bin="${WSAT_VENV:-$root/.venv}/bin/cargo-audit"
if [[ ! -x "$bin" ]]; then
    scripts/venv.sh
fi
if [[ ! -x "$bin" ]]; then
    echo "audit: FAILED: $bin not found (scripts/requirements-tools.txt, scripts/venv.sh)"
    exit 1
fi

args=(audit --color never --file "$root/Cargo.lock" --deny unsound --deny yanked)
if [[ -n "${WSAT_ADVISORY_DB:-}" ]]; then
    args+=(--db "$WSAT_ADVISORY_DB" --no-fetch)
fi
echo "audit: $("$bin" --version), ${WSAT_ADVISORY_DB:+WSAT_ADVISORY_DB=$WSAT_ADVISORY_DB, }deny: vulnerabilities, unsound, yanked"

log="$(mktemp -t wsat-audit.XXXXXX)"
trap 'rm -f "$log"' EXIT
rc=0
"$bin" "${args[@]}" >"$log" 2>&1 || rc=$?

# cargo-audit's report, with its one-line-per-crate "couldn't check if the package is yanked"
# errors (a cold index cache) folded into a count.
unchecked_re="^error: couldn't check if the package is yanked"
grep -v -- "$unchecked_re" "$log" || true
unchecked="$(grep -c -- "$unchecked_re" "$log" || true)"
if [[ "$unchecked" -gt 0 ]]; then
    echo "audit: note: $unchecked crates not checked for being yanked (not in cargo's crates.io index cache)"
fi

errors="$(grep '^error: ' "$log" | grep -v -- "$unchecked_re" || true)"
first_error="$(head -n 1 <<<"$errors")"
allowed="$(grep -oE '^warning: [0-9]+ allowed warnings? found' "$log" | sed 's/^warning: //' || true)"
crates="$(grep -oE '\([0-9]+ crate dependencies\)' "$log" | grep -oE '[0-9]+' || true)"
loaded="$(grep -oE 'Loaded [0-9]+ security advisor(y|ies)' "$log" | grep -oE '[0-9]+' || true)"

if [[ $rc -eq 0 && "${loaded:-0}" -eq 0 ]]; then
    # An empty or wrong directory (or only placeholder ids, RUSTSEC-0000-0000, which
    # cargo-audit skips) would otherwise pass as "no vulnerability".
    echo "audit: FAILED: the advisory DB gave cargo-audit no advisory to check against"
    exit 1
fi
if [[ $rc -eq 0 ]]; then
    echo "audit: OK: no vulnerability, unsound or yanked crate in Cargo.lock (${crates:-?} crates, ${loaded:-?} advisories${allowed:+; $allowed})"
    exit 0
fi
if [[ -z "${WSAT_ADVISORY_DB:-}" && "$first_error" == "error: couldn't fetch advisory database"* ]]; then
    if [[ "${WSAT_REQUIRE_AUDIT:-}" == "1" ]]; then
        echo "audit: FAILED: the RustSec advisory DB cannot be fetched ($first_error) and WSAT_REQUIRE_AUDIT=1"
        exit 1
    fi
    echo "audit: SKIPPED: the RustSec advisory DB cannot be fetched ($first_error)"
    exit 0
fi
summary="$(awk 'NR > 1 { printf "; " } { printf "%s", $0 }' <<<"$errors")"
echo "audit: FAILED: ${summary:-cargo-audit exited with status $rc}"
exit 1
