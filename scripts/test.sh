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
# Debian's PostgreSQL for the team-state tests (tests/pg_server.py starts its own server
# in a temporary directory; the package's cluster is not used). Skipped when present.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
# The pinned versions of constraints/test.txt (pip adds them to any constraint file of its
# own configuration). Also builds the JupyterLab extension (npm, in labextension/) when
# its source is newer.
python3 -m pip install --quiet -c constraints/test.txt -e ".[dev]"
# IPython 8, the oldest major pyproject.toml allows, beside the test environment's IPython
# 9: pinned in constraints/ipython8.txt, installed into .cache/ipython8, which goes first
# on PYTHONPATH for a second type check and run of the magics tests. Skipped when the
# pinned versions are already there.
IPYTHON8="$PWD/.cache/ipython8"
if ! cmp -s constraints/ipython8.txt "$IPYTHON8/.pins"; then
  rm -rf "$IPYTHON8"
  python3 -m pip install --quiet --no-deps --target "$IPYTHON8" -r constraints/ipython8.txt
  cp constraints/ipython8.txt "$IPYTHON8/.pins"
fi
# Azurite (the Azure Blob emulator) for the storage tests, into .cache/node; skipped
# when it is already there, so a warm run costs nothing.
if [ ! -x .cache/node/node_modules/.bin/azurite-blob ] && command -v npm >/dev/null; then
  npm install --silent --no-save --no-audit --no-fund --prefix .cache/node azurite@3
fi
python3 -m ruff check dataeng_magics tests bench
python3 -m ruff format --check dataeng_magics tests bench
python3 -m mypy
# Again with IPython 8 (mypy reads the packages of the Python it runs on, PYTHONPATH first).
with_ipython8() { PYTHONPATH="$IPYTHON8${PYTHONPATH:+:$PYTHONPATH}" "$@"; }
ipython8_check='import IPython
print(f"with IPython {IPython.__version__} from {IPython.__file__}", flush=True)
assert IPython.version_info[0] == 8, IPython.__version__'
with_ipython8 python3 -c "$ipython8_check"
with_ipython8 python3 -m mypy --cache-dir .mypy_cache/ipython8
with_ipython8 python3 -c "$ipython8_check
import sys, pytest
sys.exit(pytest.main(['tests/test_magics.py', '-p', 'no:cacheprovider']))"
python3 -m pytest "$@"
