#!/usr/bin/env bash
# Two MindsDB 26.1.0 processes on one Postgres metadata store, as compose and the Helm chart run
# MindsDB (MINDSDB_DB_CON, replicas > 1). Uses the venv of scripts/mindsdb.sh install (with its
# scheduler patch) and the local model of scripts/llm.sh start; `make test` runs it.
#
#   scripts/mindsdb-shared-metadata.sh
#
# It creates a fresh database, starts process A then process B (own storage dirs, own HTTP ports,
# no MySQL API), and runs scripts/mindsdb_shared_metadata.py: objects created through A answer
# through B, a job EVERY minute runs once per scheduled time across both, an agent created
# through A answers through B. Both processes are stopped (their whole process groups) and the
# database is dropped on every exit, success or not. Takes about 2 minutes: the job needs two
# scheduled times, one minute apart (MindsDB 26.1's smallest interval is one minute).
#
# A is started before B on purpose: MindsDB runs its alembic migrations at start without a lock,
# so two processes migrating one empty database at once can collide. The chart therefore starts
# replicas one by one (podManagementPolicy OrderedReady) when the metadata is in Postgres.
#
# Environment (all optional):
#   MINDSDB_VENV        venv (default <repo>/.venv-mindsdb)
#   SHARED_PORT_A/B     HTTP ports (default 47400, 47401; 47334 is the dev instance's)
#   SHARED_PG_URL       server to create the database on (default postgresql://postgres@127.0.0.1:5432)
#   LLM_CHAT_PORT       the local model's port (default 18080, as scripts/llm.sh)
#   SHARED_READY_TIMEOUT seconds to wait for each process (default 120)
#   SHARED_KEEP_LOGS    directory to copy both logs to at the end
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MINDSDB_VENV:-$ROOT/.venv-mindsdb}
PORT_A=${SHARED_PORT_A:-47400}
PORT_B=${SHARED_PORT_B:-47401}
PG_URL=${SHARED_PG_URL:-postgresql://postgres@127.0.0.1:5432}
LLM_URL=http://127.0.0.1:${LLM_CHAT_PORT:-18080}/v1
READY_TIMEOUT=${SHARED_READY_TIMEOUT:-180}
CHECK_INTERVAL=2
DB=getlood_mdb_shared_$(date +%s)_$$
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mindsdb-shared.XXXXXX")
STARTED=$SECONDS
DB_CREATED=
CHECKS_PID=

say() { printf 'shared-metadata: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

psql_admin() { psql "$PG_URL/postgres" -v ON_ERROR_STOP=1 -qAtc "$1"; }

stop_group() { # stop_group <name>: TERM the process group, KILL after 10 s
  local f=$WORK/$1.pid pgid
  [[ -s "$f" ]] || return 0
  pgid=$(cat "$f")
  kill -TERM -- "-$pgid" 2>/dev/null || return 0
  for _ in $(seq 1 40); do kill -0 -- "-$pgid" 2>/dev/null || return 0; sleep 0.25; done
  say "$1 (pgid $pgid) still running after 10s; SIGKILL"
  kill -KILL -- "-$pgid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # Every step runs, whatever the one before did.
  set +e
  [[ -n "$CHECKS_PID" ]] && kill "$CHECKS_PID" 2>/dev/null
  stop_group a
  stop_group b
  if [[ $rc -ne 0 ]]; then
    for n in a b; do
      [[ -s "$WORK/$n.log" ]] || continue
      say "last lines of process ${n^^}'s log:"
      tail -n 20 "$WORK/$n.log" | sed 's/^/      | /' >&2
    done
  fi
  if [[ -n "${SHARED_KEEP_LOGS:-}" ]]; then
    mkdir -p "$SHARED_KEEP_LOGS" && cp "$WORK"/*.log "$SHARED_KEEP_LOGS"/ 2>/dev/null || true
  fi
  if [[ -n "$DB_CREATED" ]]; then
    if psql_admin "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>"$WORK/drop.err"; then
      say "dropped database $DB"
    else
      say "error: could not drop database $DB: $(cat "$WORK/drop.err")"
      rc=1
    fi
  fi
  rm -rf "$WORK"
  say "$([[ $rc -eq 0 ]] && echo passed || echo FAILED) in $((SECONDS - STARTED))s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

[[ -x "$VENV/bin/python" ]] || die "no MindsDB venv at $VENV: run scripts/mindsdb.sh install"
"$VENV/bin/python" "$ROOT/deploy/mindsdb/patch_mindsdb.py" --check \
  || die "MindsDB in $VENV lacks the GETLOOD patches: run scripts/mindsdb.sh install"
command -v psql >/dev/null || die "psql not found"
curl -sf -m 5 "$LLM_URL/models" >/dev/null \
  || die "the local model at $LLM_URL does not answer (the agent check needs it): run scripts/llm.sh start"
for p in "$PORT_A" "$PORT_B"; do
  port_in_use "$p" && die "port $p is already in use; set SHARED_PORT_A/SHARED_PORT_B"
done

psql_admin "CREATE DATABASE $DB" || die "cannot create database $DB on $PG_URL"
DB_CREATED=1
say "created database $DB"
DB_CON="$PG_URL/$DB"

start() { # start <name> <port>
  local n=$1 port=$2
  mkdir -p "$WORK/$n/storage"
  printf '{"gui":{"open_on_start":false,"autoupdate":false},"jobs":{"check_interval":%d},"api":{"http":{"host":"127.0.0.1","port":"%d"}}}\n' \
    "$CHECK_INTERVAL" "$port" >"$WORK/$n/config.json"
  MINDSDB_DB_CON=$DB_CON \
  MINDSDB_STORAGE_DIR=$WORK/$n/storage \
  MINDSDB_CONFIG_PATH=$WORK/$n/config.json \
  MINDSDB_NO_STUDIO=1 \
  TIKTOKEN_CACHE_DIR=$VENV/tiktoken-cache \
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$WORK/$n.pid" \
      "$VENV/bin/python" -m mindsdb --api=http --no_studio >"$WORK/$n.log" 2>&1 </dev/null &
  for _ in $(seq 1 50); do [[ -s "$WORK/$n.pid" ]] && break; sleep 0.1; done
  [[ -s "$WORK/$n.pid" ]] || die "process ${n^^} did not start (no pid file)"
}

wait_ready() { # wait_ready <name> <port>: ping, then SELECT 1
  local n=$1 url=http://127.0.0.1:$2 t0=$SECONDS pgid
  pgid=$(cat "$WORK/$n.pid")
  while ((SECONDS - t0 < READY_TIMEOUT)); do
    kill -0 -- "-$pgid" 2>/dev/null || die "process ${n^^} exited while starting"
    if curl -s -m 10 -H 'Content-Type: application/json' -d '{"query":"SELECT 1"}' "$url/api/sql/query" 2>/dev/null \
        | grep -q '"type": *"table"'; then
      say "process ${n^^} ready on $url after $((SECONDS - t0))s (pgid $pgid)"
      return 0
    fi
    sleep 0.5
  done
  die "process ${n^^} not ready after ${READY_TIMEOUT}s"
}

start a "$PORT_A"
wait_ready a "$PORT_A"
start b "$PORT_B"
wait_ready b "$PORT_B"

# In the background and waited for, so that SIGTERM/SIGINT run the cleanup at once instead of
# after the checks (bash runs traps only between foreground commands).
MDB_A=http://127.0.0.1:$PORT_A MDB_B=http://127.0.0.1:$PORT_B MDB_DSN=$DB_CON \
MDB_LOG_A=$WORK/a.log MDB_LOG_B=$WORK/b.log MDB_LLM_URL=$LLM_URL MDB_CHECK_INTERVAL=$CHECK_INTERVAL \
  "$VENV/bin/python" "$ROOT/scripts/mindsdb_shared_metadata.py" &
CHECKS_PID=$!
wait "$CHECKS_PID"
