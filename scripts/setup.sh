#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment in .venv with vaekit and its
# development tools. Uses the CPU build of torch 2.13.0 (no multi-GB CUDA download), and
# Debian's chromium for the report's browser test. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# Pin torch first so that nothing below asks for a (CUDA) build of another version.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev]"

# Headless Chromium for the HTML report test (never a Playwright browser download).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "warning: could not install chromium; browser tests will be skipped" >&2
fi
# Matplotlib caches its font list per user, with absolute paths. A list written by another
# virtual environment that is gone since names fonts that no longer exist, and every figure then
# warns on stderr ("findfont: Font family ... not found"), which breaks the CLI's output. Rebuild
# it for this environment now, so that no test sees the rebuild or those warnings.
.venv/bin/python - <<'PY'
import glob, os
import matplotlib
for cached in glob.glob(os.path.join(matplotlib.get_cachedir(), "fontlist-*.json")):
    os.remove(cached)
import matplotlib.font_manager  # noqa: E402,F401  (builds the list again)
PY
echo "set-up done: $(.venv/bin/python -c 'import torch, vaekit; print("vaekit", vaekit.__version__, "torch", torch.__version__)')"
