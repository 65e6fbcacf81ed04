#!/usr/bin/env bash
# Autobahn TestSuite against wsat's WebSocket client, on loopback, gated on the report.
#
# kosoku (PyPI, pinned in scripts/requirements-peers.txt) runs Autobahn's own case files in
# fuzzingserver mode; the testee is a client that walks the standard protocol
# (/getCaseCount, /runCase?case=N&agent=A echoing every message, /updateReports?agent=A).
# The report lands in autobahn-reports/clients/ (index.json + HTML); the gate
# (scripts/autobahn_gate.py) fails on any FAILED case and on UNIMPLEMENTED outside 12.*/13.*,
# and writes autobahn-reports/summary.md (the per-group table, Markdown).
# scripts/test.sh runs it twice: on `Client` (agent wsat), then with AUTOBAHN_STREAM=1 on the
# caller-task `WebSocket` (agent wsat-stream, reports in autobahn-reports/stream/).
#
# Env knobs:
#   AUTOBAHN_TESTEE   testee command; the server URL and the agent name are appended as two
#                     arguments (default: the release build of wsat-client's autobahn_client
#                     example, built before the clock starts)
#   AUTOBAHN_AGENT    agent name the testee reports and the gate checks (default: wsat)
#   AUTOBAHN_STREAM   1: the default testee runs with --stream (on `WebSocket`, not `Client`)
#   AUTOBAHN_DEFLATE  1: the default testee runs with --deflate (offers permessage-deflate), the
#                     default cases add 12.* and 13.* (compression), and the gate refuses
#                     UNIMPLEMENTED there too
#   AUTOBAHN_REPORTS  directory of the report, kosoku's log and summary.md (default:
#                     autobahn-reports)
#   AUTOBAHN_CASES    space-separated case globs (default: 1.* 2.* 3.* 4.* 5.* 6.* 7.* 9.* 10.*,
#                     plus 12.* 13.* with AUTOBAHN_DEFLATE=1; Autobahn has no section 8)
#   AUTOBAHN_TIMEOUT  seconds allowed for the whole run (default: 1200)
#   AUTOBAHN_LENIENT  1: accept NON-STRICT cases (the default gate refuses them)
#   WSAT_PYTHON       python of the peers venv (default: <repo>/.venv/bin/python, created by
#                     scripts/venv.sh if missing)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"

agent="${AUTOBAHN_AGENT:-wsat}"
default_cases="1.* 2.* 3.* 4.* 5.* 6.* 7.* 9.* 10.*"
gate_flags=()
testee_flags=()
[[ "${AUTOBAHN_STREAM:-}" == 1 ]] && testee_flags+=(--stream)
if [[ "${AUTOBAHN_DEFLATE:-}" == 1 ]]; then
    testee_flags+=(--deflate)
    default_cases="$default_cases 12.* 13.*"
    gate_flags+=(--no-unimplemented)
fi
cases="${AUTOBAHN_CASES:-$default_cases}"
budget="${AUTOBAHN_TIMEOUT:-1200}"
reports="${AUTOBAHN_REPORTS:-autobahn-reports}"
outdir="$reports/clients"

who=autobahn
# shellcheck source=scripts/kosoku_env.sh
source "$root/scripts/kosoku_env.sh"

# The testee. Build the Rust one first so compile time does not count against the budget.
if [[ -n "${AUTOBAHN_TESTEE:-}" ]]; then
    testee=(bash -c "$AUTOBAHN_TESTEE \"\$@\"" autobahn-testee)
    echo "autobahn: testee (AUTOBAHN_TESTEE): $AUTOBAHN_TESTEE"
else
    echo "autobahn: building the testee (wsat-client example autobahn_client, release)"
    cargo build --release -p wsat-client --example autobahn_client
    testee=(cargo run --release -q -p wsat-client --example autobahn_client -- "${testee_flags[@]}")
fi

rm -rf "$outdir"
mkdir -p "$outdir"
log="$reports/kosoku.log"
include=()
for c in $cases; do include+=(-i "$c"); done

# Port 0: kosoku binds an ephemeral port and names it on stderr -- no free-port race.
timeout --kill-after=10 "$budget" "$kosoku" -m fuzzingserver "${include[@]}" -o "$outdir" \
    127.0.0.1:0 >"$log" 2>&1 &
