#!/usr/bin/python3
"""Scaling-law fits and plots for `switchyard sweep report`: reads report/runs.csv, writes
fits.md, fits.json and PNG plots next to it.

  usage: /usr/bin/python3 scripts/sweep/fit.py REPORT_DIR/runs.csv REPORT_DIR

The fits (the functions below are also what tests/sweep/fit_test.py checks on synthetic data):
  - iso-FLOP: for each compute budget, loss as a parabola in ln N; its vertex is the optimal
    size N* at that budget and its loss (Chinchilla's approach 2).
  - parametric: L(N, D) = E + A / N^alpha + B / D^beta, fitted as Chinchilla's approach 3:
    ln L_hat = logsumexp(a - alpha ln N, b - beta ln D, e) with A = e^a, B = e^b, E = e^e, a
    Huber loss (delta 1e-3) on ln L_hat - ln L, L-BFGS from the best points of a grid of
    starting values; intervals from a bootstrap over runs.
  - Efficiency Leverage (Tian et al. 2025, "Towards Greater Leverage"): the dense runs'
    compute-optimal frontier L(C) = E + A C^-a, inverted at an MoE run's loss, gives the
    compute a dense model needs for that loss; EL = that compute / the MoE run's compute.
    Reported against activation ratio K / E and granularity G = 2 C_model / F.
N is the run's active parameter count (total for dense runs), D its training tokens, and C
its training FLOPs (training FLOPs per token x tokens, as switchyard counts them).
"""

import csv
import json
import math
import os
import sys

import numpy as np

try:
    from scipy.optimize import minimize
except ImportError:  # pragma: no cover - the message is the point
    minimize = None

HUBER_DELTA = 1e-3


def require_scipy():
    if minimize is None:
        sys.exit("fit.py: scipy is missing; install python3-scipy (scripts/install-deps.sh)")


# --- iso-FLOP parabolas ---------------------------------------------------------------------

def isoflop_fit(n, loss):
    """Parabola loss = c2 x^2 + c1 x + c0 in x = ln N. Returns dict with the vertex (n_opt,
    loss_opt) when the parabola opens upward, else n_opt None."""
    x = np.log(np.asarray(n, dtype=float))
    y = np.asarray(loss, dtype=float)
    if len(np.unique(x)) < 3:
        return None
    c2, c1, c0 = np.polyfit(x, y, 2)
    fit = {"coefficients": [float(c2), float(c1), float(c0)], "n_opt": None, "loss_opt": None}
    if c2 > 0:
        x_opt = -c1 / (2 * c2)
        fit["n_opt"] = float(math.exp(x_opt))
        fit["loss_opt"] = float(c0 - c1 * c1 / (4 * c2))
        fit["inside"] = bool(x.min() <= x_opt <= x.max())
    return fit


# --- the parametric law ---------------------------------------------------------------------

def _huber_objective(params, log_n, log_d, log_loss, delta):
    a, b, e, alpha, beta = params
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    weights = np.exp(terms - top)
    total = weights.sum(axis=0)
    lse = top + np.log(total)
    weights /= total
    r = lse - log_loss
    absolute = np.abs(r)
    value = np.where(absolute <= delta, 0.5 * r * r, delta * (absolute - 0.5 * delta)).sum()
    dr = np.clip(r, -delta, delta)  # Huber's derivative
    grad = np.array([
        (dr * weights[0]).sum(),
        (dr * weights[1]).sum(),
        (dr * weights[2]).sum(),
        -(dr * weights[0] * log_n).sum(),
        -(dr * weights[1] * log_d).sum(),
    ])
    return value, grad


def _start_grid():
    # Chinchilla's grid of initializations, a little coarser: a, b (ln A, ln B), e (ln E), alpha, beta.
    grid = np.array(np.meshgrid(np.arange(0, 26, 5.0), np.arange(0, 26, 5.0), np.arange(-1, 1.01, 0.5),
                                np.arange(0, 2.01, 0.5), np.arange(0, 2.01, 0.5), indexing="ij"))
    return grid.reshape(5, -1).T


