r"""Headroom of a config's own action grid, from its fixed-action sweeps in stores or a table.

    .venv/bin/python benchmarks/grid_headroom.py --store STORE [STORE ...] [--config default]

Reads every fixed-action episode (one action repeated, `lora-gym record --policy grid`) of the
config, and over the tasks swept on every action prints, at each λ: the global best static
(action, segments) (best mean return over the swept tasks), the per-task oracle static and their
gap; with two swept episode seeds of a task, the gap out of sample too (the per-task choice made on
one seed, scored on the other), which strips the gain of picking seed noise. A prefix's return is
acc_k − acc_0 − λ·cost_k; an episode that diverged or ended before k earns −divergence_penalty.
Which split the swept tasks are on is the caller's business: sweep train or val, never test.
"""

from __future__ import annotations

import argparse
import sqlite3
from collections import defaultdict

import numpy as np

from lora_gym.core.actions import ActionGrid
from lora_gym.core.config import resolve_config
from lora_gym.replay.store import config_hash

LAMBDAS = (0.001, 0.003, 0.01)


def load(stores: list[str], chash: str) -> dict[tuple[str, int, str], tuple[float, float, bool]]:
    """(task, episode seed, prefix) -> (accuracy, cost so far, diverged), from every store."""
    rows = {}
    for path in stores:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            for task, seed, prefix, acc, cost, div in db.execute(
                    "SELECT task, episode_seed, prefix, accuracy, cost_so_far, diverged FROM steps "
                    "WHERE config_hash = ?", (chash,)):
                rows[(task, seed, prefix)] = (acc, cost, bool(div))
    return rows


def returns(rows, n_actions: int, length: int, lam: float, penalty: float
            ) -> dict[tuple[str, int], np.ndarray]:
    """(task, seed) -> returns[action, k - 1] of every task-seed swept on every action."""
    fixed: dict[tuple[str, int], dict[int, dict[int, tuple]]] = defaultdict(dict)
    for (task, seed, prefix), value in rows.items():
        acts = prefix.split(",") if prefix else []
        if acts and len(set(acts)) == 1:
            fixed[(task, seed)].setdefault(int(acts[0]), {})[len(acts)] = value
    out = {}
    for key, curves in fixed.items():
        if len(curves) < n_actions or (key[0], key[1], "") not in rows:
            continue
        root = rows[(key[0], key[1], "")][0]
        r = np.full((n_actions, length), -penalty)
        for a, curve in curves.items():
            for k in range(1, length + 1):
                if k not in curve or curve[k][2]:
                    break
                r[a, k - 1] = curve[k][0] - root - lam * curve[k][1]
        out[key] = r
    return out


def main(argv: list[str] | None = None) -> None:
    """Print the headroom tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", nargs="+", required=True, help="stores or unpacked tables")
    parser.add_argument("--config", default=None, help="the config recorded (default: embedded)")
    args = parser.parse_args(argv)
    config = resolve_config(args.config)
    grid = ActionGrid.of(config)
    rows = load(args.store, config_hash(config))
    for lam in LAMBDAS:
        table = returns(rows, grid.n_pairs, config.episode_length, lam, config.divergence_penalty)
        if not table:
            raise SystemExit("no task is swept on every action of the grid")
        keys = sorted(table)
        R = np.stack([table[k].ravel() for k in keys])  # (task-seeds, actions x segments)
        best = int(R.mean(0).argmax())
        a, k = divmod(best, config.episode_length)
        rank, lr = grid.decode(a)
        gap = R.max(1).mean() - R[:, best].mean()
        print(f"\nλ = {lam}: {len(keys)} swept task-seeds; global best static: rank {rank}, "
              f"lr {lr:g}, {grid.augmentation_of(a)}, {k + 1} segments (mean return "
              f"{R[:, best].mean():.3f}); oracle − global (in sample) {gap:+.3f}")
        by_task = defaultdict(list)
        for i, (task, _) in enumerate(keys):
            by_task[task].append(i)
        pairs = [ix for ix in by_task.values() if len(ix) >= 2]
        if pairs:
            out = [R[j, R[i].argmax()] - R[j, best] for i, j, *_ in pairs]
            print(f"  out of sample ({len(pairs)} tasks with two seeds: choose on one, score on "
                  f"the other): oracle − global {np.mean(out):+.3f}")
        print("  | task | seed | oracle (rank, lr, aug, segments) | oracle | global |")
        print("  |---|---|---|---|---|")
        for i, (task, seed) in enumerate(keys):
            o = int(R[i].argmax())
            ao, ko = divmod(o, config.episode_length)
            r, lr_o = grid.decode(ao)
            print(f"  | {task} | {seed} | {r}, {lr_o:g}, {grid.augmentation_of(ao)}, {ko + 1} | "
                  f"{R[i, o]:+.3f} | {R[i, best]:+.3f} |")


if __name__ == "__main__":
    main()
