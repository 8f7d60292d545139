"""A surrogate of the live env fitted on recorded steps: (observation, action) -> next metrics.

Inputs are the observation before the step and the action's rank and lr positions in the grid;
targets are the changes of accuracy, F1 and validation loss and the next training loss (losses
capped like the observation). Predictions are clipped to valid ranges ([0, 1] for scores,
[0, LOSS_CAP] for losses). The cost of a step is computed analytically from the task's mean
recorded tokens per segment and the chosen rank (`lora_gym.core.cost`). The surrogate never predicts
divergence. Its steps are memoised, so an episode that leaves the table along a path seen before
costs no prediction. scikit-learn is imported only for ``hgb``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from lora_gym.core.actions import ActionGrid
from lora_gym.core.config import EnvConfig
from lora_gym.core.cost import reference_tokens, segment_cost, segment_tokens
from lora_gym.core.metrics import Metrics
from lora_gym.core.monitoring import carried_monitor, with_monitor
from lora_gym.core.observation import (
    LOSS_CAP,
    OBSERVATION_NAMES,
    build_observation,
    carried_features,
    state_values,
)
from lora_gym.replay.index import Node, TableIndex

SURROGATE_KINDS: tuple[str, ...] = ("knn", "hgb")
"""``knn``: distance-weighted 5-NN on standardised inputs (numpy, fast); ``hgb``: one
scikit-learn HistGradientBoostingRegressor per target (slower per step)."""
MIN_ROWS = 8
"""Fewest recorded (non-diverged) steps a surrogate is fitted on."""
MEMO_LIMIT = 100_000
"""Memoised first steps off the table kept before the memo is cleared (bounds memory)."""
_I = {name: i for i, name in enumerate(OBSERVATION_NAMES)}
_DELTA_SLOTS = [_I["val_accuracy"], _I["val_macro_f1"], _I["val_loss"]]


def _features(obs: np.ndarray, grid: ActionGrid, action: int) -> list[float]:
    rank, lr = grid.decode(action)  # inputs: the entries of OBSERVATION_SPEC (no extras)
    return [*obs[:len(OBSERVATION_NAMES)].tolist(), grid.rank_position(rank),
            grid.lr_position(lr)]


def training_data(index: TableIndex, grid: ActionGrid
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs X, targets Y (Δacc, Δf1, Δval_loss, train_loss) and episode ids of every step.

    Diverged steps are left out (their metrics are not numbers).
    """
    xs, ys, groups = [], [], []
    episodes: dict[tuple[str, int], int] = {}
    for task, seed, node in index.nodes():
        for action, child in node.children.items():
            if child.diverged:
                continue
            m = child.metrics
            xs.append(_features(node.obs, grid, action))
            ys.append([m.accuracy, m.f1, min(m.val_loss, LOSS_CAP), min(m.train_loss, LOSS_CAP)])
            groups.append(episodes.setdefault((task, seed), len(episodes)))
    X = np.array(xs, dtype=np.float64).reshape(-1, len(OBSERVATION_NAMES) + 2)
    Y = np.array(ys, dtype=np.float64).reshape(-1, 4)
    Y[:, :3] -= X[:, _DELTA_SLOTS]
    return X, Y, np.array(groups, dtype=np.int64)


class NearestNeighbours:
    """Distance-weighted k-nearest-neighbour regression on standardised inputs (numpy only).

    A single-row prediction takes tens of microseconds; scikit-learn's estimators spend
    milliseconds per call on validation and thread pools, too slow for a per-step surrogate.
    """

    def __init__(self, k: int = 5) -> None:
        self.k = k

    def fit(self, X: np.ndarray, Y: np.ndarray) -> NearestNeighbours:
        """Remember the standardised inputs and their targets."""
        self.mean, self.scale = X.mean(axis=0), X.std(axis=0)
        self.scale[self.scale == 0] = 1.0
        self.Z, self.Y = (X - self.mean) / self.scale, np.asarray(Y, dtype=np.float64)
        self.sq = (self.Z**2).sum(axis=1)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Weighted mean of the k nearest rows' targets (weights 1 / distance)."""
        Z = (X - self.mean) / self.scale
        d2 = np.maximum((Z**2).sum(axis=1)[:, None] - 2.0 * Z @ self.Z.T + self.sq[None], 0.0)
        k = min(self.k, len(self.Z))
        idx = np.argpartition(d2, k - 1, axis=1)[:, :k]
        w = 1.0 / (np.sqrt(np.take_along_axis(d2, idx, axis=1)) + 1e-6)
        return (w[..., None] * self.Y[idx]).sum(axis=1) / w.sum(axis=1, keepdims=True)


