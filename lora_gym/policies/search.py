"""Search-based baselines, registered as policies: best static transfer, per-task oracle, Optuna.

A static configuration is a (rank, lr, number of segments) triple when the env has a stop
action: every search here is over that triple, so a learned policy gets no credit for stopping
that a static baseline could not also have. Searches use the env they are given (replay or
live) and their episodes are counted in ``policy.search_episodes``.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from lora_gym.policies.base import FixedPolicy, Policy, PolicyContext, PolicyFactory
from lora_gym.policies.evaluate import fixed_action_returns, split_tasks, static_returns
from lora_gym.policies.oracles import SequencePolicy, TaskTablePolicy
from lora_gym.policies.runner import run_episode

SEARCH_SEED = 10_000
"""Search episodes on the training tasks use reset seeds from here, disjoint from evaluation."""


def best_triple(returns: np.ndarray, stop: bool) -> tuple[int, int]:
    """``(pair action, segments)`` with the highest return in a ``(n_pairs, T)`` array."""
    if not stop:
        return int(np.argmax(returns[:, -1])), returns.shape[1]
    a, k = np.unravel_index(int(np.argmax(returns)), returns.shape)
    return int(a), int(k) + 1


def static_policy(ctx: PolicyContext, action: int, segments: int, name: str) -> FixedPolicy:
    """A fixed (rank, lr) trained for `segments` segments, then stop (none at full length)."""
    if segments >= ctx.episode_length:
        return FixedPolicy(action, name)
    return FixedPolicy(action, name, segments, ctx.grid, ctx.episode_length)


def train_grid(ctx: PolicyContext) -> dict[str, np.ndarray]:
    """The grid search of every static configuration on the *training* tasks (cached in ctx).

    Also leaves the best training action in ``ctx.cache["static_action"]``: the patience rule
    repeats it (steps choice included), the rank controller takes its lr.
    """
    if "train_grid" not in ctx.cache:
        if ctx.env is None:
            raise ValueError("best-static and patience search the training tasks: they need an "
                             "env (run them through `lora-gym compare`)")
        tasks = split_tasks(ctx.env, "train")
        grid = fixed_action_returns(ctx.env, tasks, [SEARCH_SEED + ctx.seed], ctx.progress)
        ctx.cache["train_grid"] = grid
        mean = np.mean(list(grid.values()), axis=0)
        action, _ = best_triple(mean, ctx.grid.stop)
        ctx.cache["static_action"] = action
    return ctx.cache["train_grid"]


def best_static(ctx: PolicyContext) -> list[Policy]:
    """The single static configuration with the best mean return over the training tasks."""
    grid = train_grid(ctx)
    action, segments = best_triple(np.mean(list(grid.values()), axis=0), ctx.grid.stop)
    policy = static_policy(ctx, action, segments, "best-static")
    policy.search_episodes = len(grid) * ctx.grid.n_pairs
    return [policy]


def oracle(ctx: PolicyContext) -> list[Policy]:
    """Per evaluation task, its best static configuration on the evaluation seeds.

    An upper bound among static configurations (it searches the very episodes it is scored
    on); its grid of returns gives the comparison's normalised regret (``grid_returns``).
    """
    if ctx.env is None or not ctx.tasks:
        raise ValueError("the oracle searches the evaluation tasks: it needs an env and tasks")
    grid = fixed_action_returns(ctx.env, list(ctx.tasks), list(ctx.seeds), ctx.progress)
    table = {task: static_policy(ctx, *best_triple(r, ctx.grid.stop), "oracle")
             for task, r in grid.items()}
    policy = TaskTablePolicy(table, "oracle")
    policy.grid_returns = {t: static_returns(r, ctx.grid.stop) for t, r in grid.items()}
    policy.search_episodes = len(grid) * ctx.grid.n_pairs * len(ctx.seeds)
    return [policy]


def optuna_sequences(ctx: PolicyContext) -> list[Policy]:
    """Per evaluation task, Optuna TPE over the whole action sequence (stop included).

    Each trial is one episode on a search seed disjoint from the evaluation seeds; the budget
    is as many episodes per task as the grid has (rank, lr) pairs.
    """
    import optuna

    if ctx.env is None or not ctx.tasks:
        raise ValueError("optuna searches the evaluation tasks: it needs an env and tasks")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n_trials, n, T = ctx.grid.n_pairs, len(ctx.grid), ctx.episode_length
    best = {}
    for task in tqdm(ctx.tasks, desc="optuna", disable=not ctx.progress):
        def objective(trial, task=task):
            seq = [trial.suggest_categorical(f"a{t}", list(range(n))) for t in range(T)]
            return run_episode(ctx.env, SequencePolicy({task: seq}), task,
                               SEARCH_SEED + ctx.seed).episode_return

        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=ctx.seed))
        study.optimize(objective, n_trials=n_trials)
        best[task] = [study.best_params[f"a{t}"] for t in range(T)]
    policy = SequencePolicy(best, "optuna")
    policy.search_episodes = len(ctx.tasks) * n_trials
    return [policy]


SEARCH_POLICIES: dict[str, PolicyFactory] = {
    "best-static": best_static, "oracle": oracle, "optuna": optuna_sequences}
"""The search baselines' factories; `lora_gym.policies` adds them to `POLICIES`."""
