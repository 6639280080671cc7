#!/usr/bin/env bash
# The GPU check on a machine without network: run from the repository root after copying it there with its
# wheels/ folder (made by `make wheels` on a machine with network). Installs those wheels into .gpu-site/
# (--no-index --no-deps: nothing is downloaded and the machine's torch is never touched), then runs
# bench/gpu_check.py from the source tree. Extra arguments go to gpu_check.py (e.g. --item-limit lut=60,
# --items train,eval, --out FILE; a later --out wins).
#
# Every item runs in its own process under a wall-clock limit (default: 330 s for all, so the whole run,
# set-up included, ends within 6 minutes); an item that runs over is killed and reported as
# `<item>: timed out after N s`. The `name: value` lines go to the terminal and, as they come, to
# bench_out/gpu_check-<UTC time>.txt (gitignored; or $GPU_CHECK_OUT): copy that file back from the box.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SITE=.gpu-site
OUT=${GPU_CHECK_OUT:-bench_out/gpu_check-$(date -u +%Y%m%dT%H%M%SZ).txt}
if ! PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c "import pydantic, pymoo" 2>/dev/null; then
    if ! ls wheels/*.whl >/dev/null 2>&1; then
        echo "gpu_check: pydantic/pymoo are missing and there is no wheels/ folder: run 'make wheels' on a machine with network and copy wheels/ here" >&2
        exit 2
    fi
    "$PY" -m pip install --quiet --no-index --find-links wheels --no-deps --target "$SITE" wheels/*.whl
fi
PYTHONPATH="$PWD/$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" bench/gpu_check.py --out "$OUT" "$@"
