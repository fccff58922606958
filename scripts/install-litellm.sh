#!/usr/bin/env bash
# Install LiteLLM's proxy (PyPI `litellm[proxy]`, pinned below) into its own venv,
# ${1:-.tools}/litellm-venv, with ${1:-.tools}/bin/litellm linked to it.
#
# Why: the chat bench (tests/benches/chat.rs) runs it in front of the same OpenAI double as the
# gateway, so both gateways' added latency and throughput are measured in one run, the same way.
# Its own venv: the proxy pins many packages (fastapi, pydantic, openai...) that must not move
# under the tools of scripts/install-deploy-tools.sh.
#
# The pin: newer releases (1.108.14 and later, checked 2026-12-07) require a litellm-proxy-extras
# version PyPI does not serve, so their [proxy] extra does not install.
#
# Idempotent: nothing is done when the pinned version is already installed.
# Usage: scripts/install-litellm.sh [DEST]
set -euo pipefail

DEST=${1:-.tools}
LITELLM_VERSION=1.100.5
PYTHON=${PYTHON:-python3}

mkdir -p "$DEST/bin"
DEST=$(cd "$DEST" && pwd)
VENV="$DEST/litellm-venv"

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
have=$("$VENV/bin/python" -m pip show litellm 2>/dev/null | awk '/^Version:/{print $2}') || true
if [[ "$have" == "$LITELLM_VERSION" && -x "$VENV/bin/litellm" ]]; then
  echo "litellm $have already installed ($VENV)"
else
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "litellm[proxy]==$LITELLM_VERSION"
  echo "installed litellm[proxy] $LITELLM_VERSION ($VENV)"
fi
ln -sf "$VENV/bin/litellm" "$DEST/bin/litellm"
