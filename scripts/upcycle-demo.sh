#!/usr/bin/env bash
# The upcycling demonstration: trains a dense quickstart-size model on the gcide dictionary corpus,
# then continues it four ways for the same number of steps on the same fresh batches (the samples
# after those the dense run consumed: training.skip_samples), with the same optimizer and schedule
# and a fresh optimizer state:
#   dense-continued   the dense model (FFN 768);
#   moe8-top2         coarse: 8 experts, each a copy of the dense FFN, top-2 (2x the FFN compute);
#   granular32-top8   fine-grained, granularity 4: 32 experts of 192 (8 copies of the FFN cut in 4
#                     slices), top-8 with virtual-group routing (the coarse model's compute and size);
#   granular16-top4   the quickstart's shape: a shared expert from the FFN's first 256 units, 16
#                     experts of 128 from the other 512, top-4 (granularity 4, the dense compute).
# Writes losses.csv and losses.png (matplotlib, scripts/upcycle-demo-report.py) and prints the numbers.
#   scripts/upcycle-demo.sh [RUN_DIR]          (default runs/upcycle-demo-<time>)
# Environment: DENSE_STEPS (400) and EXTRA_STEPS (2000) optimizer steps; CONTINUE_LR (3e-3, the
# dense run's peak) the continuations' peak learning rate; CONTINUATIONS (all four) the names of
# those to run (dense-continued, the reference, always runs); CONCURRENT (1: the continuations at
# once; 0: one after another); OMP_NUM_THREADS (1) per run; SY_BUILD_DIR (build).
# Takes about 1 h 45 min on two CPU cores with the defaults (400 + 800 steps: about 50 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
DENSE_STEPS="${DENSE_STEPS:-400}"
EXTRA_STEPS="${EXTRA_STEPS:-2000}"
CONTINUE_LR="${CONTINUE_LR:-3e-3}"
ALL_CONTINUATIONS="dense-continued moe8-top2 granular32-top8 granular16-top4"
CONTINUATIONS="dense-continued ${CONTINUATIONS:-$ALL_CONTINUATIONS}"
for name in $CONTINUATIONS; do
  if [[ " $ALL_CONTINUATIONS " != *" $name "* ]]; then
    echo "upcycle-demo: CONTINUATIONS names '$name'; expected some of: $ALL_CONTINUATIONS" >&2
    exit 1
  fi
done
RUN_DIR="${1:-runs/upcycle-demo-$(date +%Y%m%d-%H%M%S)}"
BUILD_DIR="${SY_BUILD_DIR:-build}"
SWITCHYARD="$BUILD_DIR/switchyard"
PYTHON=/usr/bin/python3
GLOBAL_BATCH=16
# One OpenMP thread per run unless set (the continuations share the cores; more threads than
# cores slow every run down many times).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
start=$SECONDS

if [ ! -x "$SWITCHYARD" ] || ! "$SWITCHYARD" upcycle --help >/dev/null 2>&1; then
  SY_BUILD_DIR="$BUILD_DIR" SY_BUILD_TARGETS=switchyard bash scripts/build.sh
fi
SY_BUILD_DIR="$BUILD_DIR" bash scripts/get-data.sh gcide
if [ -e "$RUN_DIR" ]; then
  echo "upcycle-demo: $RUN_DIR exists; give a new run directory" >&2
  exit 1
fi
mkdir -p "$RUN_DIR"

# Every run: the quickstart's optimizer and schedule (lr 3e-3, 30 warmup steps, cosine to 0.1 x)
# and global batch of 16 x 128 tokens, on gcide (36 MB of text, ~10M tokens: the 400 + 2000 steps
# read 4.9M, no sample twice) with its 8192-token tokenizer, and 32 validation micro-batches (32K tokens).
DATA=(--set model.vocab_size=8192 --set data.tokenizer=corpora/gcide/tokenizer
      --set data.prefix=corpora/gcide/gcide_text_document --set "training.global_batch_size=$GLOBAL_BATCH"
      --set training.eval_batches=32)
