"""Every registered env id trains with train_agent.py and runs through compare, recommend, sim2real.

Training runs as a subprocess (the CLI a user runs); the commands then run in-process on the
trained zip, with tiny budgets on the tiny config (and its shipped table for the replay id).
"""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from lora_gym_agents import train as train_agent

import lora_gym
from lora_gym.cli import compare, recommend, sim2real
from tests.conftest import ROOT, TINY

VARIANTS = ("LoRATunePerLayer-v0", "LoRATuneScope-v0")


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return tmp_path_factory.mktemp("logs")


def train(env_id: str, logs: Path, algo: str = "ppo") -> Path:
    """A tiny training run in a subprocess at default verbosity; returns the final model's zip.

    SB3's stdout logger prints every logged key at this verbosity: per-layer statistics must not
    reach it (they truncate into duplicate keys).
    """
    cmd = [sys.executable, str(ROOT / "train_agent.py"), "--algo", algo, "--env", env_id,
           "--env-kwargs", f"config:'{TINY}'", "-n", "16", "--n-envs", "1", "-f", str(logs),
           "--eval-freq", "8", "--eval-episodes", "1", "-tb", str(logs / "tb"),
           "-params", "n_steps:8", *(["batch_size:8"] if algo == "ppo" else [])]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "layer." not in out.stdout, out.stdout[-2000:]
    if env_id != "LoRATuneReplay-v0":  # the live ids report per-layer statistics
        assert "lora_stats/" in out.stdout and " a_norm " in out.stdout, out.stdout[-2000:]
    run_dir = max((logs / algo).glob(f"{env_id}_*"))
    assert (run_dir / "evaluations.npz").is_file() and list((logs / "tb").glob(f"{env_id}_*"))
    return run_dir / f"{env_id}.zip"


@pytest.fixture(scope="module")
def agents(logs):
    """One tiny PPO agent per env id (A2C too on one variant)."""
    return {env_id: train(env_id, logs) for env_id in lora_gym.ENV_IDS}


@pytest.mark.parametrize("env_id", lora_gym.ENV_IDS)
def test_every_id_has_ppo_and_a2c_hyperparameters(env_id):
    import yaml

    for algo in ("ppo", "a2c"):
        table = yaml.safe_load((ROOT / "envs_configs" / f"{algo}.yml").read_text())
        assert table[env_id]["policy"] == "MlpPolicy", (algo, env_id)


def test_a2c_trains_a_multidiscrete_variant(logs):
    assert train("LoRATuneScope-v0", logs, algo="a2c").is_file()


@pytest.mark.parametrize("env_id", VARIANTS)
def test_dqn_on_multidiscrete_is_a_clear_error(env_id, capsys):
    with pytest.raises(SystemExit, match=r"--algo dqn supports only \['Discrete'\] action spaces; "
                                         rf"{env_id} has MultiDiscrete.*use --algo a2c or ppo"):
        train_agent.main(["--algo", "dqn", "--env", env_id, "--env-kwargs", f"config:'{TINY}'"])


@pytest.mark.parametrize("env_id", lora_gym.ENV_IDS)
def test_compare_runs_baselines_and_the_agent(env_id, agents, tmp_path):
    summary = compare.main(["--env", env_id, "--env-kwargs", f"config:'{TINY}'", "--seeds", "1",
                            "--methods", "default", "schedule", "--agent",
                            f"ppo={agents[env_id]}", "--out", str(tmp_path), "--no-progress"])
    assert set(summary) == {"default", "schedule", "ppo"}
    assert (tmp_path / "results.json").is_file()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(80):
            writer.writerow([f"{'good fine' if i % 2 else 'bad poor'} movie {i}", i % 2])
    return path


@pytest.mark.parametrize("env_id", lora_gym.ENV_IDS)
def test_recommend_runs_the_agent_on_live_ids(env_id, agents, data, tmp_path):
    argv = ["--data", str(data), "--agent", str(agents[env_id]), "--config", TINY,
            "--env-id", env_id, "--out", str(tmp_path)]
    if env_id == "LoRATuneReplay-v0":
        with pytest.raises(ValueError, match="`--env-id` must be a live env"):
            recommend.main(argv)
        return
    assert recommend.main(argv) == 0
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()


@pytest.mark.parametrize("env_id", lora_gym.ENV_IDS)
def test_sim2real_runs_discrete_agents_and_names_the_limit_of_variants(env_id, agents, capsys):
    argv = ["--config", TINY, "--policy", "default", "--agent", str(agents[env_id]),
            "--split", "test", "--seeds", "1"]
    if env_id in VARIANTS:
        with pytest.raises(ValueError, match="only LoRATune-v0 has recorded tables"):
            sim2real.main(argv)
        return
    sim2real.main(argv)
    assert "spearman_returns=" in capsys.readouterr().out
