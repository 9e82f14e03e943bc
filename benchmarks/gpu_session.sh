#!/usr/bin/env bash
# Every GPU figure docs/performance.md needs, most important first, each step under its own
# time limit (580 s in all) so that a short lease still returns the first tables. QUICK=1 runs
# every step briefly on a CPU; benchmarks/README.md#a-gpu-session says what it writes.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c "import keras" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/keras_resnet_site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/keras_resnet_site${PYTHONPATH:+:$PYTHONPATH}
fi

if [ "${QUICK:-0}" = 1 ]; then  # checks, not figures: a step or two a row, programs compiled once
  STEPS=(--model resnet8 --batch-size 8 --steps 1 --eval-steps 1 --eval-batch-size 8)
  BF16=(--frameworks keras keras-trainer) PIPE=(--images 1024 --repeats 1)
  HOST=(--quick --devices 2)  # no more virtual devices than a 2-core CI machine's cores
  export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-${TMPDIR:-/tmp}/keras-resnet-quick}
  export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
else
  STEPS=(--steps 50) BF16=() PIPE=()
  HOST=(--epochs 4 --rows jax keras-fit trainer-note trainer-keras-log)
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
"$PYTHON" -c "import jax; print('jax', jax.__version__, jax.devices())"

LOG="$OUT/gpu_session.log"
: >"$LOG"
step() {  # step NAME LIMIT COMMAND...: run it, keep its output, never stop the session
  local name=$1 limit=$2
  shift 2
  echo "== $name" | tee -a "$LOG"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  echo "== $name exited with ${PIPESTATUS[0]}" | tee -a "$LOG"
}

step throughput-float32 170 "$PYTHON" -m benchmarks.throughput --recipe paper \
  "${STEPS[@]}" --json "$OUT/throughput-float32.json"
step throughput-bfloat16 170 "$PYTHON" -m benchmarks.throughput --recipe fast \
  "${STEPS[@]}" "${BF16[@]}" --json "$OUT/throughput-bfloat16.json"
step input-pipeline 60 "$PYTHON" -m benchmarks.input_pipeline "${PIPE[@]}" \
  --batch-size 512 --against "$OUT/throughput-bfloat16.json" --json "$OUT/input_pipeline.json"
step host-overhead 180 "$PYTHON" -m benchmarks.host_overhead "${HOST[@]}" \
  --json "$OUT/host_overhead.json"
