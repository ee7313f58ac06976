#!/usr/bin/env bash
# Reruns the cross-implementation tests (marker "numerics") under every CPU kernel set that
# PyTorch can use on this machine below its native one. PyTorch picks its kernels by the
# processor's instruction set (default < avx2 < avx512) and each sums in its own order, so a
# tolerance that holds on one CI machine must hold on all of them (issue 13; tests/numerics.py
# derives the tolerances). The native kernels already ran in the main test pass. Slow and
# browser tests are left out: they add no kernel-dependent comparison. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
native=$("$PY" -c 'import torch; print(torch.backends.cpu.get_cpu_capability().lower())')
case "$native" in
    avx512*) below="default avx2" ;;
    avx2) below="default" ;;
    *) below="" ;;
esac
# On a machine whose native set is avx512 this reruns default and avx2; on an avx2 machine, default.
for capability in $below; do
    echo "== numerics tests under ATEN_CPU_CAPABILITY=$capability (native: $native)"
    ATEN_CPU_CAPABILITY=$capability "$PY" -m pytest -q -p no:cacheprovider -m "numerics and not slow and not browser" "$@"
done
[ -n "$below" ] || echo "== native kernels are '$native': no other kernel set to try"
