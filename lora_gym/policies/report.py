"""Summaries of a comparison: bootstrap intervals, normalised regret, Markdown table, plots."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from lora_gym.policies.runner import EpisodeResult


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float(values.mean()), float(values.mean())
    rng = np.random.default_rng(seed)
    means = values[rng.integers(len(values), size=(n_boot, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def normalised_regret(result: EpisodeResult, grid: dict[str, np.ndarray]) -> float:
    """Regret of an episode normalised by the spread of the fixed actions on its task.

    ``(best fixed return - return) / (best fixed return - worst fixed return)``: 0 is as good
    as the best fixed action (the oracle), 1 as bad as the worst.
    """
    best, worst = float(grid[result.task].max()), float(grid[result.task].min())
    return (best - result.episode_return) / max(best - worst, 1e-9)


def summarise(results: list[EpisodeResult], grid: dict[str, np.ndarray] | None
              ) -> dict[str, dict[str, float]]:
    """Per method: mean and 95% CI of return, final accuracy, total cost and regret."""
    by_method: dict[str, list[EpisodeResult]] = defaultdict(list)
    for r in results:
        by_method[r.method].append(r)
    summary = {}
    for method, rs in by_method.items():
        columns = {
            "return": [r.episode_return for r in rs],
            "final_accuracy": [r.final_accuracy if r.final_accuracy is not None else 0.0
                               for r in rs],
            "total_cost": [r.total_cost for r in rs],
            "segments": [r.steps for r in rs],
        }
        if grid is not None:
            columns["regret"] = [normalised_regret(r, grid) for r in rs]
        row = {"episodes": len(rs), "diverged": sum(r.diverged for r in rs)}
        for name, values in columns.items():
            lo, hi = bootstrap_ci(np.array(values))
            row.update({name: float(np.mean(values)), f"{name}_lo": lo, f"{name}_hi": hi})
        summary[method] = row
    return summary


def markdown_table(summary: dict[str, dict[str, float]]) -> str:
    """The summary as a Markdown table (mean [95% CI])."""
    cols = [c for c in ("return", "final_accuracy", "total_cost", "segments", "regret")
            if c in next(iter(summary.values()))]
    lines = ["| method | episodes | " + " | ".join(cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for method, row in sorted(summary.items(), key=lambda kv: -kv[1]["return"]):
        cells = [f"{row[c]:.3f} [{row[c + '_lo']:.3f}, {row[c + '_hi']:.3f}]" for c in cols]
        lines.append(f"| {method} | {row['episodes']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_differences(results: list[EpisodeResult], methods: list[str],
                       baselines: tuple[str, ...] = ("best-static", "patience")
                       ) -> dict[str, dict[str, float]]:
    """Return of each of `methods` minus each baseline's on the same (task, seed) episodes.

    Keys are ``"<method> - <baseline>"``; values the mean difference, its 95% bootstrap CI and
    the number of pairs. Pairs the baseline did not play are left out.
    """
    by_key = {(r.method, r.task, r.seed): r.episode_return for r in results}
    out = {}
    for method in methods:
        for base in baselines:
            diffs = [ret - by_key[base, task, seed] for (m, task, seed), ret in by_key.items()
                     if m == method and (base, task, seed) in by_key]
            if diffs:
                lo, hi = bootstrap_ci(np.array(diffs))
                out[f"{method} - {base}"] = {"mean": float(np.mean(diffs)), "lo": lo, "hi": hi,
                                             "pairs": len(diffs)}
    return out


def paired_table(paired: dict[str, dict[str, float]]) -> str:
    """The paired differences as a Markdown table."""
    lines = ["| paired difference in return | mean [95% CI] | pairs |", "|---|---|---|"]
    for key, d in paired.items():
        lines.append(f"| {key} | {d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] "
                     f"| {d['pairs']} |")
    return "\n".join(lines)


def plot(results: list[EpisodeResult], summary: dict[str, dict[str, float]], out: Path
         ) -> list[Path]:
    """Per-method return bars, accuracy vs cumulative cost, and rank/lr trajectories."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(summary)
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}
    paths = []

    fig, ax = plt.subplots(figsize=(1.2 * len(methods) + 2, 4))
    means = [summary[m]["return"] for m in methods]
    errs = [[summary[m]["return"] - summary[m]["return_lo"] for m in methods],
            [summary[m]["return_hi"] - summary[m]["return"] for m in methods]]
    ax.bar(methods, means, yerr=errs, color=[colors[m] for m in methods], capsize=4)
    ax.set_ylabel("mean episodic return (95% CI)")
    paths.append(_save(fig, out / "returns.png"))

    tasks = sorted({r.task for r in results})
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for r in (r for r in results if r.task == task):
            xs = [0.0] + [s["cost_so_far"] for s in r.trajectory]
            ys = [r.initial_accuracy] + [s["accuracy"] or 0.0 for s in r.trajectory]
            ax.plot(xs, ys, color=colors[r.method], alpha=0.6,
                    label=r.method if r.seed == min(x.seed for x in results) else None)
        ax.set(title=task, xlabel="cumulative cost", ylabel="validation accuracy")
    axes[0][0].legend(fontsize=7)
    paths.append(_save(fig, out / "accuracy_vs_cost.png"))

    fig, axes = plt.subplots(2, len(tasks), figsize=(4.5 * len(tasks), 6), squeeze=False)
    first_seed = min(r.seed for r in results)
    for col, task in enumerate(tasks):
        for r in (r for r in results if r.task == task and r.seed == first_seed):
            steps = range(1, len(r.trajectory) + 1)
            axes[0][col].step(steps, [np.mean(s["rank"]) for s in r.trajectory], where="post",
                              color=colors[r.method], label=r.method)
            axes[1][col].step(steps, [s["lr"] for s in r.trajectory], where="post",
                              color=colors[r.method])
        axes[0][col].set(title=task, ylabel="rank")
        axes[1][col].set(xlabel="step", ylabel="learning rate", yscale="log")
    axes[0][0].legend(fontsize=7)
    paths.append(_save(fig, out / "trajectories.png"))
    return paths


