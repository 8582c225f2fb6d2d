#!/usr/bin/env bash
# The upcycling demonstration: trains a dense quickstart-size model on the fortunes corpus, then
# continues it three ways for the same number of steps (on the same batches, same optimizer and
# schedule, fresh optimizer state): as the dense model, upcycled to 8 experts top-2 (coarse, every
# expert a copy of the dense FFN), and upcycled to the quickstart's fine-grained shape (a shared
# expert from the FFN's first 256 units, 16 experts of 128 from the other 512, top-4: granularity 4
# with virtual-group routing). Writes losses.csv and losses.png (matplotlib) and prints the numbers.
#   scripts/upcycle-demo.sh [RUN_DIR]          (default runs/upcycle-demo-<time>)
# Environment: DENSE_STEPS (400) and EXTRA_STEPS (400) optimizer steps; SY_BUILD_DIR (build).
# Takes about 25 minutes on two CPU cores with the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
DENSE_STEPS="${DENSE_STEPS:-400}"
EXTRA_STEPS="${EXTRA_STEPS:-400}"
RUN_DIR="${1:-runs/upcycle-demo-$(date +%Y%m%d-%H%M%S)}"
BUILD_DIR="${SY_BUILD_DIR:-build}"
SWITCHYARD="$BUILD_DIR/switchyard"
PYTHON=/usr/bin/python3
start=$SECONDS

if [ ! -x "$SWITCHYARD" ] || ! "$SWITCHYARD" upcycle --help >/dev/null 2>&1; then
  SY_BUILD_DIR="$BUILD_DIR" SY_BUILD_TARGETS=switchyard bash scripts/build.sh
fi
SY_BUILD_DIR="$BUILD_DIR" bash scripts/get-data.sh fortunes
if [ -e "$RUN_DIR" ]; then
  echo "upcycle-demo: $RUN_DIR exists; give a new run directory" >&2
  exit 1
fi
mkdir -p "$RUN_DIR"

# The dense model: configs/dense_baseline.yaml (the quickstart's dense twin) at ffn_size 768,
# which 8 experts copy whole and which cuts into a 256-unit shared expert plus 4 slices of 128.
DENSE=(--config configs/dense_baseline.yaml --set model.ffn_size=768)
# Both MoE variants keep the quickstart's routing (softmax before top-k) with renormalized top-k
# weights, which makes the upcycled model compute exactly the dense one at the start.
COARSE=(--config configs/quickstart.yaml --set model.first_k_dense_layers=0 --set moe.num_experts=8
        --set moe.top_k=2 --set moe.expert_ffn_size=768 --set moe.num_shared_experts=0
        --set moe.renormalize=true)
GRANULAR=(--config configs/quickstart.yaml --set model.first_k_dense_layers=0 --set moe.renormalize=true)

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
"$SWITCHYARD" upcycle --dense "$RUN_DIR/dense/checkpoints" "${GRANULAR[@]}" --output "$RUN_DIR/init-granular16-top4"
train dense-continued "$EXTRA_STEPS" "${DENSE[@]}" --set "checkpoint.load=$RUN_DIR/dense/checkpoints"
train moe8-top2 "$EXTRA_STEPS" "${COARSE[@]}" --set "checkpoint.load=$RUN_DIR/init-moe8-top2"
train granular16-top4 "$EXTRA_STEPS" "${GRANULAR[@]}" --set "checkpoint.load=$RUN_DIR/init-granular16-top4"

# losses.csv (run, step counted from the dense model's first step, train and validation LM loss),
# the summary, and the plot.
"$PYTHON" - "$RUN_DIR" "$DENSE_STEPS" <<'EOF'
import csv, json, os, sys

run_dir, dense_steps = sys.argv[1], int(sys.argv[2])
runs = ["dense", "dense-continued", "moe8-top2", "granular16-top4"]
series = {}
for run in runs:
    train, valid = {}, {}
    with open(os.path.join(run_dir, run, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            step = record["step"] + (0 if run == "dense" else dense_steps)
            if "train/lm_loss" in record:
                train[step] = record["train/lm_loss"]
            if "valid/lm_loss" in record:
                valid[step] = record["valid/lm_loss"]
    series[run] = (train, valid)

with open(os.path.join(run_dir, "losses.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["run", "step", "train_lm_loss", "valid_lm_loss"])
    for run in runs:
        train, valid = series[run]
        for step in sorted(set(train) | set(valid)):
            writer.writerow([run, step, train.get(step, ""), valid.get(step, "")])

print(f"\nupcycle-demo: {dense_steps} dense steps, then each continuation (steps counted from the start)")
print(f"{'run':<18} {'first train loss':>17} {'last-20 train loss':>19} {'final valid loss':>17}")
for run in runs:
    train, valid = series[run]
    steps = sorted(train)
    last = [train[s] for s in steps[-20:]]
    final_valid = valid[max(valid)] if valid else float("nan")
    print(f"{run:<18} {train[steps[0]]:>17.4f} {sum(last) / len(last):>19.4f} {final_valid:>17.4f}")

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("upcycle-demo: no matplotlib for /usr/bin/python3 (Debian: python3-matplotlib); losses.csv only")
    sys.exit(0)

def smooth(values, width=10):
    out = []
    for i in range(len(values)):
        window = values[max(0, i - width + 1):i + 1]
        out.append(sum(window) / len(window))
    return out

fig, ax = plt.subplots(figsize=(8, 5))
for run, color in zip(runs, ["black", "tab:gray", "tab:blue", "tab:orange"]):
    train, valid = series[run]
    steps = sorted(train)
    ax.plot(steps, smooth([train[s] for s in steps]), color=color, lw=1, label=f"{run} (train, 10-step mean)")
    if valid:
        ax.plot(sorted(valid), [valid[s] for s in sorted(valid)], "o--", color=color, ms=4, label=f"{run} (validation)")
ax.axvline(dense_steps, color="gray", ls=":", lw=1)
ax.set_xlabel("optimizer step (continuations start where the dense run ended)")
ax.set_ylabel("LM loss (nats/token)")
ax.set_title("Upcycling the dense quickstart-size model (fortunes)")
lows = [min(series[run][0].values()) for run in runs]
ax.set_ylim(min(lows) - 0.2, min(lows) + 2.5)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(os.path.join(run_dir, "losses.png"), dpi=120)
print(f"upcycle-demo: wrote {run_dir}/losses.csv and {run_dir}/losses.png")
EOF
echo "upcycle-demo: $((SECONDS - start)) s; runs in $RUN_DIR"
