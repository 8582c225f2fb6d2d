#!/usr/bin/env bash
# Usage: mpirun_train.sh SWITCHYARD_BINARY
# The command line end to end under the shipped mpirun wrapper: the quickstart model trains on
# 2 processes (DP 2, EP 2) and stops with a sharded checkpoint; one process resumes it (the
# checkpoint reshards to EP 1) and finishes; a rank that cannot read its config ends the job
# non-zero. Skips (77) when the fortunes corpus is not installed (scripts/get-data.sh).
set -u
binary=$1
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ ! -f "$root/corpora/fortunes/fortunes_text_document.idx" ]]; then
  echo "SKIP: corpora/fortunes is missing (bash scripts/get-data.sh fortunes)"; exit 77
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
common=(--config "$root/configs/quickstart.yaml" --set training.steps=4 --set schedule.warmup_steps=1 --set training.eval_interval=2
        --set training.eval_batches=2 --set training.peak_flops=1e11 --set logging.progress=none
        --set logging.tensorboard=false --set "training.output_dir=$work/run")
fail() { echo "FAIL: $*"; exit 1; }

timeout 300 "$root/launch/scripts/mpirun.sh" -n 2 --threads 1 --binary "$binary" -- train "${common[@]}" \
  --set parallel.data=2 --set parallel.expert=2 --stop-at-step 2 || fail "the 2-process run exited $?"
ls "$work/run/checkpoints/step_00000002" | grep -q "model-rank00001" || fail "no shard of rank 1 in the checkpoint"
OMP_NUM_THREADS=1 timeout 300 "$binary" train "${common[@]}" --resume || fail "the 1-process resume exited $?"
steps=$(grep -c '"train/lm_loss"' "$work/run/metrics.jsonl")
[[ "$steps" == 4 ]] || fail "metrics.jsonl has $steps training steps, expected 4"
[[ -f "$work/run/result.json" ]] || fail "no result.json after the resumed run"

output=$(timeout 120 "$root/launch/scripts/mpirun.sh" -n 2 --threads 1 --binary "$binary" -- train \
  --config "$work/missing.yaml" 2>&1)
status=$?
[[ $status -ne 0 && $status -ne 124 ]] || fail "a missing config gave exit $status"
grep -q "missing.yaml" <<<"$output" || fail "the error does not name the missing file: $output"
echo PASS
