#!/usr/bin/env bash
# One command that shows obliviate on a GPU (issue 26 §3), offline, in about 10 minutes on one H100:
#   bash benchmarks/gpu_check.sh [OUT]          (default OUT: runs/gpu_check; run after scripts/setup.sh)
# 1. `obliviate bench` on SmolLM2-135M-Instruct: training steps of three recipes + the scoring pass and generation
# 2. the tiny demo (world, models, unlearning, evaluation, attacks, report card)
# 3. `obliviate eval` of the demo's target, whose title must say the model is on cuda (bf16 autocast)
# 4. a short `obliviate steal` (DFHL-RS on digits, the classifier module), whose summary must say cuda
# 5. when 2 GPUs are visible: a 2-process DDP `obliviate unlearn` (configs/accelerate/ddp.yaml), 4 steps
# Everything lands under OUT (one log per step, summary.txt); without CUDA it stops in one line.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=${1:-runs/gpu_check}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE TQDM_DISABLE=1
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)" 2>/dev/null || echo 0)
if [ "$GPUS" = "0" ]; then
    echo "gpu_check: no CUDA device visible to torch ($("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo 'torch not importable')); run it on a GPU machine" >&2
    exit 1
fi
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
"$PY" -c "import torch; print('torch', torch.__version__, '| GPUs:', ', '.join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))" > "$SUMMARY"

step() {  # step NAME CMD...: run, log to OUT/NAME.log, record the wall time; stop at the first failure
    local name=$1; shift
    local t0=$SECONDS
    if "$@" > "$OUT/$name.log" 2>&1; then
        echo "$name: ok in $((SECONDS - t0)) s" | tee -a "$SUMMARY"
    else
        echo "$name: FAILED after $((SECONDS - t0)) s (see $OUT/$name.log)" | tee -a "$SUMMARY" >&2
        tail -5 "$OUT/$name.log" >&2
        exit 1
    fi
}

step bench_smollm2 "$PY" -m obliviate bench --model smollm2-135m-instruct --recipes ga+gd,npo+gd,npo+gd+sam \
    --steps 8 --eval --out "$OUT/bench_smollm2"
step demo_tiny "$PY" -m obliviate demo --preset tiny --seeds 1 --out "$OUT/demo"
step eval_cuda "$PY" -m obliviate eval --model "$OUT/demo/models/target" --data "$OUT/demo/world" \
    --out "$OUT/eval_target" max_items=20 max_new_tokens=32
grep -q " on cuda" "$OUT/eval_cuda.log" || { echo "eval_cuda: the model was not on cuda (see $OUT/eval_cuda.log)" | tee -a "$SUMMARY" >&2; exit 1; }
echo "eval_cuda: $(grep -o "obliviate eval: .* on cuda[^)]*)" "$OUT/eval_cuda.log" | head -1)" >> "$SUMMARY"
step steal_cuda "$PY" -m obliviate steal --train-target digits --out "$OUT/steal" epochs=3 target_epochs=3 \
    eval_attacks=fgsm,pgd20 aa_n=0
grep -q " on cuda" "$OUT/steal_cuda.log" || { echo "steal_cuda: the classifiers were not on cuda (see $OUT/steal_cuda.log)" | tee -a "$SUMMARY" >&2; exit 1; }
if [ "$GPUS" -ge 2 ]; then
    step ddp_2gpu "$PY" -m accelerate.commands.launch --config_file src/obliviate/configs/accelerate/ddp.yaml \
        --num_processes 2 -m obliviate unlearn --model "$OUT/demo/models/target" --data "$OUT/demo/world" \
        --recipe npo+gd --out "$OUT/ddp_unlearn" max_steps=4 batch_size=8
else
    echo "ddp_2gpu: skipped (1 GPU visible)" | tee -a "$SUMMARY"
fi
echo "gpu_check: all steps passed; results under $OUT (summary: $SUMMARY)"
