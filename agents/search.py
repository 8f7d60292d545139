"""Search-based baselines: per-task oracle, best static transfer, Optuna TPE over sequences."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from agents.baselines import FixedPolicy, SequencePolicy, TaskTablePolicy
from agents.evaluate import fixed_action_returns, run_episode


def oracle(env, tasks: list[str], seeds: list[int], progress: bool = True
           ) -> tuple[TaskTablePolicy, dict[str, np.ndarray]]:
    """Per task, the best fixed action found by exhaustive search on that task.

    An upper bound among fixed actions when `seeds` are the evaluation seeds. Also returns the
    grid search's mean return of every action on every task.
    """
    grid = fixed_action_returns(env, tasks, seeds, progress)
    return TaskTablePolicy({t: int(np.argmax(r)) for t, r in grid.items()}, "oracle"), grid


def best_static_transfer(env, train_tasks: list[str], seeds: list[int], progress: bool = True
                         ) -> FixedPolicy:
    """The single action with the best mean return over the *training* tasks."""
    grid = fixed_action_returns(env, train_tasks, seeds, progress)
    return FixedPolicy(int(np.argmax(np.mean(list(grid.values()), axis=0))), "best-static")


def optuna_sequences(env, tasks: list[str], seeds: list[int], n_trials: int, sampler_seed: int = 0,
                     progress: bool = True) -> SequencePolicy:
    """Per task, Optuna TPE over the whole action sequence (one categorical per step).

    Each trial is one episode per seed in `seeds`; `n_trials` sets the search budget (the
    comparison gives it as many episodes as the exhaustive grid search).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    length = env.unwrapped.config.episode_length
    n = int(env.action_space.n)
    best = {}
    for task in tqdm(tasks, desc="optuna", disable=not progress):
        def objective(trial, task=task):
            seq = [trial.suggest_categorical(f"a{t}", list(range(n))) for t in range(length)]
            policy = SequencePolicy({task: seq})
            return float(np.mean([run_episode(env, policy, task, s).episode_return
                                  for s in seeds]))

        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=sampler_seed))
        study.optimize(objective, n_trials=n_trials)
        best[task] = [study.best_params[f"a{t}"] for t in range(length)]
    return SequencePolicy(best, "optuna")