class BoostedTrees:
    """One scikit-learn HistGradientBoostingRegressor per target, run on one thread."""

    def fit(self, X: np.ndarray, Y: np.ndarray) -> BoostedTrees:
        """Fit the regressors (deterministic: no early stopping, fixed random state)."""
        from sklearn.ensemble import HistGradientBoostingRegressor
        from threadpoolctl import threadpool_limits

        leaf = min(20, max(2, len(X) // 20))
        with threadpool_limits(1):
            self.models = [HistGradientBoostingRegressor(
                max_iter=100, learning_rate=0.1, min_samples_leaf=leaf, early_stopping=False,
                random_state=0).fit(X, Y[:, j]) for j in range(Y.shape[1])]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions of every target, stacked as columns."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return np.stack([m.predict(X) for m in self.models], axis=1)


def fit_models(X: np.ndarray, Y: np.ndarray, kind: str = "knn") -> NearestNeighbours | BoostedTrees:
    """Fit the regressor of a surrogate kind on inputs X and targets Y."""
    if kind not in SURROGATE_KINDS:
        raise ValueError(f"`surrogate` must be one of {list(SURROGATE_KINDS)}, got {kind!r}")
    if len(X) < MIN_ROWS:
        raise ValueError(f"a surrogate needs at least {MIN_ROWS} recorded steps, the table has "
                         f"{len(X)}; record more episodes")
    return (NearestNeighbours() if kind == "knn" else BoostedTrees()).fit(X, Y)


def predict_metrics(model: NearestNeighbours | BoostedTrees, X: np.ndarray) -> np.ndarray:
    """Next (accuracy, f1, val_loss, train_loss) for inputs X, clipped to valid ranges."""
    out = np.asarray(model.predict(X), dtype=np.float64).reshape(len(X), 4)
    out[:, :3] += X[:, _DELTA_SLOTS]
    out[:, :2] = np.clip(out[:, :2], 0.0, 1.0)
    out[:, 2:] = np.clip(out[:, 2:], 0.0, LOSS_CAP)
    return out


class Surrogate:
    """Steps an episode off the table: predicted metrics, analytic cost, rebuilt observation."""

    def __init__(self, index: TableIndex, config: EnvConfig, kind: str = "knn") -> None:
        self.config, self.kind = config, kind
        self.grid = ActionGrid.of(config)
        X, Y, _ = training_data(index, self.grid)
        self.models = fit_models(X, Y, kind)
        self.tokens = _tokens_per_segment(index, config)
        self._off_table: dict[tuple[Node, int], Node] = {}

    def step(self, task: str, node: Node, action: int, on_table: bool) -> Node:
        """The node after taking `action` from `node` (memoised, never added to the index).

        A surrogate node keeps its predicted children in its own ``children``; the first step
        off a table node is kept here (a table node's children are real records only).
        """
        if on_table and len(self._off_table) >= MEMO_LIMIT:
            self._off_table.clear()  # frees every memoised surrogate subtree
        memo: dict[Any, Node] = self._off_table if on_table else node.children
        key = (node, action) if on_table else action
        child = memo.get(key)
        if child is None:
            child = memo[key] = self._predict(task, node, action)
        return child

    def _predict(self, task: str, node: Node, action: int) -> Node:
        x = np.array([_features(node.obs, self.grid, action)])
        acc, f1, val_loss, train_loss = predict_metrics(self.models, x)[0].tolist()
        rank, lr = self.grid.decode(action)
        cost = segment_cost(self.tokens.get(task, self.tokens[""]), rank, self.config)
        t, cost_so_far = len(node.prefix) + 1, node.cost_so_far + cost
        prev_acc = node.metrics.accuracy if math.isfinite(node.metrics.accuracy) else 0.0
        metrics = Metrics(acc, f1, val_loss, train_loss)
        values = state_values(metrics, acc - prev_acc, cost_so_far, t, self.config.episode_length,
                              self.grid.rank_position(rank), self.grid.lr_position(lr))
        extra = self.config.extra_observations  # not predicted: the last observed values
        obs = build_observation({**values, **carried_features(node.obs),
                                 **carried_monitor(node.obs, extra)}, with_monitor(extra))
        obs.setflags(write=False)
        return Node((*node.prefix, int(action)), obs, metrics, rank, lr, cost, cost_so_far, False)


def _tokens_per_segment(index: TableIndex, config: EnvConfig) -> dict[str, float]:
    """Mean tokens per recorded segment by task (key ``""``: over all tasks), from the costs."""
    by_task: dict[str, list[float]] = defaultdict(list)
    for task, _, node in index.nodes():
        if node.prefix and not node.diverged:
            by_task[task].append(segment_tokens(node.cost, node.rank, config))
    out = {task: float(np.mean(v)) for task, v in by_task.items()}
    every = [x for v in by_task.values() for x in v]
    out[""] = float(np.mean(every)) if every else reference_tokens(config)
    return out
