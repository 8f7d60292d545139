"""A surrogate of the live env fitted on recorded steps: (observation, action) -> next metrics.

Inputs (`features`) are the observation before the step, the action's rank and lr positions in
the grid, their changes from the current ones and whether it is the episode's first step; targets
are the changes of accuracy, F1 and validation loss and the next training loss (losses capped
like the observation). Predictions are clipped to valid ranges ([0, 1] for scores, [0, LOSS_CAP]
for losses). Each prediction comes with an uncertainty: the regressor's standard deviation of the
accuracy change (`lora_gym.replay.regressors`), which the replay env reports and its
``pessimism`` subtracts from rewards. The cost of a step is computed analytically from the task's
mean recorded tokens per segment and the chosen rank (`lora_gym.core.cost`). The surrogate never
predicts divergence.

Every predicted step is memoised (its child node is kept), so an episode that leaves the table
along a path seen before costs no prediction; a prediction is one row through a few numpy
operations (a policy seldom revisits a node off the table, so batching a node's actions would
not pay).
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
from lora_gym.replay.regressors import NearestNeighbours, RandomFeatureEnsemble

SURROGATE_KINDS: tuple[str, ...] = ("ensemble", "knn")
"""``ensemble``: bagged random-feature ridge regressions, uncertainty = the members' standard
deviation of the accuracy change; ``knn``: distance-weighted 5-NN, uncertainty = the weighted
standard deviation of the neighbours' accuracy changes (see `lora_gym.replay.regressors`)."""
MIN_ROWS = 8
"""Fewest recorded (non-diverged) steps a surrogate is fitted on."""
MEMO_LIMIT = 50_000
"""Predicted nodes kept before every memoised surrogate node is dropped (bounds memory; about
1 kB a node)."""
TARGET_NAMES: tuple[str, ...] = ("delta_accuracy", "delta_f1", "delta_val_loss", "train_loss")
"""The regressors' targets, in column order."""
_I = {name: i for i, name in enumerate(OBSERVATION_NAMES)}
_DELTA_SLOTS = [_I["val_accuracy"], _I["val_macro_f1"], _I["val_loss"]]

Regressor = RandomFeatureEnsemble | NearestNeighbours


def features(obs: np.ndarray, rank_position: float, lr_position: float,
             choices: tuple[float, ...] = ()) -> list[float]:
    """Regressor inputs of one step from observation `obs` with an action at grid positions.

    The entries of `OBSERVATION_SPEC` (an env's extra observation entries are not inputs), the
    action's rank and lr positions, their changes from the current ones, whether it is the
    episode's first step and the action's `choices` inputs (`choice_inputs`).
    """
    o = obs[:len(OBSERVATION_NAMES)].tolist()
    return [*o, rank_position, lr_position, rank_position - o[_I["rank_position"]],
            lr_position - o[_I["lr_position"]], float(o[_I["steps_left"]] >= 1.0), *choices]


def choice_inputs(grid: ActionGrid, action: int) -> tuple[float, ...]:
    """An action's inputs beyond rank and lr (none without choices).

    With ``steps_choices`` the steps' position, with ``augmentation_choices`` a one-hot of the
    augmentation.
    """
    out = (grid.steps_position(grid.steps_of(action)),) if grid.steps else ()
    if grid.augmentations:
        kind = grid.augmentation_of(action)
        out += tuple(float(kind == k) for k in grid.augmentations)
    return out


def action_positions(grid: ActionGrid
                     ) -> tuple[list[float], list[float], list[tuple[float, ...]]]:
    """Rank and lr positions and the `choice_inputs` of every training action, in action order."""
    pairs = grid.pairs()
    return ([grid.rank_position(r) for r, _ in pairs], [grid.lr_position(lr) for _, lr in pairs],
            [choice_inputs(grid, a) for a in range(grid.n_pairs)])