kosoku_pid=$!
cleanup() {
    if kill -0 "$kosoku_pid" 2>/dev/null; then
        kill "$kosoku_pid" 2>/dev/null || true
        wait "$kosoku_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

port=""
for _ in $(seq 1 300); do
    port="$(sed -n 's/^fuzzingserver listening on ws:\/\/[0-9.]*:\([0-9][0-9]*\).*/\1/p' "$log")"
    [[ -n "$port" ]] && break
    if ! kill -0 "$kosoku_pid" 2>/dev/null; then
        echo "autobahn: kosoku exited before listening:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ -z "$port" ]]; then
    echo "autobahn: kosoku did not start listening within 30 s:" >&2
    cat "$log" >&2
    exit 1
fi
url="ws://127.0.0.1:$port"

# One request to the fuzzingserver's control endpoints (/getCaseCount, /updateReports) over a
# raw socket -- no dependency on a client library; prints the text message it answers, if any.
ws_get() {
    "$py" - "$port" "$1" <<'EOF'
import base64, os, socket, sys
port, path = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=30)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
buf = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
head, _, rest = buf.partition(b"\r\n\r\n")
if b" 101 " not in head.split(b"\r\n")[0]:
    raise SystemExit(f"{path}: unexpected response {head[:200]!r}")
# Server frames are unmasked; kosoku answers with at most one short text message, then Close.
if len(rest) >= 2 and rest[0] == 0x81 and rest[1] <= 125:
    print(rest[2:2 + rest[1]].decode())
EOF
}

# How many cases the server will serve, so the gate can tell a complete report from one where
# the testee stopped early.
expect="$(ws_get /getCaseCount)"
echo "autobahn: kosoku fuzzingserver on $url serving $expect cases ($cases), agent '$agent' ${testee_flags[*]}"

start=$SECONDS
testee_rc=0
timeout --kill-after=10 "$budget" "${testee[@]}" "$url" "$agent" || testee_rc=$?
if [[ $testee_rc -ne 0 ]]; then
    echo "autobahn: the testee exited with status $testee_rc" >&2
fi

# kosoku exits by itself after /updateReports: 0 when every case passed, 1 when some failed.
kosoku_rc=0
if [[ $testee_rc -ne 0 ]] && kill -0 "$kosoku_pid" 2>/dev/null; then
    # Salvage the cases that did run: ask kosoku for the report the testee never requested.
    echo "autobahn: requesting /updateReports on the testee's behalf (partial report)" >&2
    ws_get "/updateReports?agent=$agent" >/dev/null || true
fi
for _ in $(seq 1 600); do
    kill -0 "$kosoku_pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$kosoku_pid" 2>/dev/null; then
    echo "autobahn: kosoku still running 60 s after the testee ended (no /updateReports?); stopping it" >&2
    kill "$kosoku_pid" 2>/dev/null || true
fi
wait "$kosoku_pid" || kosoku_rc=$?
trap - EXIT
echo "autobahn: run took $((SECONDS - start)) s (kosoku exit status $kosoku_rc); kosoku said:"
sed 's/^/  | /' "$log"
case $kosoku_rc in
0 | 1) ;;
124 | 137) echo "autobahn: kosoku timed out after ${budget} s (AUTOBAHN_TIMEOUT)" >&2 ;;
*) echo "autobahn: kosoku failed with status $kosoku_rc" >&2 ;;
esac

gate_rc=0
# wsat's client reaches no NON-STRICT case; AUTOBAHN_LENIENT=1 accepts them (other testees).
strict=(--strict)
[[ "${AUTOBAHN_LENIENT:-}" == 1 ]] && strict=()
# The gate's result line names the agent, so that test.sh's summary tells the two runs apart.
"$py" scripts/autobahn_gate.py "$outdir/index.json" --agent "$agent" --expect-cases "$expect" \
    --markdown "$reports/summary.md" "${strict[@]}" "${gate_flags[@]}" |
    sed "s/^\(autobahn: [0-9]* passed, [0-9]* failed\)\$/\1 (agent $agent)/" || gate_rc=$?
[[ -f "$outdir/index.html" ]] && echo "autobahn: HTML report: $root/$outdir/index.html"

if [[ $gate_rc -ne 0 || $testee_rc -ne 0 ]] || [[ $kosoku_rc -ne 0 && $kosoku_rc -ne 1 ]]; then
    echo "autobahn: FAILED" >&2
    exit 1
fi
echo "autobahn: OK"
