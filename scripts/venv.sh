#!/usr/bin/env bash
# Create or refresh <repo>/.venv with the pinned test peers of scripts/requirements-peers.txt
# (websockets==12.0 for the seed examples' servers, kosoku==0.1.0 for Autobahn, pytest==8.3.5
# for the Python driver example in examples/python) and the pinned tools of
# scripts/requirements-tools.txt (cargo-audit for scripts/audit.sh).
#
# Idempotent and quick: a stamp file inside the venv records the SHA-256 of both requirements
# files and the Python version; when all match, nothing is installed.
# Prints nothing but progress lines; the venv's python is <repo>/.venv/bin/python.
#
# Env: WSAT_VENV overrides the venv directory (default <repo>/.venv).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${WSAT_VENV:-$root/.venv}"
reqs=("$root/scripts/requirements-peers.txt" "$root/scripts/requirements-tools.txt")
stamp="$venv/.wsat-peers.stamp"

python_bin="${PYTHON3:-python3}"
if ! command -v "$python_bin" >/dev/null 2>&1; then
    echo "venv.sh: $python_bin not found; the test peers need Python 3.10+ with venv and pip" >&2
    exit 1
fi

pins="$(cat "${reqs[@]}" | grep -v '^[[:space:]]*#' | grep -v '^[[:space:]]*$' | paste -sd' ')"
want="$(
    {
        sha256sum "${reqs[@]}" | cut -d' ' -f1
        "$python_bin" -c 'import sys; print(sys.version.split()[0])'
    } | tr '\n' ' '
)"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "venv: $venv up to date ($pins)"
    exit 0
fi

start=$SECONDS
if [[ ! -x "$venv/bin/python" ]]; then
    echo "venv: creating $venv"
    "$python_bin" -m venv "$venv"
fi
echo "venv: installing $pins"
"$venv/bin/python" -m pip install --disable-pip-version-check -q -r "${reqs[0]}" -r "${reqs[1]}"
# Check that every pin really is what got installed.
"$venv/bin/python" - "${reqs[@]}" <<'EOF'
import importlib.metadata as md, sys
for req in sys.argv[1:]:
    for line in open(req):
        line = line.split("#")[0].strip()
        if "==" in line:
            pkg, want = (x.strip() for x in line.split("=="))
            got = md.version(pkg)
            if got != want:
                raise SystemExit(f"venv: {pkg} is {got}, expected {want}")
EOF
printf '%s' "$want" > "$stamp"
echo "venv: ready in $((SECONDS - start)) s"