def fit_parametric(n, d, loss, delta=HUBER_DELTA, starts=8, extra_starts=()):
    """L(N, D) = E + A/N^alpha + B/D^beta by Huber regression in log space. Returns a dict with
    E, A, B, alpha, beta and the objective; the best of L-BFGS runs from the `starts` best grid
    points (plus `extra_starts`, parameter vectors [a, b, e, alpha, beta])."""
    require_scipy()
    log_n = np.log(np.asarray(n, dtype=float))
    log_d = np.log(np.asarray(d, dtype=float))
    log_loss = np.log(np.asarray(loss, dtype=float))
    grid = _start_grid()
    # The objective at every grid point at once, to start from the most promising ones.
    terms = np.stack([grid[:, 0:1] - grid[:, 3:4] * log_n, grid[:, 1:2] - grid[:, 4:5] * log_d,
                      np.broadcast_to(grid[:, 2:3], (len(grid), len(log_n)))])
    top = terms.max(axis=0)
    r = np.abs(top + np.log(np.exp(terms - top).sum(axis=0)) - log_loss)
    grid_values = np.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta)).sum(axis=1)
    candidates = [grid[i] for i in np.argsort(grid_values)[:starts]] + [np.asarray(s, float) for s in extra_starts]
    best = None
    for start in candidates:
        result = minimize(_huber_objective, start, args=(log_n, log_d, log_loss, delta), jac=True,
                          method="L-BFGS-B", options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12})
        if best is None or result.fun < best.fun:
            best = result
    a, b, e, alpha, beta = best.x
    return {"E": float(math.exp(e)), "A": float(math.exp(a)), "B": float(math.exp(b)), "alpha": float(alpha),
            "beta": float(beta), "objective": float(best.fun), "params": [float(v) for v in best.x]}


def bootstrap_parametric(n, d, loss, samples=100, seed=0, level=0.9):
    """Percentile intervals of each parameter over fits to runs resampled with replacement."""
    n, d, loss = (np.asarray(v, dtype=float) for v in (n, d, loss))
    point = fit_parametric(n, d, loss)
    rng = np.random.default_rng(seed)
    draws = {key: [] for key in ("E", "A", "B", "alpha", "beta")}
    for _ in range(samples):
        pick = rng.integers(0, len(n), len(n))
        if len(np.unique(n[pick])) < 2 or len(np.unique(d[pick])) < 2:
            continue
        fit = fit_parametric(n[pick], d[pick], loss[pick], starts=2, extra_starts=[point["params"]])
        for key in draws:
            draws[key].append(fit[key])
    tail = 100 * (1 - level) / 2
    intervals = {key: [float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))] if v else None
                 for key, v in draws.items()}
    return point, intervals


# --- the dense frontier and Efficiency Leverage ---------------------------------------------

def fit_power_law(compute, loss):
    """L(C) = E + A C^-a by least squares on ln L (E in [0, min L)). Returns dict E, A, a."""
    require_scipy()
    c = np.asarray(compute, dtype=float)
    y = np.log(np.asarray(loss, dtype=float))
    scale = np.exp(np.mean(np.log(c)))  # fit in C / scale for conditioning
    x = np.log(c / scale)
    floor = float(np.exp(y).min())

    def objective(p):
        e, log_a, a = p
        predicted = e + np.exp(log_a - a * x)
        return float(((np.log(predicted) - y) ** 2).sum())

    best = None
    for e0 in np.linspace(0, 0.95 * floor, 6):
        for a0 in (0.05, 0.15, 0.3, 0.6):
            start = [e0, math.log(max(np.exp(y).mean() - e0, 1e-6)), a0]
            result = minimize(objective, start, method="L-BFGS-B",
                              bounds=[(0, floor * (1 - 1e-6)), (-30, 30), (1e-4, 3)])
            if best is None or result.fun < best.fun:
                best = result
    e, log_a, a = best.x
    # Undo the scaling: A C^-a with C = scale x'.
    return {"E": float(e), "A": float(math.exp(log_a) * scale ** a), "a": float(a), "residual": float(best.fun)}


