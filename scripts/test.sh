#!/usr/bin/env bash
# Install everything the test suite needs, then run lint, types and the whole suite.
# This is the README's second Quick start command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
export SPARK_LOCAL_IP=127.0.0.1 PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m pip install --quiet -e ".[dev]"
python3 -m ruff check dataeng_magics tests bench
python3 -m ruff format --check dataeng_magics tests bench
python3 -m mypy
python3 -m pytest "$@"
