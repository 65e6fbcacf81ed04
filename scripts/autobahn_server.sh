#!/usr/bin/env bash
# Autobahn TestSuite against `wsat echo-server`, on loopback, gated on the report.
#
# kosoku (PyPI, pinned in scripts/requirements-peers.txt) runs Autobahn's own case files in
# fuzzingclient mode: it connects to the server under test once per case (the server is the
# testee: it echoes every message, answers pings, closes as RFC 6455 says), and offers
# permessage-deflate in 12.* and 13.*. The testee is the release build of `wsat echo-server`
# (built before the clock starts) on a free loopback port, stopped when the script exits.
# The report lands in autobahn-reports/servers/ (index.json + HTML); the gate
# (scripts/autobahn_gate.py --server) fails on any FAILED case, on any NON-STRICT case, and on
# any UNIMPLEMENTED case (12.*/13.* included: the server implements permessage-deflate), and
# writes autobahn-reports/servers/summary.md (the per-group table, Markdown).
#
# kosoku's case globs are whole-id patterns: `1.*` selects 1.x.y but not 10.*, `12.1.*` and
# `12.1*` select the same 18 cases, `1*` selects 1.*, 10.*, 12.* and 13.*.
#
# Env knobs:
#   AUTOBAHN_CASES     space-separated case globs (default: 1.* 2.* 3.* 4.* 5.* 6.* 7.* 9.* 10.*
#                      12.* 13.*; Autobahn has no section 8, and 11.* does not exist)
#   AUTOBAHN_REPORTS   parent directory of the report: it goes to $AUTOBAHN_REPORTS/servers,
#                      with kosoku's and the server's logs (default: autobahn-reports)
#   AUTOBAHN_TIMEOUT   seconds allowed for the whole kosoku run (default: 1800)
#   AUTOBAHN_SERVER_ARGS  extra arguments for `wsat echo-server` (e.g. --no-deflate, which
#                      makes 12.*/13.* UNIMPLEMENTED and the gate fail)
#   AUTOBAHN_WSAT      a wsat binary to test instead of building target/release/wsat
#   AUTOBAHN_LENIENT   1: accept NON-STRICT cases (the default gate refuses them)
#   WSAT_PYTHON        python of the peers venv (default: <repo>/.venv/bin/python, created by
#                      scripts/venv.sh if missing)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"

cases="${AUTOBAHN_CASES:-1.* 2.* 3.* 4.* 5.* 6.* 7.* 9.* 10.* 12.* 13.*}"
budget="${AUTOBAHN_TIMEOUT:-1800}"
reports="${AUTOBAHN_REPORTS:-autobahn-reports}"
outdir="$reports/servers"
read -r -a server_args <<<"${AUTOBAHN_SERVER_ARGS:-}"
testee="wsat echo-server${server_args[*]:+ ${server_args[*]}}"

who=autobahn-server
# shellcheck source=scripts/kosoku_env.sh
source "$root/scripts/kosoku_env.sh"

# The testee, built before the clock starts.
if [[ -n "${AUTOBAHN_WSAT:-}" ]]; then
    wsat="$AUTOBAHN_WSAT"
    echo "autobahn-server: testee (AUTOBAHN_WSAT): $wsat"
else
    echo "autobahn-server: building the testee (wsat, release)"
    cargo build --release -p wsat
    wsat="$root/target/release/wsat"
fi

rm -rf "$outdir"
mkdir -p "$outdir"
server_log="$outdir/echo-server.log"
kosoku_log="$outdir/kosoku.log"

# How many cases the selection holds (the same whole-id globs kosoku matches), so the gate
# can tell a complete report from a cut one.
expect="$("$py" - $cases <<'EOF'
import fnmatch, sys
from kosoku.cases import CASES
print(sum(1 for c in CASES if any(fnmatch.fnmatchcase(c, g) for g in sys.argv[1:])))
EOF
)"
if [[ "$expect" == 0 ]]; then
    echo "autobahn-server: no case matches AUTOBAHN_CASES ($cases)" >&2
    exit 1
fi

# A free loopback port: bind port 0, read it, release it (the server binds it right after).
port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

server_pid=""
kosoku_pid=""
cleanup() {
    for pid in $kosoku_pid $server_pid; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
}
trap cleanup EXIT

"$wsat" echo-server --listen "127.0.0.1:$port" "${server_args[@]}" >"$server_log" 2>&1 &
server_pid=$!
listening=""
for _ in $(seq 1 100); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "autobahn-server: wsat echo-server exited before listening:" >&2
        cat "$server_log" >&2
        exit 1
    fi
    if "$py" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()' \
        "$port" 2>/dev/null; then
        listening=1
        break
    fi
    sleep 0.1
done
if [[ -z "$listening" ]]; then
    echo "autobahn-server: wsat echo-server did not listen on 127.0.0.1:$port within 10 s:" >&2
    cat "$server_log" >&2
    exit 1
fi

include=()
for c in $cases; do include+=(-i "$c"); done
echo "autobahn-server: kosoku fuzzingclient against ws://127.0.0.1:$port ($testee), $expect cases ($cases)"

start=$SECONDS
kosoku_rc=0
timeout --kill-after=10 "$budget" "$kosoku" -m fuzzingclient "${include[@]}" -o "$outdir" \
    "ws://127.0.0.1:$port" >"$kosoku_log" 2>&1 &
kosoku_pid=$!
wait "$kosoku_pid" || kosoku_rc=$?
kosoku_pid=""
took=$((SECONDS - start))

server_alive=1
kill -0 "$server_pid" 2>/dev/null || server_alive=0
cleanup
server_pid=""
trap - EXIT

echo "autobahn-server: run took $took s (kosoku exit status $kosoku_rc); kosoku said:"
tail -n 20 "$kosoku_log" | sed 's/^/  | /'
case $kosoku_rc in
0 | 1) ;;
124 | 137) echo "autobahn-server: kosoku timed out after ${budget} s (AUTOBAHN_TIMEOUT)" >&2 ;;
*) echo "autobahn-server: kosoku failed with status $kosoku_rc" >&2 ;;
esac
if [[ $server_alive -ne 1 ]]; then
    echo "autobahn-server: $testee died during the run; its log:" >&2
    tail -n 20 "$server_log" >&2
fi

gate_rc=0
strict=(--strict)
[[ "${AUTOBAHN_LENIENT:-}" == 1 ]] && strict=()
"$py" scripts/autobahn_gate.py "$outdir/index.json" --server --expect-cases "$expect" \
    --markdown "$outdir/summary.md" "${strict[@]}" \
    --title "Autobahn TestSuite (kosoku fuzzingclient), server \`$testee\`, run of $took s:" |
    sed "s/^\(autobahn: [0-9]* passed, [0-9]* failed\)\$/\1 ($testee)/" || gate_rc=$?
[[ -f "$outdir/index.html" ]] && echo "autobahn-server: HTML report: $(realpath "$outdir/index.html")"

if [[ $gate_rc -ne 0 || $server_alive -ne 1 ]] || [[ $kosoku_rc -ne 0 && $kosoku_rc -ne 1 ]]; then
    echo "autobahn-server: FAILED" >&2
    exit 1
fi
echo "autobahn-server: OK"
