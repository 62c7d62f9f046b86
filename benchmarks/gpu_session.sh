#!/bin/bash
# The GPU issue's prepared script, one command on the GPU machine (run from the repository root):
#
#     bash ../shared/device/prepare.sh tiktok        # here, once: builds .device/ (carry it)
#     source .device/env.sh && bash benchmarks/gpu_session.sh   # there; every number lands in $OUT
#     source .device/env.sh && bash benchmarks/gpu_session.sh reproduce   # a later call: step 5 only
#
# In the issue's order, each step under its own timeout (about 9.5 min in all, inside one 10-minute
# call): 1. the tests that take a device, on CUDA; 2. one TikTok KDiffE trial alone, profiled;
# 3. 1, 8 and 16 trials packed on the card through the real runner; 4. one epoch of every model of
# the zoo. A step that fails or times out is recorded (steps.txt) and the next one runs.
# Step 5, "reproduce" (its own call, REPRODUCE_SECONDS long, default 240): the baselines part of
# tune/reproduce.py for DiffMM (a GPU's work: 93 s per epoch on 2 CPU cores), 8 trials packed on the
# card, stored in docs/results as on the CPU machine; the parts it touched come back in
# $OUT/results (their tidy files and trial records): copy them into docs/results here and commit
# them; a part cut by the timeout resumes from its records on the next call (ended trials kept).
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
: > "$OUT/steps.txt"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; date -u +%FT%TZ; } > "$OUT/card.txt" 2>&1

step() {  # name, seconds, command...
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "$name exit=$? seconds=$((SECONDS - start))" | tee -a "$OUT/steps.txt"
}

if [ "${1:-}" = reproduce ]; then
    step 5-reproduce "${REPRODUCE_SECONDS:-240}" python tune/reproduce.py --storage docs/results --parts baselines \
        --datasets tiktok --baseline-models "${REPRODUCE_MODELS:-diffmm}" --gpus-per-trial 0.125 --max-concurrent 8
    for part in docs/results/tiktok-baseline-*; do  # what this call wrote: the tidy files git would take
        [ -n "$(git status --porcelain -- "$part")" ] || continue
        git ls-files --others --modified --exclude-standard -- "$part" | while read -r file; do
            mkdir -p "$OUT/results/$(dirname "${file#docs/results/}")" && cp "$file" "$OUT/results/${file#docs/results/}"
        done
    done
    exit 0
fi

step 1-tests-on-cuda 120 python -m pytest -q tests/test_on_device.py --device cuda
step 2-one-trial 80 python benchmarks/profile_epoch.py --dataset tiktok --epochs 3 --ops --set device=cuda
step 3-packed 220 python benchmarks/bench_throughput.py --dataset tiktok --epochs 2 --concurrency 1,8,16 --gpus \
    --json "$OUT/throughput.json"
step 4-zoo 150 python benchmarks/bench_epoch.py --datasets tiktok --variants kdiffe \
    --models all --epochs 2 --device cuda
