#!/usr/bin/env bash
# Between two gabbi files: empty allot's conformance database and make sure allot runs with the
# configuration the next file needs. run_gabbits.py calls it with GABBI_PROFILE in the environment;
# run.sh exports the rest (CONFORMANCE_*). `reset.sh stop` stops the server.
#
# Honest and fast: one transaction truncates every table except the standard resource classes
# (id < 10000, app.models.FIRST_CUSTOM_ID) and the standard traits (not CUSTOM_), which allot
# syncs once at start. allot is restarted only when the profile changes:
#   legacy -> ALLOT_POLICY=tenant   secure -> ALLOT_POLICY=placement
#   cors   -> ALLOT_CORS_ORIGINS=http://valid.example.com (tenant policy)
# Nothing in allot knows it is under test: no test-only route or switch.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # serve this tree's code
: "${CONFORMANCE_PORT:?run through tests/conformance/run.sh}" "${CONFORMANCE_DB:?}" "${CONFORMANCE_OUT:?}"
: "${CONFORMANCE_JWT_SECRET:?}"
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
PIDFILE="$CONFORMANCE_OUT/server-$CONFORMANCE_PORT.pid"
PROFILEFILE="$CONFORMANCE_OUT/server-$CONFORMANCE_PORT.profile"
LOG="$CONFORMANCE_OUT/allot-$CONFORMANCE_PORT.log"
BASE="http://127.0.0.1:$CONFORMANCE_PORT"

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

stop() {
  running || { rm -f "$PIDFILE" "$PROFILEFILE"; return 0; }
  local pid; pid=$(cat "$PIDFILE")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$PIDFILE" "$PROFILEFILE"
}

start() {
  local profile=$1 policy=tenant cors=
  case "$profile" in
    secure) policy=placement ;;
    cors) cors=http://valid.example.com ;;
  esac
  echo "=== $(date -u +%FT%TZ) start profile=$profile" >>"$LOG"
  # Only the configuration below: no ALLOT_* of the caller's shell reaches the server.
  local clean=() var
  for var in $(compgen -e | grep '^ALLOT_' || true); do clean+=(-u "$var"); done
  # setsid: the server leads its own process group, so stop() ends it and its workers together.
  # Its output goes to the log, never to our stdout/stderr (the harness waits for those to close).
  env "${clean[@]}" ALLOT_DATABASE_URL="postgresql+asyncpg://$PGUSER@$PGHOST:$PGPORT/$CONFORMANCE_DB" \
  ALLOT_AUTH_JWT_SECRET="$CONFORMANCE_JWT_SECRET" ALLOT_POLICY=$policy ALLOT_CORS_ORIGINS=$cors \
  ALLOT_RATE_LIMIT=off ALLOT_RATE_LIMIT_ANON=off ALLOT_LOG_LEVEL=WARNING \
    setsid "${CONFORMANCE_VENV:-$ROOT/.venv}/bin/allot" serve --host 127.0.0.1 --port "$CONFORMANCE_PORT" --workers 2 \
    </dev/null >>"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  echo "$profile" >"$PROFILEFILE"
  for _ in $(seq 300); do
    # Both workers answer on one socket; ready once /readyz says the database is at head.
    if curl -fsS -o /dev/null "$BASE/readyz" 2>/dev/null; then return 0; fi
    running || { echo "allot exited at start; see $LOG" >&2; return 1; }
    sleep 0.1
  done
  echo "allot did not become ready in 30s; see $LOG" >&2
  return 1
}

truncate_data() {
  psql -q -v ON_ERROR_STOP=1 -d "$CONFORMANCE_DB" >/dev/null <<'SQL'
SET lock_timeout = '20s';
BEGIN;
DO $$ DECLARE t text; BEGIN
  SELECT string_agg(format('%I', tablename), ', ') INTO t FROM pg_tables
   WHERE schemaname = 'public'
     AND tablename NOT IN ('alembic_version', 'resource_classes', 'traits');
  IF t IS NOT NULL THEN EXECUTE 'TRUNCATE ' || t || ' RESTART IDENTITY CASCADE'; END IF;
END $$;
DELETE FROM traits WHERE name LIKE 'CUSTOM\_%';
DELETE FROM resource_classes WHERE id >= 10000;
COMMIT;
SQL
}

if [ "${1:-}" = stop ]; then stop; exit 0; fi

want=${GABBI_PROFILE:-legacy}
case "$want" in secure|cors) ;; *) want=legacy ;; esac
truncate_data
if ! running || [ "$(cat "$PROFILEFILE" 2>/dev/null)" != "$want" ]; then
  stop
  start "$want"
fi
