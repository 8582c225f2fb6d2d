#!/usr/bin/env bash
# The main job on a fresh machine: installs dependencies, builds, prepares the bundled fortunes
# corpus (tokenizer + indexed dataset), trains the small MoE of configs/quickstart.yaml on the
# CPU, evaluates it and prints a sample. Each run writes a new directory under runs/.
# Extra arguments go to `switchyard train` (e.g. --set training.steps=100).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/install-deps.sh
SY_BUILD_TARGETS=switchyard bash scripts/build.sh
bash scripts/get-data.sh fortunes
run_dir="runs/quickstart-$(date +%Y%m%d-%H%M%S)"
train_start=$(date +%s)
./build/switchyard train --config configs/quickstart.yaml --set "training.output_dir=$run_dir" "$@"
train_end=$(date +%s)
echo
echo "sample (temperature 0.8, top-k 40):"
./build/switchyard generate --checkpoint "$run_dir/checkpoints" --prompt "The" --max-new-tokens 80 --seed 1
echo
end=$(date +%s)
echo "quickstart: training $((train_end - train_start)) s, whole script $((end - start)) s; run in $run_dir"