def per_lambda_table(summaries: dict[float, dict[str, dict[str, float]]]) -> str:
    """Mean return (and final accuracy, cost) of every method at every λ, as Markdown."""
    lams = list(summaries)
    methods = sorted({m for s in summaries.values() for m in s},
                     key=lambda m: -np.mean([s[m]["return"] for s in summaries.values() if m in s]))
    lines = ["| method | " + " | ".join(f"return at λ={lam:g} (acc, cost)" for lam in lams) + " |",
             "|---|" + "---|" * len(lams)]
    for m in methods:
        cells = [(f"{s[m]['return']:.3f} ({s[m]['final_accuracy']:.3f}, {s[m]['total_cost']:.1f})"
                  if m in s else "–") for s in summaries.values()]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pareto_plot(summaries: dict[float, dict[str, dict[str, float]]], path: Path) -> Path:
    """Final accuracy vs total cost of every method, one marker per λ (the trade-off curve)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = sorted({m for s in summaries.values() for m in s})
    markers = "os^Dv<>pP*"
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, m in enumerate(methods):
        pts = [(s[m]["total_cost"], s[m]["final_accuracy"], lam) for lam, s in summaries.items()
               if m in s]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", color=plt.cm.tab10(i % 10),
                alpha=0.5)
        for j, (x, y, _) in enumerate(pts):
            ax.scatter(x, y, color=plt.cm.tab10(i % 10), marker=markers[j % len(markers)],
                       label=m if j == 0 else None)
    ax.set(xlabel="mean total cost", ylabel="mean final accuracy",
           title="λ: " + ", ".join(f"{markers[j % len(markers)]} {lam:g}"
                                   for j, lam in enumerate(summaries)))
    ax.legend(fontsize=7)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
