"""Subprocess smoke tests of train_agent.py (rl-zoo layout, resume) and agents.compare."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, TINY

TINY_KWARGS = ["--env-kwargs", f"config:'{TINY}'"]


def run(*args):
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    run("train_agent.py", "--env", "LoRATune-v0", *TINY_KWARGS, "-n", "64", "-f", str(logs),
        "--eval-freq", "32", "--eval-episodes", "2", "--save-freq", "32",
        "-params", "n_steps:32", "--verbose", "0", "-tb", str(logs / "tb"))
    return logs


def test_train_agent_writes_the_zoo_layout(trained):
    run_dir = trained / "ppo" / "LoRATune-v0_1"
    for name in ("LoRATune-v0.zip", "best_model.zip", "evaluations.npz", "vecnormalize.pkl",
                 "0.monitor.csv", "rl_model_32_steps.zip", "LoRATune-v0/args.yml",
                 "LoRATune-v0/config.yml", "LoRATune-v0/env_config.yml"):
        assert (run_dir / name).is_file(), name
    evaluations = np.load(run_dir / "evaluations.npz")
    assert list(evaluations["timesteps"]) == [32, 64]
    assert list((trained / "tb").glob("*/events.out.tfevents.*"))


def test_resume_continues_in_a_new_run(trained):
    first = trained / "ppo" / "LoRATune-v0_1" / "LoRATune-v0.zip"
    run("train_agent.py", *TINY_KWARGS, "-n", "32", "-f", str(trained), "--eval-freq", "-1",
        "-params", "n_steps:32", "--verbose", "0", "-i", str(first))
    from stable_baselines3 import PPO

    resumed = PPO.load(trained / "ppo" / "LoRATune-v0_2" / "LoRATune-v0.zip")
    assert resumed.num_timesteps == 96  # 64 from the first run + 32 more


def test_compare_scores_every_method_and_the_agent(trained, tmp_path):
    agent = trained / "ppo" / "LoRATune-v0_1" / "best_model.zip"
    run("-m", "lora_gym", "compare", *TINY_KWARGS, "--seeds", "2", "--out", str(tmp_path),
        "--agent", f"ppo={agent}", "--no-progress", "--export-adapters", str(tmp_path / "ad"))
    results = json.loads((tmp_path / "results.json").read_text())
    methods = {"default", "random", "schedule", "patience", "rank-controller", "best-static",
               "oracle", "optuna", "ppo"}
    assert set(results["summary"]) == methods
    assert results["tasks"] == ["synth-c"] and results["seeds"] == [0, 1]
    assert len(results["episodes"]) == len(methods) * 2
    oracle_grid = results["grid_returns"]["synth-c"]
    assert results["summary"]["oracle"]["return"] == pytest.approx(max(oracle_grid))
    for name in ("results.md", "returns.png", "accuracy_vs_cost.png", "trajectories.png"):
        assert (tmp_path / name).stat().st_size > 0
    for method in methods:  # the best episode's adapter of every method, as a PEFT folder
        assert (tmp_path / "ad" / method / "synth-c" / "adapter_config.json").is_file()
    assert set(results["paired"]) == {"ppo - best-static", "ppo - patience"}
    assert all(0 <= row["segments"] <= 3 for row in results["summary"].values())


def test_live_benchmark_table(trained, tmp_path):
    agent = trained / "ppo" / "LoRATune-v0_1" / "LoRATune-v0.zip"
    args = ["benchmarks/agent_live.py", "--agent", str(agent), "--config", TINY, "--store",
            str(tmp_path / "live.sqlite"), "--seeds", "2", "--optuna-trials", "6", "--out",
            str(tmp_path / "out")]
    out = run(*args).stdout
    result = json.loads((tmp_path / "out" / "agent_live.json").read_text())
    assert set(result["summary"]) == {"agent", "default", "random", "best-static", "patience",
                                      "rank-controller", "optuna"}
    assert result["paired"]["agent - best-static"]["pairs"] == 2
    assert result["sim_to_real"]["episodes"] == 14 and "sim-to-real over 14" in out
    rerun = run(*args).stdout  # every step was recorded: the rerun runs nothing live
    assert "'live': 0" in rerun


def test_main_job_on_tiny_table(tmp_path):
    """`make demo`'s pipeline: PPO on the replay table, comparison, live check."""
    out = subprocess.run(
        [sys.executable, "-m", "lora_gym", "demo", "--config", TINY,
         "--timesteps", "1000", "--seeds", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1",
                                             "LORA_GYM_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| ppo |" in out.stdout and "spearman_returns=" in out.stdout
    assert "table fraction of the replayed steps" in out.stdout
    assert (tmp_path / "compare" / "results.json").is_file()


def test_live_check_separates_consistency_from_sim_to_real():
    from lora_gym.cli.demo import live_check_summary
    from lora_gym.policies.sim2real import EpisodePair

    held = [EpisodePair("ppo", "t", s, 0.1 * s, 0.1 * s, 0.5, 0.5, 1.0) for s in range(3)]
    text = live_check_summary(held)
    assert "table fraction of the replayed steps: 1.000 over 3" in text
    assert "no episode left the table: this live check is a replay consistency check" in text
    off = [EpisodePair("ppo", "u", s, 0.2 * s, 0.1 * s, 0.6, 0.5, 0.5) for s in range(2)]
    text = live_check_summary(held + off)
    assert "sim-to-real (2 episode(s) with steps off the table" in text
    assert "replay consistency check (3 episode(s) fully in the table)" in text


def test_live_benchmark_extra_agents_and_fewer_baselines(trained, tmp_path):
    agent = trained / "ppo" / "LoRATune-v0_1" / "LoRATune-v0.zip"
    best = trained / "ppo" / "LoRATune-v0_1" / "best_model.zip"
    run("benchmarks/agent_live.py", "--agent", str(agent), "--agents", f"best={best}",
        "--methods", "best-static", "patience", "--config", TINY, "--store",
        str(tmp_path / "live.sqlite"), "--seeds", "1", "--first-seed", "1", "--optuna-trials", "0",
        "--out", str(tmp_path / "out"))
    result = json.loads((tmp_path / "out" / "agent_live.json").read_text())
    assert set(result["summary"]) == {"agent", "best", "best-static", "patience"}
    assert result["seeds"] == [1]
    assert set(result["paired"]) == {"agent - best-static", "agent - patience",
                                     "best - best-static", "best - patience"}


def test_task_blind_agent_trains_and_loads(tmp_path):
    """A policy_kwargs extractor given as a "module:Name" string trains, saves and acts."""
    from lora_gym.policies import SB3Policy

    kwargs = {"net_arch": [8], "features_extractor_class":
              "lora_gym_agents.features:ObservationSubset",
              "features_extractor_kwargs": {"drop": ["log10_train_size", "label_entropy"]}}
    run("train_agent.py", "--env", "LoRATuneReplay-v0", *TINY_KWARGS, "-n", "256", "-f",
        str(tmp_path), "--eval-freq", "0", "--verbose", "0", "-params", "n_steps:32",
        "n_envs:2", "batch_size:32", f"policy_kwargs:{kwargs!r}")
    policy = SB3Policy.load(tmp_path / "ppo" / "LoRATuneReplay-v0_1" / "LoRATuneReplay-v0.zip")
    extractor = policy.model.policy.features_extractor
    assert extractor.features_dim == 14
    obs = np.zeros(16, dtype=np.float32)
    assert 0 <= policy.act(obs) < policy.model.action_space.n


def test_live_oracle_in_hindsight_and_out_of_sample(trained, tmp_path):
    """The oracle from a recorded fixed-action sweep, then played live on another reset seed."""
    store = str(tmp_path / "sweep.sqlite")
    run("-m", "lora_gym", "record", "--config", TINY, "--store", store, "--policy", "grid",
        "--split", "test", "--seeds", "1", "--quiet")
    agent = trained / "ppo" / "LoRATune-v0_1" / "LoRATune-v0.zip"
    out = run("benchmarks/live_oracle.py", "--config", TINY, "--store", store, "--agent",
              str(agent), "--best-static", "2,0.01,none,2", "--score-seeds", "1").stdout
    assert "1 episode(s) with a full live fixed-action sweep (6 actions x up to 3 segments)" in out
    assert "| synth-c | 0 |" in out and "| synth-c | 1 | r" in out
    assert "agent final accuracy / out-of-sample oracle's:" in out
    rerun = run("benchmarks/live_oracle.py", "--config", TINY, "--store", store, "--agent",
                str(agent), "--best-static", "2,0.01,none,2", "--score-seeds", "1").stdout
    assert "'live': 0" in rerun  # the out-of-sample episodes were recorded


def test_corpus_holdout_trains_on_the_other_corpora(tmp_path):
    """Leave-one-corpus-out: every fold and candidate scored against best-static."""
    out = run("benchmarks/corpus_holdout.py", "--config", TINY, "--timesteps", "128",
              "--eval-seeds", "1", "--out", str(tmp_path)).stdout
    rows = json.loads((tmp_path / "holdout.json").read_text())
    assert [(r["held_out"], r["candidate"]) for r in rows] == [
        ("synth-a", "agent"), ("synth-a", "task-blind"),
        ("synth-b", "agent"), ("synth-b", "task-blind")]
    assert all(r["episodes"] == 1 for r in rows)
    assert "| **all folds** | agent |" in out


def test_task_subset_resets_only_to_its_tasks():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gymnasium as gym
    from corpus_holdout import TaskSubset

    env = TaskSubset(gym.make("LoRATuneReplay-v0", config=TINY, miss="raise"), ["synth-b"])
    assert {env.reset(seed=s)[1]["task"] for s in range(6)} == {"synth-b"}
