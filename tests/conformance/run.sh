#!/usr/bin/env bash
# make conformance: Placement's own HTTP tests (gabbi) against a real allot, gated by
# tests/conformance/expected-failures.txt. See the README's "Conformance" section.
#
# Environment (all optional):
#   CONFORMANCE_ONLY   file globs to run, space or comma separated ('resource-provider*');
#                      the gate then judges only the files that ran
#   CONFORMANCE_PRUNE  1: delete the list's lines of tests that now pass (never adds lines)
#   CONFORMANCE_PORT   allot's port (8400)           CONFORMANCE_DB  database (allot_conformance)
#   PLACEMENT_VENV     the harness's venv (/tmp/placement-venv; made by install.sh when missing)
#   PLACEMENT_TOOLS    the harness (../shared/tools/placement beside this clone)
#   CONFORMANCE_VENV   allot's venv (.venv of this tree); the code served is always this tree's
# Arguments are passed to tests/conformance/gate.py (e.g. --baseline 'GLOB=why', maintainers only).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/tests/conformance"
cd "$ROOT"

export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
export CONFORMANCE_PORT=${CONFORMANCE_PORT:-8400}
export CONFORMANCE_DB=${CONFORMANCE_DB:-allot_conformance}
export CONFORMANCE_OUT="$HERE/out"
# The code of this tree, whichever venv runs it (a second worktree may share the main one).
export CONFORMANCE_VENV=${CONFORMANCE_VENV:-$ROOT/.venv}
PLACEMENT_VENV=${PLACEMENT_VENV:-/tmp/placement-venv}
PLACEMENT_TOOLS=${PLACEMENT_TOOLS:-$ROOT/../shared/tools/placement}
RESULTS="$CONFORMANCE_OUT/results-$CONFORMANCE_PORT.json"
LOG="$CONFORMANCE_OUT/allot-$CONFORMANCE_PORT.log"
LIST="$HERE/expected-failures.txt"
mkdir -p "$CONFORMANCE_OUT"

[ -f "$PLACEMENT_TOOLS/run_gabbits.py" ] || {
  echo "conformance: the harness is not at $PLACEMENT_TOOLS (set PLACEMENT_TOOLS)" >&2; exit 1; }
if [ ! -x "$PLACEMENT_VENV/bin/python" ]; then
  echo "conformance: creating the harness venv at $PLACEMENT_VENV"
  PLACEMENT_VENV="$PLACEMENT_VENV" "$PLACEMENT_TOOLS/install.sh"
fi
if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$CONFORMANCE_PORT/" 2>/dev/null \
   && [ ! -f "$CONFORMANCE_OUT/server-$CONFORMANCE_PORT.pid" ]; then
  echo "conformance: port $CONFORMANCE_PORT is in use by another server (set CONFORMANCE_PORT)" >&2
  exit 1
fi

# A fresh secret per run: only this run's harness can mint tokens for this server.
CONFORMANCE_JWT_SECRET=$("$CONFORMANCE_VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))')
export CONFORMANCE_JWT_SECRET

stop_server() { bash "$HERE/reset.sh" stop || true; }
trap stop_server EXIT
stop_server  # a server left by an interrupted run on this port
rm -f "$LOG"

if ! psql -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$CONFORMANCE_DB'" | grep -q 1; then
  createdb "$CONFORMANCE_DB"
fi
ALLOT_DATABASE_URL="postgresql+asyncpg://$PGUSER@$PGHOST:$PGPORT/$CONFORMANCE_DB" \
ALLOT_AUTH_JWT_SECRET="$CONFORMANCE_JWT_SECRET" ALLOT_LOG_LEVEL=WARNING PYTHONPATH="$ROOT" \
  "$CONFORMANCE_VENV/bin/allot" db upgrade >/dev/null

only=() globs=()
CONFORMANCE_ONLY=${CONFORMANCE_ONLY:-}
IFS=', ' read -r -a globs <<<"$CONFORMANCE_ONLY"  # no pathname expansion of the globs here
for glob in "${globs[@]}"; do only+=(--only "$glob"); done

rm -f "$RESULTS"
set +e
"$PLACEMENT_VENV/bin/python" "$HERE/harness.py" "$PLACEMENT_TOOLS" "$RESULTS" -- \
  --base-url "http://127.0.0.1:$CONFORMANCE_PORT" \
  --reset-cmd "bash '$HERE/reset.sh'" \
  --jwt-secret "$CONFORMANCE_JWT_SECRET" --strip-error-strings \
  --skip '*legacy-rbac*' --skip '*-policy.yaml' "${only[@]}" --show 0
harness_status=$?
set -e
if [ ! -f "$RESULTS" ]; then
  echo "conformance: the harness did not finish (status $harness_status); see $CONFORMANCE_OUT" >&2
  exit 1
fi

gate_args=("$@")
[ "${CONFORMANCE_PRUNE:-0}" = 1 ] && gate_args+=(--prune)
[ -z "$CONFORMANCE_ONLY" ] && gate_args+=(--full)
status=0
"$CONFORMANCE_VENV/bin/python" "$HERE/gate.py" "$RESULTS" "$LIST" "${gate_args[@]}" || status=$?

# Whatever the tests expected, allot never answers 5xx to them: each one is logged at ERROR.
server_errors=0
[ -f "$LOG" ] && server_errors=$(grep -c '"status": 5[0-9][0-9]' "$LOG" || true)
if [ "$server_errors" != 0 ]; then
  echo "conformance gate: FAILED: allot answered $server_errors request(s) with 5xx; see $LOG"
  grep '"status": 5[0-9][0-9]' "$LOG" | head -5 | cut -c1-400
  status=1
fi
exit $status
