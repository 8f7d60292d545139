"""Baselines act through the predict protocol; the shared evaluation scores them."""

import gymnasium as gym
import numpy as np
import pytest

import lora_gym  # noqa: F401
from lora_gym import policies as baselines
from lora_gym.core.observation import OBSERVATION_NAMES
from lora_gym.policies import report
from lora_gym.policies.evaluate import evaluate
from lora_gym.policies.runner import run_episode
from tests.conftest import TINY


@pytest.fixture(scope="module")
def env():
    return gym.make("LoRATune-v0", config=TINY)


def test_every_baseline_completes_episodes(env):
    grid = env.unwrapped.grid
    policies = {
        "default": baselines.FixedPolicy.peft_default(grid),
        "random": baselines.RandomPolicy(grid.n_pairs, seed=0),
        "schedule": baselines.SchedulePolicy(grid, env.unwrapped.config.episode_length),
        "oracle": baselines.TaskTablePolicy({"synth-c": baselines.FixedPolicy(1)}),
        "optuna": baselines.SequencePolicy({"synth-c": [0, 5, 2]}),
    }
    results = evaluate(env, policies, ["synth-c"], [0, 1], progress=False)
    assert len(results) == 10
    for r in results:
        assert r.steps == env.unwrapped.config.episode_length and not r.diverged
        assert r.episode_return == pytest.approx(sum(s["reward"] for s in r.trajectory))
    seq = next(r for r in results if r.method == "optuna")
    assert [(s["rank"], s["lr"]) for s in seq.trajectory] == [grid.decode(a) for a in (0, 5, 2)]


def test_same_seed_same_episode_for_every_policy(env):
    a = run_episode(env, baselines.FixedPolicy(3), "synth-c", 7)
    b = run_episode(env, baselines.FixedPolicy(3), "synth-c", 7)
    assert a.trajectory == b.trajectory and a.initial_accuracy == b.initial_accuracy


def test_schedule_grows_rank_and_decays_lr():
    grid = gym.make("LoRATune-v0", config=TINY).unwrapped.grid
    policy = baselines.SchedulePolicy(grid, episode_length=3)
    obs = np.zeros(len(OBSERVATION_NAMES), dtype=np.float32)
    steps_left = OBSERVATION_NAMES.index("steps_left")
    plan = []
    for left in (1.0, 2 / 3, 1 / 3):
        obs[steps_left] = left
        plan.append(grid.decode(int(policy.predict(obs)[0])))
    ranks, lrs = zip(*plan, strict=True)
    assert list(ranks) == sorted(ranks) and ranks[0] < ranks[-1]
    assert list(lrs) == sorted(lrs, reverse=True) and lrs[0] > lrs[-1]


def test_predict_is_batched_like_sb3():
    policy = baselines.FixedPolicy(2)
    actions, state = policy.predict(np.zeros((4, len(OBSERVATION_NAMES))))
    assert actions.tolist() == [2, 2, 2, 2] and state is None


def test_task_table_rejects_unknown_task():
    with pytest.raises(KeyError, match="no policy searched for task 'x'"):
        baselines.TaskTablePolicy({"a": baselines.FixedPolicy(0)}).begin_episode("x")


def test_bootstrap_interval_brackets_the_mean():
    values = np.random.default_rng(0).normal(1.0, 0.5, size=50)
    lo, hi = report.bootstrap_ci(values)
    assert lo < values.mean() < hi and hi - lo < 0.5


def test_static_triple_stops_after_its_segments(env):
    grid, T = env.unwrapped.grid, env.unwrapped.config.episode_length
    result = run_episode(env, baselines.FixedPolicy(1, segments=2, grid=grid, episode_length=T),
                         "synth-c", 0)
    full = run_episode(env, baselines.FixedPolicy(1), "synth-c", 0)
    assert result.steps == 2 and result.trajectory[-1]["stopped"]
    assert result.trajectory[:2] == [dict(s, stopped=False) for s in full.trajectory[:2]]
    assert result.episode_return == pytest.approx(sum(s["reward"] for s in full.trajectory[:2]))


def test_patience_stops_when_accuracy_stalls():
    grid = gym.make("LoRATune-v0", config=TINY).unwrapped.grid
    policy = baselines.PatiencePolicy(2, grid, episode_length=4, threshold=0.01, patience=2)
    obs = np.zeros(len(OBSERVATION_NAMES), dtype=np.float32)
    left, delta = OBSERVATION_NAMES.index("steps_left"), OBSERVATION_NAMES.index("delta_accuracy")
    acts = []
    for t, d in enumerate((0.0, 0.2, 0.005, 0.0)):
        obs[left], obs[delta] = 1 - t / 4, d
        acts.append(policy.act(obs))
    assert acts == [2, 2, 2, grid.stop_action]


def test_static_search_covers_segments():
    from lora_gym.policies.search import best_triple

    returns = np.array([[0.1, 0.5, 0.4], [0.2, 0.3, 0.45]])
    assert best_triple(returns, stop=True) == (0, 2)
    assert best_triple(returns, stop=False) == (1, 3)


def test_paired_differences_match_episodes():
    from lora_gym.policies.runner import EpisodeResult

    def r(method, seed, ret):
        return EpisodeResult(method, "t", seed, ret, 0.5, 0.1, 1.0, 2, False)

    results = [r("ppo", 0, 0.5), r("ppo", 1, 0.7), r("best-static", 0, 0.4),
               r("best-static", 1, 0.4), r("patience", 0, 0.6)]
    paired = report.paired_differences(results, ["ppo"])
    assert paired["ppo - best-static"]["mean"] == pytest.approx(0.2)
    assert paired["ppo - best-static"]["pairs"] == 2
    assert paired["ppo - patience"]["pairs"] == 1


@pytest.mark.parametrize("methods", [["rank-controller", "best-static", "patience"],
                                     ["best-static", "rank-controller"],
                                     ["rank-controller", "best-static"]])
def test_policies_built_on_best_static_get_its_action_in_any_order(methods):
    """patience repeats best-static's action and the rank controller takes its lr, whatever
    the order of --methods (one owner of the training-task search: PolicyContext)."""
    import argparse

    import gymnasium as gym

    from lora_gym.cli import compare
    from lora_gym.envs.grid_actions import grid_actions
    from tests.conftest import TINY

    env = grid_actions(gym.make("LoRATuneReplay-v0", config=TINY, task_split="test"))
    args = argparse.Namespace(methods=methods, seed=0, no_progress=True, agent=[], algo="ppo")
    policies, _, _ = compare.build_policies(env, args, ["synth-c"], [0])
    grid = env.unwrapped.grid
    static = policies["best-static"].action
    assert policies["rank-controller"].lr == grid.decode(static)[1]
    if "patience" in policies:
        assert policies["patience"].action == static


def test_the_first_factory_that_needs_best_static_runs_its_search_once():
    from lora_gym.core.config import EnvConfig
    from lora_gym.policies import PolicyContext, make_policies
    from tests.conftest import TINY

    config = EnvConfig.from_yaml(TINY)
    calls = []

    def search(ctx):  # stands in for the training-task search: picks rank 2, lr 1e-2
        calls.append(1)
        ctx.cache["static_action"] = ctx.grid.encode(2, 1.0e-2)

    ctx = PolicyContext.of(config, static_search=search)
    controller, patience = make_policies(["rank-controller", "patience"], ctx)
    assert controller.lr == 1.0e-2 and patience.action == ctx.grid.encode(2, 1.0e-2)
    assert calls == [1]
    (plain,) = make_policies(["rank-controller"], PolicyContext.of(config))  # no search: default
    assert plain.lr == 1.0e-3
