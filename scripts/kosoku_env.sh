# Sourced by scripts/autobahn.sh and scripts/autobahn_server.sh, not run: sets `py` (the
# peers venv's python: WSAT_PYTHON, else <repo>/.venv/bin/python, created by scripts/venv.sh)
# and `kosoku` (the Autobahn runner installed beside it), or exits naming what is missing.
# Expects `root` (the repository) and `who` (the prefix of the scripts' messages).
if [[ -z "${WSAT_PYTHON:-}" ]]; then
    "$root/scripts/venv.sh"
    WSAT_PYTHON="$root/.venv/bin/python"
fi
py="$WSAT_PYTHON"
kosoku="$(dirname "$py")/kosoku"
if [[ ! -x "$kosoku" ]]; then
    echo "$who: $kosoku not found; run scripts/test.sh (or scripts/venv.sh) to create the venv" >&2
    exit 1
fi
