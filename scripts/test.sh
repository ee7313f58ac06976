#!/usr/bin/env bash
# The project's test command (CI runs exactly this): set up, lint, then every test,
# the slow lecture-parity runs included. Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