def power_law_loss(fit, compute):
    return fit["E"] + fit["A"] * np.asarray(compute, dtype=float) ** (-fit["a"])


def dense_compute_for_loss(fit, loss):
    """The compute at which the dense frontier reaches `loss` (inf when below its floor E)."""
    if loss <= fit["E"]:
        return math.inf
    return (fit["A"] / (loss - fit["E"])) ** (1 / fit["a"])


def efficiency_leverage(fit, moe_loss, moe_compute):
    return dense_compute_for_loss(fit, moe_loss) / moe_compute


def dense_frontier(rows):
    """Per budget, the best dense loss: the iso-FLOP vertex when the budget has 3+ sizes and its
    parabola has an interior minimum, else the lowest loss seen."""
    points = []
    for budget, group in group_by_budget(rows).items():
        fit = isoflop_fit([r["n"] for r in group], [r["loss"] for r in group])
        compute = float(np.mean([r["compute"] for r in group]))
        if fit and fit["n_opt"] and fit.get("inside"):
            points.append((compute, fit["loss_opt"], "iso-FLOP vertex"))
        else:
            points.append((compute, min(r["loss"] for r in group), "best run"))
    return sorted(points)


# --- the report -------------------------------------------------------------------------------

def read_runs(path):
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["finished"] != "1" or not row["valid_loss"]:
                continue
            rows.append({
                "name": row["name"], "sweep": row["sweep"], "family": row["family"],
                "experts": int(row["num_experts"]), "top_k": int(row["top_k"]),
                "shared": int(row["shared_experts"]), "granularity": float(row["granularity"]),
                "activation_ratio": float(row["activation_ratio"]),
                "n": float(row["active_parameters"]), "total": float(row["total_parameters"]),
                "d": float(row["tokens"]), "compute": float(row["compute"]),
                "budget": float(row["compute_budget"] or 0), "loss": float(row["valid_loss"]),
            })
    return rows


def group_by_budget(rows):
    """Runs grouped by their sweep and compute budget (the derived one, else compute to 2 digits)."""
    groups = {}
    for r in rows:
        budget = r["budget"] if r["budget"] > 0 else float(f"{r['compute']:.2g}")
        groups.setdefault((r["sweep"], budget), []).append(r)
    return groups


def fmt(value, digits=4):
    if value is None:
        return "-"
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return str(value)
    return f"{value:.{digits}g}"


