"""The replay surrogate: uncertainty off the table, determinism, pessimism in the replay env."""

import math

import gymnasium as gym
import numpy as np
import pytest

import lora_gym  # noqa: F401
from lora_gym.core.actions import ActionGrid
from lora_gym.core.config import resolve_config
from lora_gym.core.metrics import Metrics
from lora_gym.core.observation import OBSERVATION_NAMES, build_observation, state_values
from lora_gym.replay.index import Node, TableIndex
from lora_gym.replay.surrogate import SURROGATE_KINDS, Surrogate, fit_models, training_data
from tests.conftest import TINY

CONFIG = resolve_config(TINY)
GRID = ActionGrid.of(CONFIG)


def synthetic_index(episodes: int = 12) -> TableIndex:
    """Episodes of a made-up task: accuracy closes a share of its gap that grows with the lr."""
    rng = np.random.default_rng(0)
    index = TableIndex(CONFIG.model, "synthetic")
    task_values = {name: 0.5 for name in OBSERVATION_NAMES[OBSERVATION_NAMES.index(
        "log10_train_size"):]}

    def node(prefix, acc, rank, lr, delta):
        metrics = Metrics(acc, acc, 1.0 - acc, 1.0 - acc)
        values = state_values(metrics, delta, float(len(prefix)), len(prefix),
                              CONFIG.episode_length, GRID.rank_position(rank),
                              GRID.lr_position(lr) if lr else 0.0)
        obs = build_observation({**values, **task_values})
        obs.setflags(write=False)
        return Node(prefix, obs, metrics, rank, lr, 1.0, float(len(prefix)), False)

    for seed in range(episodes):
        acc, prefix = 0.3 + 0.02 * seed, ()
        index.add("synth", seed, node((), acc, GRID.ranks[0], None, 0.0))
        for _ in range(CONFIG.episode_length):
            action = int(rng.integers(GRID.n_pairs))
            rank, lr = GRID.decode(action)
            new = acc + (1.0 - acc) * (0.2 + 0.5 * GRID.lr_position(lr))
            prefix = (*prefix, action)
            index.add("synth", seed, node(prefix, new, rank, lr, new - acc))
            acc = new
    return index


@pytest.mark.parametrize("kind", SURROGATE_KINDS)
def test_uncertainty_is_larger_off_the_table(kind):
    X, Y, _ = training_data(synthetic_index(), GRID)
    model = fit_models(X, Y, kind)
    _, on_table = model.predict(X)
    far = X.copy()
    far[:, :4] = [0.02, 0.02, 9.0, 9.0]  # accuracy, F1 and losses no recorded step had
    far[:, OBSERVATION_NAMES.index("log10_train_size")] = 6.5
    _, off_table = model.predict(far)
    assert np.all(on_table >= 0) and np.all(np.isfinite(off_table))
    assert off_table.mean() > 3 * on_table.mean() + 1e-3


@pytest.mark.parametrize("kind", SURROGATE_KINDS)
def test_predictions_are_deterministic(kind):
    index = synthetic_index()
    a, b = Surrogate(index, CONFIG, kind), Surrogate(index, CONFIG, kind)
    root = index.get("synth", 0, ())
    for action in range(GRID.n_pairs):
        x, y = a.step("synth", root, action, True), b.step("synth", root, action, True)
        np.testing.assert_array_equal(x.obs, y.obs)
        assert x.metrics == y.metrics and x.uncertainty == y.uncertainty > 0.0
        assert a.step("synth", root, action, True) is x  # memoised


def test_surrogate_learns_the_synthetic_dynamics():
    X, Y, _ = training_data(synthetic_index(60), GRID)
    test = np.arange(len(X)) % 4 == 0
    mean, _ = fit_models(X[~test], Y[~test], "ensemble").predict(X[test])
    error, spread = Y[test, 0] - mean[:, 0], Y[test, 0] - Y[test, 0].mean()
    assert 1.0 - (error**2).sum() / (spread**2).sum() > 0.5  # held-out R^2; the mean gets 0


def replay(**kwargs):
    return gym.make("LoRATuneReplay-v0", config=TINY, task_split="all", **kwargs)


