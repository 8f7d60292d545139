"""Leave-one-task-out accuracy and uncertainty of the replay surrogate, printed as a table.

    .venv/bin/python benchmarks/surrogate_fit.py [--config envs_configs/default.yaml] [--store PATH]

For each surrogate kind, every task of the table is held out in turn: the regressor is fitted on
the other tasks' recorded steps and predicts the held-out task's (so every prediction is for a
task the model never saw). Printed: the pooled R^2 of each target (accuracy, F1 and validation
loss changes, next training loss) and of the next accuracy, the R^2 of the accuracy change per
held-out task, and the uncertainty (std of the predicted accuracy change): its mean on the rows
the model was fitted on (on the table), on held-out tasks' rows, and on the steps of random-action
replay episodes that the surrogate serves (off the table); and the Spearman correlation of the
uncertainty with the absolute error on held-out tasks. Nothing is tuned by that report: the
surrogate's hyperparameters are the defaults of `lora_gym.replay.regressors`.

``--select`` prints how those defaults were chosen instead: the R^2 of the accuracy change of
`RandomFeatureEnsemble` settings (`SELECTION_GRID`) in a 10-fold cross-validation grouped by
task, over the train and val tasks only (the test split's rows are left out).
"""

from __future__ import annotations

import argparse
from contextlib import closing

import gymnasium as gym
import numpy as np

import lora_gym  # noqa: F401
from lora_gym.core.actions import ActionGrid
from lora_gym.core.config import resolve_config
from lora_gym.replay.index import TableIndex
from lora_gym.replay.regressors import RandomFeatureEnsemble
from lora_gym.replay.store import Store
from lora_gym.replay.surrogate import (
    SURROGATE_KINDS,
    TARGET_NAMES,
    fit_models,
    training_data,
)
from lora_gym.replay.tables import resolve_store
from lora_gym.tasks.sets import load_task_set

SELECTION_GRID = [(h, ridge, scale) for h in (64, 256, 512) for ridge in (0.001, 0.003, 0.01)
                  for scale in (0.5, 1.0)]
"""(random features, ridge, scale) settings of `RandomFeatureEnsemble` that ``--select`` scores."""


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination of `pred` for `y` (NaN when `y` is constant)."""
    spread = ((y - y.mean()) ** 2).sum()
    return float(1.0 - ((y - pred) ** 2).sum() / spread) if spread > 0 else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (no ties expected in continuous values)."""
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def leave_one_task_out(X: np.ndarray, Y: np.ndarray, tasks: np.ndarray, kind: str
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Held-out predictions of the targets (mean, uncertainty) and in-sample uncertainties."""
    mean, std, fitted_std = np.zeros_like(Y), np.zeros(len(Y)), np.zeros(len(Y))
    for task in np.unique(tasks):
        test = tasks == task
        model = fit_models(X[~test], Y[~test], kind)
        mean[test], std[test] = model.predict(X[test])
        fitted_std[~test] += model.predict(X[~test])[1] / (len(np.unique(tasks)) - 1)
    return mean, std, fitted_std


def select(index: TableIndex, config) -> None:
    """Grouped 10-fold CV R^2 of the accuracy change per `SELECTION_GRID` setting, no test rows."""
    test = frozenset(t.name for t in load_task_set(config.task_set).tasks("test"))
    X, Y, task_list = training_data(index, ActionGrid.of(config), test)
    tasks = np.array(task_list)
    names = np.random.default_rng(0).permutation(np.unique(tasks))
    fold_of = {name: i % 10 for i, name in enumerate(names)}
    folds = np.array([fold_of[t] for t in tasks])
    print(f"{len(Y)} steps of {len(names)} train/val tasks; 10 folds grouped by task")
    for h, ridge, scale in SELECTION_GRID:
        pred = np.zeros(len(Y))
        for k in range(10):
            held = folds == k
            model = RandomFeatureEnsemble(features=h, ridge=ridge, scale=scale)
            pred[held] = model.fit(X[~held], Y[~held]).predict(X[held])[0][:, 0]
        print(f"features={h:<4} ridge={ridge:<6} scale={scale:<4} R2 delta_accuracy "
              f"{r2(Y[:, 0], pred):.4f}")


def surrogate_uncertainty(config: str, store: str | None, kind: str, steps: int) -> float:
    """Mean ``info["uncertainty"]`` over the surrogate-served steps of random-action episodes."""
    env = gym.make("LoRATuneReplay-v0", config=config, store=store, surrogate=kind,
                   task_split="all", disable_env_checker=True)
    env.reset(seed=0)
    env.action_space.seed(0)
    values = []
    for _ in range(steps):
        *_, terminated, truncated, info = env.step(env.action_space.sample())
        if info["source"] == "surrogate":
            values.append(info["uncertainty"])
        if terminated or truncated:
            env.reset()
    return float(np.mean(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="envs_configs/default.yaml")
    parser.add_argument("--store", default=None, help="default: the shipped table of the config")
    parser.add_argument("--steps", type=int, default=5000, help="random replay steps")
    parser.add_argument("--select", action="store_true",
                        help="score the ensemble's settings by grouped CV on train/val tasks")
    args = parser.parse_args()
    config = resolve_config(args.config)
    path, _ = resolve_store(args.store, config)
    with closing(Store(path, readonly=True)) as db:
        index = TableIndex.load(db, config)
    if args.select:
        select(index, config)
        return
    X, Y, task_list = training_data(index, ActionGrid.of(config))
    tasks = np.array(task_list)
    names = sorted(set(task_list))
    print(f"table {path}: {len(Y)} recorded steps, {len(names)} tasks; leave-one-task-out")
    acc = X[:, 0]
    for kind in SURROGATE_KINDS:
        mean, std, fitted_std = leave_one_task_out(X, Y, tasks, kind)
        print(f"\n== surrogate {kind}")
        for j, target in enumerate(TARGET_NAMES):
            print(f"{'LOTO R2 ' + target:<50} {r2(Y[:, j], mean[:, j]):>10.3f}")
        next_acc = predict_metrics_from(mean, acc)
        print(f"{'LOTO R2 next accuracy':<50} {r2(acc + Y[:, 0], next_acc):>10.3f}")
        for task in names:
            held = tasks == task
            print(f"{'  R2 delta_accuracy, held out ' + task:<50} "
                  f"{r2(Y[held, 0], mean[held, 0]):>10.3f}")
        error = np.abs(Y[:, 0] - mean[:, 0])
        print(f"{'uncertainty on fitted rows (on the table)':<50} {fitted_std.mean():>10.4f}")
        print(f"{'uncertainty on held-out tasks':<50} {std.mean():>10.4f}")
        off = surrogate_uncertainty(args.config, args.store, kind, args.steps)
        print(f"{'uncertainty on random replay surrogate steps':<50} {off:>10.4f}")
        print(f"{'Spearman(uncertainty, |error|), held out':<50} {spearman(std, error):>10.3f}")
        print(f"{'mean |error| of delta_accuracy, held out':<50} {error.mean():>10.4f}")


def predict_metrics_from(mean: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Next accuracy from predicted changes, clipped as the surrogate clips it."""
    return np.clip(acc + mean[:, 0], 0.0, 1.0)


if __name__ == "__main__":
    main()
