#!/usr/bin/env bash
# One lent GPU's benchmark run, as the device tool executes it from the repository root:
# installs the carried wheels (grain, ml-collections, tfds; see ../shared/gpu/README.md), records
# the machine and library versions, then runs the named suites' step entries one after another.
# Every finished entry is appended to $OUT/<suite>.partial.jsonl at once, so a run cut off by the
# lease's time limit still returns what it measured.
#   usage: bash benchmarks/device_run.sh SUITE [SUITE ...]   (e.g. gpu-methods gpu-vit)
set -uo pipefail
OUT=${OUT:-runs/bench}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || { echo "device_run: wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
{
  date -u +%FT%TZ
  git rev-parse --short HEAD 2>/dev/null || echo "commit: not a git checkout"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import sys, jax, flax, optax, orbax.checkpoint, grain; print(sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'grain', grain.__version__, jax.devices())"
} 2>&1 | tee "$OUT/machine.txt"
for suite in "$@"; do
  echo "=== suite $suite ($(date -u +%T))"
  python3 -m benchmarks.run --suite "$suite" --only steps --worker-timeout "${WORKER_TIMEOUT:-300}" \
    --out "$OUT/$suite.json" 2>&1
done