def training_data(index: TableIndex, grid: ActionGrid, exclude: frozenset[str] = frozenset()
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Inputs X, targets Y (columns `TARGET_NAMES`) and the task of every recorded step.

    Diverged steps and the steps of the tasks in `exclude` are left out.
    """
    ranks, lrs, steps = action_positions(grid)
    xs, ys, tasks = [], [], []
    for task, _, node in index.nodes():
        if task in exclude:
            continue
        for action, child in node.children.items():
            if child.diverged:
                continue
            m = child.metrics
            xs.append(features(node.obs, ranks[action], lrs[action], steps[action]))
            ys.append([m.accuracy, m.f1, min(m.val_loss, LOSS_CAP), min(m.train_loss, LOSS_CAP)])
            tasks.append(task)
    X = np.array(xs, dtype=np.float64).reshape(-1, len(OBSERVATION_NAMES) + 5 + len(steps[0]))
    Y = np.array(ys, dtype=np.float64).reshape(-1, len(TARGET_NAMES))
    Y[:, :3] -= X[:, _DELTA_SLOTS]
    return X, Y, tasks


def fit_models(X: np.ndarray, Y: np.ndarray, kind: str = "ensemble") -> Regressor:
    """Fit the regressor of a surrogate kind on inputs X and targets Y."""
    if kind not in SURROGATE_KINDS:
        raise ValueError(f"`surrogate` must be one of {list(SURROGATE_KINDS)}, got {kind!r}")
    if len(X) < MIN_ROWS:
        raise ValueError(f"a surrogate needs at least {MIN_ROWS} recorded steps, the table has "
                         f"{len(X)}; record more episodes")
    return (RandomFeatureEnsemble() if kind == "ensemble" else NearestNeighbours()).fit(X, Y)


def next_metrics(x: list[float], predicted: list[float]) -> Metrics:
    """The metrics after a step of inputs `x` whose targets were `predicted`.

    They are clipped to valid ranges: [0, 1] for scores, [0, LOSS_CAP] for losses.
    """
    d_acc, d_f1, d_val_loss, train_loss = predicted
    acc, f1, val_loss = x[_DELTA_SLOTS[0]] + d_acc, x[_DELTA_SLOTS[1]] + d_f1, \
        x[_DELTA_SLOTS[2]] + d_val_loss
    return Metrics(min(max(acc, 0.0), 1.0), min(max(f1, 0.0), 1.0),
                   min(max(val_loss, 0.0), LOSS_CAP), min(max(train_loss, 0.0), LOSS_CAP))


class Surrogate:
    """Steps an episode off the table: predicted metrics, analytic cost, rebuilt observation.

    ``exclude`` names tasks whose recorded steps the regressors must not learn from: a replay
    env of the train or val split excludes the test split's tasks, so that the simulator an
    agent is trained and selected on has never seen a test task.
    """

    def __init__(self, index: TableIndex, config: EnvConfig, kind: str = "ensemble",
                 exclude: frozenset[str] = frozenset()) -> None:
        self.config, self.kind = config, kind
        self.grid = ActionGrid.of(config)
        X, Y, _ = training_data(index, self.grid, exclude)
        self.models = fit_models(X, Y, kind)
        self.tokens = _tokens_per_step(index, config, self.grid)
        self._positions = action_positions(self.grid)
        self._steps = [self.grid.steps_of(a) for a in range(self.grid.n_pairs)]
        self._off_table: dict[tuple[Node, int], Node] = {}
        self._costs: dict[tuple[str, int, int], float] = {}
        self._predicted = 0

    def step(self, task: str, node: Node, action: int, on_table: bool) -> Node:
        """The node after taking `action` from `node` (memoised, never added to the index).

        A surrogate node keeps its predicted children in its own ``children``; the first step
        off a table node is kept here (a table node's children are real records only).
        """
        if self._predicted >= MEMO_LIMIT:
            self._off_table.clear()  # frees every memoised surrogate subtree
            self._predicted = 0
        memo: dict[Any, Node] = self._off_table if on_table else node.children
        key = (node, action) if on_table else action
        child = memo.get(key)
        if child is None:
            child = memo[key] = self._child(task, node, action)
            self._predicted += 1
        return child

    def _child(self, task: str, node: Node, action: int) -> Node:
        rank_position, lr_position, choices = (p[action] for p in self._positions)
        x = features(node.obs, rank_position, lr_position, choices)
        predicted, uncertainty = self.models.predict(np.array([x]))
        metrics = next_metrics(x, predicted[0].tolist())
        rank, lr = self.grid.decode(action)
        steps = self._steps[action]
        cost = self._costs.get((task, rank, steps))
        if cost is None:
            cost = self._costs[task, rank, steps] = segment_cost(
                self.tokens.get(task, self.tokens[""]) * steps, rank, self.config)
        t, cost_so_far = len(node.prefix) + 1, node.cost_so_far + cost
        prev_acc = node.metrics.accuracy if math.isfinite(node.metrics.accuracy) else 0.0
        values = state_values(metrics, metrics.accuracy - prev_acc, cost_so_far, t,
                              self.config.episode_length, rank_position, lr_position)
        extra = self.config.extra_observations  # not predicted: the last observed values
        obs = build_observation({**values, **carried_features(node.obs),
                                 **carried_monitor(node.obs, extra)}, with_monitor(extra))
        obs.setflags(write=False)
        return Node((*node.prefix, int(action)), obs, metrics, rank, lr, cost, cost_so_far, False,
                    float(uncertainty[0]))


def _tokens_per_step(index: TableIndex, config: EnvConfig, grid: ActionGrid
                     ) -> dict[str, float]:
    """Mean tokens per optimizer step by task (key ``""``: over all tasks), from the costs."""
    by_task: dict[str, list[float]] = defaultdict(list)
    for task, _, node in index.nodes():
        if node.prefix and not node.diverged:
            steps = grid.steps_of(node.prefix[-1])
            by_task[task].append(segment_tokens(node.cost, node.rank, config) / steps)
    out = {task: float(np.mean(v)) for task, v in by_task.items()}
    every = [x for v in by_task.values() for x in v]
    out[""] = float(np.mean(every)) if every else reference_tokens(config) / config.steps_per_action
    return out
