#!/usr/bin/env python3
"""The upcycling demonstration's report (scripts/upcycle-demo.sh): losses.csv (run, step counted
from the dense model's first step, train and validation LM loss), a summary table, and losses.png.
    /usr/bin/python3 scripts/upcycle-demo-report.py RUN_DIR DENSE_STEPS
"""
import csv, json, os, sys

run_dir, dense_steps = sys.argv[1], int(sys.argv[2])
# The runs scripts/upcycle-demo.sh makes; a folder without one (an older demo) is left out.
runs = [run for run in ["dense", "dense-continued", "moe8-top2", "granular32-top8", "granular16-top4"]
        if os.path.exists(os.path.join(run_dir, run, "metrics.jsonl"))]
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
print(f"{'run':<18} {'first train loss':>17} {'last-20 train loss':>19} {'final valid loss':>17} {'minus dense-continued':>22}")
reference_final = series["dense-continued"][1][max(series["dense-continued"][1])]
for run in runs:
    train, valid = series[run]
    steps = sorted(train)
    last = [train[s] for s in steps[-20:]]
    final_valid = valid[max(valid)] if valid else float("nan")
    versus = f"{final_valid - reference_final:+.4f}" if run not in ("dense", "dense-continued") else ""
    print(f"{run:<18} {train[steps[0]]:>17.4f} {sum(last) / len(last):>19.4f} {final_valid:>17.4f} {versus:>22}")

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

colors = {"dense": "black", "dense-continued": "tab:gray", "moe8-top2": "tab:blue", "granular32-top8": "tab:green",
          "granular16-top4": "tab:orange"}  # by name, so a folder without one run keeps the others' colours
fig, (ax, diff) = plt.subplots(1, 2, figsize=(13, 5))
for run in runs:
    train, valid = series[run]
    steps = sorted(train)
    ax.plot(steps, smooth([train[s] for s in steps]), color=colors[run], lw=1, label=f"{run} (train, 10-step mean)")
    if valid:
        ax.plot(sorted(valid), [valid[s] for s in sorted(valid)], "o--", color=colors[run], ms=4,
                label=f"{run} (validation)")
ax.axvline(dense_steps, color="gray", ls=":", lw=1)
ax.set_xlabel("optimizer step (continuations start where the dense run ended)")
ax.set_ylabel("LM loss (nats/token)")
ax.set_title("Upcycling the dense quickstart-size model (gcide)")
lows = [min(series[run][0].values()) for run in runs]
ax.set_ylim(min(lows) - 0.2, min(lows) + 2.5)
ax.legend(fontsize=8)

# The continuations differ by hundredths of a nat: each upcycled run minus the dense
# continuation, step by step on the same batches (train, 50-step mean) and on validation.
reference_train, reference_valid = series["dense-continued"]
for run in runs[2:]:
    train, valid = series[run]
    steps = sorted(set(train) & set(reference_train))
    diff.plot(steps, smooth([train[s] - reference_train[s] for s in steps], 50), color=colors[run], lw=1,
              label=f"{run} (train, 50-step mean)")
    common = sorted(set(valid) & set(reference_valid))
    diff.plot(common, [valid[s] - reference_valid[s] for s in common], "o--", color=colors[run], ms=4,
              label=f"{run} (validation)")
diff.axhline(0, color="gray", lw=1)
diff.set_xlabel("optimizer step")
diff.set_ylabel("LM loss minus the dense continuation's (nats/token)")
diff.set_title("Below 0: the upcycled model is ahead of dense")
diff.legend(fontsize=8)
fig.tight_layout()
fig.savefig(os.path.join(run_dir, "losses.png"), dpi=110)
print(f"upcycle-demo: wrote {run_dir}/losses.csv and {run_dir}/losses.png")