def report(csv_path, out_dir, bootstrap_samples=100):
    require_scipy()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_runs(csv_path)
    os.makedirs(out_dir, exist_ok=True)
    fits = {"runs": len(rows)}
    md = ["# Sweep fits", "", f"{len(rows)} finished runs from `{os.path.basename(csv_path)}`. "
          "N = active parameters, D = training tokens, C = training FLOPs.", ""]
    dense = [r for r in rows if r["experts"] == 0]
    moe = [r for r in rows if r["experts"] > 0]

    # Iso-FLOP parabolas.
    isoflop = []
    for (sweep, budget), group in sorted(group_by_budget(rows).items()):
        sizes = {r["n"] for r in group}
        if len(sizes) < 3 or max(sizes) < 2 * min(sizes):  # a parabola over sizes that barely differ says nothing
            continue
        fit = isoflop_fit([r["n"] for r in group], [r["loss"] for r in group])
        isoflop.append({"sweep": sweep, "budget": budget, "runs": len(group), **fit})
    fits["isoflop"] = isoflop
    md += ["## Iso-FLOP fits (loss as a parabola in ln N per budget)", ""]
    if isoflop:
        md += ["| sweep | budget (FLOPs) | runs | optimal N | loss at optimum | vertex inside the sizes |",
               "|---|---:|---:|---:|---:|---|"]
        for f in isoflop:
            # A vertex outside the sizes tried is an extrapolation of a parabola, not an optimum.
            inside = bool(f.get("inside"))
            md.append(f"| {f['sweep'] or '.'} | {f['budget']:.3g} | {f['runs']} | "
                      f"{fmt(f['n_opt']) if inside else '-'} | {fmt(f['loss_opt']) if inside else '-'} | "
                      f"{'yes' if inside else 'no (the optimum lies outside the sizes tried)'} |")
    else:
        md.append("No budget has runs of 3 or more sizes spanning a factor 2 or more.")
    md.append("")

    # The parametric law, on the dense runs (all runs when there are too few dense ones).
    law_rows = dense if len(dense) >= 5 else rows
    md += ["## Parametric law L(N, D) = E + A/N^alpha + B/D^beta", ""]
    if len(law_rows) >= 5 and len({r["n"] for r in law_rows}) >= 2 and len({r["d"] for r in law_rows}) >= 2:
        n, d, loss = (np.array([r[k] for r in law_rows]) for k in ("n", "d", "loss"))
        point, intervals = bootstrap_parametric(n, d, loss, samples=bootstrap_samples)
        fits["parametric"] = {"on": "dense runs" if law_rows is dense else "all runs", "runs": len(law_rows),
                              "fit": point, "interval_90": intervals, "bootstrap_samples": bootstrap_samples}
        md += [f"Fitted on {len(law_rows)} {'dense' if law_rows is dense else ''} runs, Huber loss (delta "
               f"{HUBER_DELTA}) on log residuals, L-BFGS from a grid of starts; 90% intervals from "
               f"{bootstrap_samples} bootstrap resamples of the runs.", "",
               "| parameter | fit | 90% interval |", "|---|---:|---|"]
        for key in ("E", "A", "B", "alpha", "beta"):
            lo_hi = intervals[key]
            md.append(f"| {key} | {fmt(point[key])} | {'-' if lo_hi is None else f'{fmt(lo_hi[0])} .. {fmt(lo_hi[1])}'} |")
    else:
        md.append("Too few runs (5 or more with 2+ sizes and 2+ token counts needed).")
    md.append("")

    # The dense frontier and the Efficiency Leverage of each MoE run.
    md += ["## Efficiency Leverage (MoE vs dense)", ""]
    frontier = dense_frontier(dense) if dense else []
    leverage = []
    frontier_fit = None
    if len(frontier) >= 3:
        frontier_fit = fit_power_law([p[0] for p in frontier], [p[1] for p in frontier])
        fits["dense_frontier"] = {"points": [{"compute": c, "loss": l, "from": how} for c, l, how in frontier],
                                  "fit": frontier_fit}
        lo, hi = frontier[0][0], frontier[-1][0]
        md += [f"Dense frontier L(C) = E + A C^-a over {len(frontier)} budgets: E = {fmt(frontier_fit['E'])}, "
               f"A = {fmt(frontier_fit['A'])}, a = {fmt(frontier_fit['a'])}. EL = C_dense(L_MoE) / C_MoE; "
               f"values for MoE losses outside the frontier's range ({fmt(lo, 3)} .. {fmt(hi, 3)} FLOPs of dense "
               "compute) are extrapolations.", ""]
        for r in moe:
            el = efficiency_leverage(frontier_fit, r["loss"], r["compute"])
            finite = math.isfinite(el)  # inf: below the dense frontier's floor E (None in fits.json)
            leverage.append({"name": r["name"], "family": r["family"], "activation_ratio": r["activation_ratio"],
                             "granularity": r["granularity"], "compute": r["compute"], "loss": r["loss"],
                             "dense_compute": el * r["compute"] if finite else None,
                             "leverage": el if finite else None,
                             "extrapolated": not (finite and lo <= el * r["compute"] <= hi)})
        if leverage:
            md += ["| run | K/E | granularity | compute | loss | dense compute for that loss | EL |",
                   "|---|---:|---:|---:|---:|---:|---:|"]
            for l in leverage:
                md.append(f"| {l['name']} | {l['activation_ratio']:.3g} | {l['granularity']:.3g} | "
                          f"{l['compute']:.3g} | {l['loss']:.4f} | "
                          f"{fmt(l['dense_compute'], 3) if l['leverage'] else 'below the frontier floor'}"
                          f"{' (extrapolated)' if l['extrapolated'] and l['leverage'] else ''} | "
                          f"{fmt(l['leverage'], 3) if l['leverage'] else 'inf'} |")
        else:
            md.append("No MoE runs.")
    else:
        md.append("Needs dense runs at 3 or more budgets for the frontier.")
    fits["leverage"] = leverage
    md.append("")

    # Plots.
    plots = []
    fig, ax = plt.subplots(figsize=(7, 5))
    configurations = {}
    for r in rows:
        configurations.setdefault((r["family"], r["n"]), []).append(r)
    for (family, n), group in sorted(configurations.items()):
        group.sort(key=lambda r: r["compute"])
        ax.plot([r["compute"] for r in group], [r["loss"] for r in group], "o-" if family == "dense" else "s--",
                label=f"{family} N={n / 1e6:.2g}M", markersize=4)
    if frontier_fit:
        c = np.geomspace(min(r["compute"] for r in rows), max(r["compute"] for r in rows), 100)
        ax.plot(c, power_law_loss(frontier_fit, c), "k:", label="dense frontier fit")
    ax.set_xscale("log")
    ax.set_xlabel("training compute (FLOPs)")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title("Loss vs compute per configuration")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "loss_vs_compute.png"), dpi=120)
    plt.close(fig)
    plots.append("loss_vs_compute.png")

    if isoflop:
        fig, ax = plt.subplots(figsize=(7, 5))
        groups = group_by_budget(rows)
        for f in isoflop:
            group = sorted(groups[(f["sweep"], f["budget"])], key=lambda r: r["n"])
            line = ax.plot([r["n"] for r in group], [r["loss"] for r in group], "o",
                           label=f"{f['sweep'] or '.'} C={f['budget']:.2g}")[0]
            x = np.linspace(math.log(group[0]["n"]), math.log(group[-1]["n"]), 50)
            ax.plot(np.exp(x), np.polyval(f["coefficients"], x), "-", color=line.get_color())
            if f["n_opt"]:
                ax.plot([f["n_opt"]], [f["loss_opt"]], "*", color=line.get_color(), markersize=10)
        ax.set_xscale("log")
        ax.set_xlabel("parameters N (active)")
        ax.set_ylabel("validation loss (nats/token)")
        ax.set_title("Iso-FLOP curves (star: fitted optimum)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "isoflop.png"), dpi=120)
        plt.close(fig)
        plots.append("isoflop.png")

    plotted = [l for l in leverage if l["leverage"] is not None]
    if plotted:
        for key, label, filename in (("activation_ratio", "activation ratio K / E", "leverage_activation_ratio.png"),
                                     ("granularity", "granularity G = 2 C / F", "leverage_granularity.png")):
            fig, ax = plt.subplots(figsize=(6, 4.5))
            computes = np.log10([l["compute"] for l in plotted])
            points = ax.scatter([l[key] for l in plotted], [l["leverage"] for l in plotted], c=computes, cmap="viridis")
            fig.colorbar(points, ax=ax, label="log10 compute (FLOPs)")
            ax.axhline(1, color="gray", linestyle=":")
            ax.set_xscale("log", base=2)
            ax.set_xlabel(label)
            ax.set_ylabel("efficiency leverage")
            ax.set_title(f"Efficiency leverage vs {label.split(' ')[0]}")
            fig.tight_layout()
            fig.savefig(os.path.join(out_dir, filename), dpi=120)
            plt.close(fig)
            plots.append(filename)

    fits["plots"] = plots
    md += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    with open(os.path.join(out_dir, "fits.json"), "w") as f:
        json.dump(fits, f, indent=2)
    with open(os.path.join(out_dir, "fits.md"), "w") as f:
        f.write("\n".join(md))
    print(f"fit.py: {len(rows)} runs; wrote fits.md, fits.json and {', '.join(plots)} in {out_dir}")
    return fits


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: fit.py REPORT_DIR/runs.csv REPORT_DIR")
    report(sys.argv[1], sys.argv[2])