def leave_the_table(env):
    """Reset, take a recorded action, then an unrecorded one; the infos of the three."""
    _, info = env.reset(seed=0, options={"task": "synth-a"})
    root = env.unwrapped.index.get("synth-a", info["episode_seed"], ())
    recorded = min(root.children)
    child = root.children[recorded]
    missing = min(a for a in range(GRID.n_pairs) if a not in child.children)
    return [info, *(env.step(a) for a in (recorded, missing))]


def test_pessimism_lowers_surrogate_rewards_only():
    plain = leave_the_table(replay())
    pessimistic = leave_the_table(replay(pessimism=2.0))
    assert plain[0]["uncertainty"] == pessimistic[0]["uncertainty"] == 0.0
    (_, r0, *_, table0), (_, r1, *_, table1) = plain[1], pessimistic[1]
    assert table0["source"] == table1["source"] == "table"
    assert r0 == r1 and table1["uncertainty"] == 0.0
    assert "uncertainty_penalty" not in table1["reward_components"]
    (_, r0, *_, off0), (_, r1, *_, off1) = plain[2], pessimistic[2]
    assert off0["source"] == off1["source"] == "surrogate"
    u = off1["uncertainty"]
    assert u == off0["uncertainty"] > 0.0
    assert "uncertainty_penalty" not in off0["reward_components"]
    assert off1["reward_components"]["uncertainty_penalty"] == pytest.approx(-2.0 * u)
    assert r1 == pytest.approx(r0 - 2.0 * u) and r1 < r0


def test_a_stop_off_the_table_never_reaches_the_surrogate():
    env = replay(pessimism=1.0)
    leave_the_table(env)
    served = env.unwrapped.source_counts["surrogate"]
    *_, terminated, _, info = env.step(GRID.stop_action)
    assert terminated and info["stopped"] and info["uncertainty"] == 0.0
    assert "uncertainty_penalty" not in info["reward_components"]
    assert env.unwrapped.source_counts["surrogate"] == served


@pytest.mark.parametrize(("value", "error"), [(-0.1, ValueError), (math.nan, ValueError),
                                               (math.inf, ValueError), ("1", TypeError),
                                               (True, TypeError)])
def test_pessimism_is_validated(value, error):
    with pytest.raises(error, match="`pessimism`"):
        replay(pessimism=value)


def surrogate_step_on(store, split):
    """The surrogate's observation after leaving the table on synth-a (a train task)."""
    env = gym.make("LoRATuneReplay-v0", config=TINY, task_split=split, store=store)
    *_, (obs, _, _, _, info) = leave_the_table(env)
    assert info["source"] == "surrogate"
    return obs


def test_a_train_split_surrogate_never_learns_from_test_tasks(tmp_path):
    import shutil
    import sqlite3

    from lora_gym.replay.tables import resolve_store

    shipped, _ = resolve_store("tiny", CONFIG)
    without_test = tmp_path / "no-test.sqlite"
    shutil.copy(shipped, without_test)
    with sqlite3.connect(without_test) as db:
        deleted = db.execute("DELETE FROM steps WHERE task = 'synth-c'").rowcount
    assert deleted > 0
    for split in ("train", "val"):
        np.testing.assert_array_equal(surrogate_step_on(shipped, split),
                                      surrogate_step_on(without_test, split))
    # the test split's own env does learn from them
    assert not np.array_equal(surrogate_step_on(shipped, "all"),
                              surrogate_step_on(without_test, "all"))


@pytest.mark.parametrize("kind", SURROGATE_KINDS)
def test_an_input_constant_in_the_fitted_rows_stays_sane(kind):
    """Rows of a single lr (a float column of rounding noise): another lr predicts moderately."""
    X, Y, _ = training_data(synthetic_index(), GRID)
    column = len(OBSERVATION_NAMES) + 1  # the action's lr position
    X[:, column] = 0.1 + 1e-17 * np.arange(len(X)) % 3  # std ~1e-17, not exactly 0
    model = fit_models(X, Y, kind)
    other = X[:5].copy()
    other[:, column] = 0.9
    mean, std = model.predict(other)
    assert np.all(np.abs(mean[:, 0]) < 2.0) and np.all(np.isfinite(std))
