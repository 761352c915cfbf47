#!/usr/bin/env bash
# The checks that need a CUDA device (CI has none): AdaHessian's CUDA tests, the optimizer benchmark, every task
# through run.py on the GPU (fp32, fp16 with GradScaler, bf16), Table 8's speed at the paper's batch size, and the
# paper's IWSLT14 configuration for a few hundred updates. Each step has a time limit and its own log; one failing
# step does not stop the others. The summary (step, exit code, seconds) is $OUT/summary.txt.
#
#   bash scripts/gpu_checks.sh [OUT]          # OUT default: results/gpu/<date>
#   IWSLT_BIN=data/iwslt14/data-bin           # binarized IWSLT14 (scripts/prepare_iwslt14.sh); missing: step skipped
#   IWSLT_UPDATES=300                         # updates of each IWSLT14 run
#
# Results recorded in the repository: results/gpu/ (see its README.md).
set -u
cd "$(dirname "$0")/.."
OUT=${1:-results/gpu/$(date +%Y%m%d-%H%M)}
IWSLT_BIN=${IWSLT_BIN:-data/iwslt14/data-bin}
IWSLT_UPDATES=${IWSLT_UPDATES:-300}
WORK=${GPU_CHECKS_WORK:-$(mktemp -d)}   # checkpoints (large), not kept
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 WANDB_MODE=${WANDB_MODE:-offline}
RUN_ARGS=(paths.results_dir="$OUT/results" paths.work_dir="$WORK" trainer.progress=false)

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2 start rc
    shift 2
    echo "== $name: $*" | tee -a "$OUT/commands.txt"
    start=$(date +%s)
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    echo "$name rc=$rc $(($(date +%s) - start))s" | tee -a "$OUT/summary.txt"
    tail -n 4 "$OUT/$name.log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
} >"$OUT/device.txt" 2>&1
cat "$OUT/device.txt"

step cuda_tests 150 python -m pytest -q -p no:cacheprovider tests/optim/test_cuda.py
step bench_optim 300 python scripts/bench_optim.py --model all --device cuda --steps 50 --warmup 5 \
    --out "$OUT/bench_optim_cuda"
if [ -f "$IWSLT_BIN/dict.en.txt" ]; then
    # The paper's IWSLT14 settings (conf/task/iwslt14.yaml, conf/task_optim/iwslt14_*.yaml) cut at IWSLT_UPDATES
    # updates; generation capped at 1.2 x source + 10 tokens (an untrained model otherwise runs to 200).
    for opt in adahessian adamw; do
        step "iwslt14_$opt" 300 python run.py task=iwslt14 optim=$opt data.root="$IWSLT_BIN" data.sacrebleu_ref=null \
            trainer.max_steps="$IWSLT_UPDATES" '+task.generate.args={max_len_a: 1.2, max_len_b: 10}' "${RUN_ARGS[@]}"
    done
else
    echo "iwslt14 skipped: no binarized data at $IWSLT_BIN" | tee -a "$OUT/summary.txt"
fi
step tasks_fp32 150 python run.py -m task=cifar10_resnet20,ptb_transformer,criteo_dlrm optim=adahessian \
    trainer=smoke data.source=synthetic "${RUN_ARGS[@]}"
step vision_fp16 90 python run.py task=cifar10_resnet20 optim=adahessian trainer=smoke data.source=synthetic \
    trainer.precision=fp16 "${RUN_ARGS[@]}"
step lm_bf16 90 python run.py task=ptb_transformer optim=adahessian trainer=smoke data.source=synthetic \
    trainer.precision=bf16 "${RUN_ARGS[@]}"
step speed_table8 240 python -m scripts.speed --task cifar10_resnet20 --scale paper --data-source synthetic --steps 10 --repeats 3 \
    --results-dir "$OUT/results" --tables-dir "$OUT/tables" --figures-dir "$OUT/figures"
cat "$OUT/summary.txt"
