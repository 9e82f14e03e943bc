#!/usr/bin/env bash
# Every GPU figure docs/performance.md needs, from one run of one script:
#   1. benchmarks.throughput: ResNet-18 training, Keras fit vs pure JAX vs PyTorch, float32 at
#      batch 128 (the notes' setting) and mixed_bfloat16 at batch 512 (the fast recipe's);
#   2. benchmarks.input_pipeline: the input path against the bfloat16 training rate;
#   3. benchmarks.recipe_epochs: one whole epoch of each recipe and the projected runs (fast:
#      time to 94%);
#   4. benchmarks.host_overhead: the trainer's host cost per step beside a bare model.fit and a
#      plain JAX loop, on the GPU (its TensorFlow and virtual-CPU-device rows are left out).
# Each step has its own time limit and the steps run in order of importance, so a short lease
# still returns the first tables. Results go to $OUT (default benchmarks/results). The steps run
# as modules (python -m benchmarks.X) from the repository root, where this script starts them.
#
# On a machine without keras (the lent GPU machine has JAX, PyTorch, numpy, h5py, rich and
# ml-dtypes only), put the wheels of keras and what it lacks in .whl/ first; see
# benchmarks/README.md. QUICK=1 runs every step once with tiny settings (every framework at batch
# 16, the bfloat16 step Keras only, every recipe), to check the script and each report on a CPU.
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

if [ "${QUICK:-0}" = 1 ]; then  # each step once, briefly; tests/test_benchmarks.py checks every row
  MODEL=(--model resnet8) BF16=(--steps 2 --warmup 1 --eval-steps 0 --frameworks keras)
  STEPS=(--steps 2 --warmup 1 --eval-steps 2 --eval-batch-size 32 --batch-size 16)  # after 128
  PIPE=(--images 2048 --repeats 1)
  RECIPES=(--model resnet8 --images 5200 --steps 1 --warmup 1 --eval-images 256)
  HOST=(--quick)
  LIMITS=(300 300 300 300 300)
else  # at most 580 s in all: the device runs one command for 10 minutes at most
  MODEL=(--model resnet18) STEPS=(--steps 50 --warmup 5) BF16=("${STEPS[@]}") PIPE=() RECIPES=()
  HOST=(--epochs 4 --rows jax,keras-fit,trainer-note,trainer-keras-log)
  LIMITS=(140 140 50 180 70)
fi

# The device returns at most 8 files: one log of every step (gpu_session.log, each step's
# output between "== NAME" and "== NAME exited with ...") and the 5 JSON reports below.
date -u
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

step throughput-float32 "${LIMITS[0]}" "$PYTHON" -m benchmarks.throughput "${MODEL[@]}" \
  --batch-size 128 "${STEPS[@]}" --json "$OUT/throughput-float32.json"
step throughput-bfloat16 "${LIMITS[1]}" "$PYTHON" -m benchmarks.throughput "${MODEL[@]}" \
  "${BF16[@]}" --batch-size 512 --precision mixed_bfloat16 --json "$OUT/throughput-bfloat16.json"
step input-pipeline "${LIMITS[2]}" "$PYTHON" -m benchmarks.input_pipeline "${PIPE[@]}" \
  --batch-size 512 --against "$OUT/throughput-bfloat16.json" --json "$OUT/input_pipeline.json"
step recipe-epochs "${LIMITS[3]}" "$PYTHON" -m benchmarks.recipe_epochs "${RECIPES[@]}" \
  --json "$OUT/recipe_epochs.json"
step host-overhead "${LIMITS[4]}" "$PYTHON" -m benchmarks.host_overhead "${HOST[@]}" \
  --json "$OUT/host_overhead.json"
