#!/usr/bin/env bash
# The project's test command (CI runs exactly this): set up, lint, then every test,
# the slow lecture-parity runs included, then the cross-implementation tests again under the
# CPU kernel sets below the native one (scripts/portability.sh). Extra arguments go to pytest
# (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
bash scripts/portability.sh