# The dense model: configs/dense_baseline.yaml (the quickstart's dense twin) at ffn_size 768,
# which 8 experts copy whole and which cuts into a 256-unit shared expert plus 4 slices of 128.
DENSE=(--config configs/dense_baseline.yaml --set model.ffn_size=768 "${DATA[@]}")
# Both MoE variants keep the quickstart's routing (softmax before top-k) with renormalized top-k
# weights, which makes the upcycled model compute exactly the dense one at the start.
COARSE=(--config configs/quickstart.yaml --set model.first_k_dense_layers=0 --set moe.num_experts=8
        --set moe.top_k=2 --set moe.expert_ffn_size=768 --set moe.num_shared_experts=0
        --set moe.renormalize=true "${DATA[@]}")
FINE=(--config configs/quickstart.yaml --set model.first_k_dense_layers=0 --set moe.num_experts=32
      --set moe.top_k=8 --set moe.expert_ffn_size=192 --set moe.num_shared_experts=0
      --set moe.renormalize=true "${DATA[@]}")
GRANULAR=(--config configs/quickstart.yaml --set model.first_k_dense_layers=0 --set moe.renormalize=true "${DATA[@]}")
# The continuations: from the dense run's weights, on the samples after the dense run's, re-warmed
# to CONTINUE_LR and decayed again over EXTRA_STEPS.
CONTINUE=(--set "training.skip_samples=$((DENSE_STEPS * GLOBAL_BATCH))" --set "optimizer.lr=$CONTINUE_LR")

train() {  # train NAME STEPS ARGS...: one run under RUN_DIR/NAME
  local name="$1" steps="$2"
  shift 2
  echo "upcycle-demo: training $name for $steps steps"
  "$SWITCHYARD" train "$@" --set "training.steps=$steps" --set "training.output_dir=$RUN_DIR/$name" \
    --set logging.progress=lines --set training.eval_interval=100 > "$RUN_DIR/$name.log" 2>&1 ||
    { tail -20 "$RUN_DIR/$name.log" >&2; exit 1; }
  tail -3 "$RUN_DIR/$name.log"
}

train dense "$DENSE_STEPS" "${DENSE[@]}"
"$SWITCHYARD" upcycle --dense "$RUN_DIR/dense/checkpoints" "${COARSE[@]}" --output "$RUN_DIR/init-moe8-top2"
"$SWITCHYARD" upcycle --dense "$RUN_DIR/dense/checkpoints" "${FINE[@]}" --output "$RUN_DIR/init-granular32-top8"
"$SWITCHYARD" upcycle --dense "$RUN_DIR/dense/checkpoints" "${GRANULAR[@]}" --output "$RUN_DIR/init-granular16-top4"
# continuation NAME SOURCE ARGS...: NAME from the weights in SOURCE on the samples after the dense
# run's, if CONTINUATIONS names it. The continuations are independent: CONCURRENT=1 (the default) runs them at once.
continuation() {
  local name="$1" source="$2"
  shift 2
  [[ " $CONTINUATIONS " == *" $name "* ]] || return 0
  train "$name" "$EXTRA_STEPS" "$@" "${CONTINUE[@]}" --set "checkpoint.load=$source"
}
pids=()
start() {
  if [ "${CONCURRENT:-1}" = 1 ]; then
    "$@" &
    pids+=($!)
  else
    "$@"
  fi
}
start continuation dense-continued "$RUN_DIR/dense/checkpoints" "${DENSE[@]}"
start continuation moe8-top2 "$RUN_DIR/init-moe8-top2" "${COARSE[@]}"
start continuation granular32-top8 "$RUN_DIR/init-granular32-top8" "${FINE[@]}"
start continuation granular16-top4 "$RUN_DIR/init-granular16-top4" "${GRANULAR[@]}"
for pid in "${pids[@]}"; do wait "$pid"; done

"$PYTHON" scripts/upcycle-demo-report.py "$RUN_DIR" "$DENSE_STEPS"
echo "upcycle-demo: $((SECONDS - start)) s; runs in $RUN_DIR"
