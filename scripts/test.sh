#!/usr/bin/env bash
# Install everything the test suite needs, then run lint, types and the whole suite.
# This is the README's second Quick start command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
export SPARK_LOCAL_IP=127.0.0.1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Debian's Chromium for the browser tests (tests/browser), driven by Playwright; never a
# browser download (`playwright install`). Skipped when it is already there.
if [ ! -x /usr/bin/chromium ]; then
  SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
# Also builds the JupyterLab extension (npm, in labextension/) when its source is newer.
python3 -m pip install --quiet -e ".[dev]"
# Azurite (the Azure Blob emulator) for the storage tests, into .cache/node; skipped
# when it is already there, so a warm run costs nothing.
if [ ! -x .cache/node/node_modules/.bin/azurite-blob ] && command -v npm >/dev/null; then
  npm install --silent --no-save --no-audit --no-fund --prefix .cache/node azurite@3
fi
python3 -m ruff check dataeng_magics tests bench
python3 -m ruff format --check dataeng_magics tests bench
python3 -m mypy
python3 -m pytest "$@"
