"""Every command in README.md's code blocks runs as written, in order, from a checkout.

The commands run at their default verbosity in a scratch folder that looks like a checkout
(``.venv``, ``train_agent.py``, ``envs_configs`` and ``benchmarks`` linked from the repository),
so the files they write stay out of the repository. Where a command as written would take
minutes, `SUBSTITUTIONS` shrinks a budget; where it cannot run here, `SKIPPED` says why. Both
tables are checked against README: an entry that no longer matches a command fails the test, so
the tables cannot drift away from what README says.
"""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SUBSTITUTIONS: tuple[tuple[str, str, str], ...] = (
    ("-n 2048", "-n 32 --eval-freq 16 --eval-episodes 1 -params n_steps:16 batch_size:16",
     "live PPO budget (evaluation every 16 steps, so best_model.zip exists)"),
    ("--seeds 5", "--seeds 1", "evaluation seeds of compare"),
    ("config:legacy-v1 pessimism:1.0", "config:legacy-v1 pessimism:1.0 -n 256 -params n_steps:32",
     "50k replay timesteps on the default table"),
    ("store:runs/mine.sqlite", "store:runs/mine.sqlite -n 256 -params n_steps:32",
     "50k replay timesteps"),
    ("--rounds 3 --timesteps 20000", "--rounds 1 --timesteps 256 --config tiny",
     "improve rounds: live MiniLM episodes on 8 train tasks"),
    ("--seeds 3 \\\n    --agent runs/demo", "--seeds 1 --config tiny --optuna-trials 0 --tasks "
     "synth-c \\\n    --agent runs/demo", "live benchmark: live MiniLM episodes on the test tasks"),
    ("runs/demo/logs/ppo/LoRATuneReplay-v0_1/LoRATuneReplay-v0.zip",
     "logs/ppo/LoRATune-v0_1/LoRATune-v0.zip", "the agent `make demo` trains (on MiniLM)"),
    ("steps_per_action:4", "steps_per_action:2 episode_length:2 batch_size:4 max_length:48 "
     "ranks:[1,4] learning_rates:[0.01]", "live LM steps of 6 x 5.8 s: a smaller LM setting"),
    ("LoRATuneLMReplay-v0 -n 64", "LoRATuneLMReplay-v0 -n 8 -params n_steps:4 batch_size:4",
     "live LM steps for the replay's misses"),
    ("--agent logs/ppo/LoRATune-v0_1/best_model.zip", "--config tiny "
     "--agent logs/ppo/LoRATune-v0_1/best_model.zip", "the agent above was trained on tiny"),
    ("--candidates agent task-blind --ppo-seeds 2", "--candidates agent task-blind --config tiny "
     "--timesteps 128 --eval-seeds 1", "8 PPO runs of 200k replay steps on the default table"),
)
"""(README text, what runs instead, why): budgets that would take minutes, shrunk."""
SKIPPED: dict[str, str] = {
    "make demo": "the main job itself (CI's clean clone runs make test); the wheel test of "
                 "tests/test_wheel.py runs `lora-gym demo` with a small budget",
    "make test": "this very test suite",
    "pip install 'lora-gym[ray]'": "installs packages; `make` installs Ray",
    "ray start": "starts a Ray cluster node (tests/test_distributed.py runs a local Ray)",
    "--backend ray --address auto": "needs the Ray cluster of `ray start`",
}
"""A README command that starts with or contains the key is not run, for the reason given."""
PYTHON_SUBSTITUTIONS: tuple[tuple[str, str, str], ...] = (
    ('gym.make("LoRATuneMultiTask-v0", shared_adapter=True', 'gym.make("LoRATuneMultiTask-v0", '
     'config="tiny", task_split="all", shared_adapter=True', "three MiniLM tasks at reset"),
    ('gym.make("LoRATune-v0", episode_length=4', 'gym.make("LoRATune-v0", config="tiny", '
     'episode_length=4', "the MiniLM reset of that line loads a real corpus (tested in "
                         "tests/test_live_default.py)"),
)


def readme_blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def apply(text: str, substitutions) -> str:
    for old, new, _ in substitutions:
        text = text.replace(old, new)
    return text


def commands() -> list[str]:
    """README's shell commands with substitutions applied, continuations joined, no comments."""
    out = []
    for block in readme_blocks("bash"):
        block = apply(block, SUBSTITUTIONS)
        for command in re.sub(r"\\\n\s*", " ", block).splitlines():
            command = re.sub(r"\s+#.*$", "", command).strip()
            if command and not command.startswith("#"):
                out.append(command)
    return out


def test_every_substitution_and_skip_matches_readme():
    raw = "\n".join(readme_blocks("bash"))
    for old, _, why in SUBSTITUTIONS:
        assert old in raw, f"substitution for {why!r} matches no README command: {old!r}"
    joined = commands()
    for key in SKIPPED:
        assert any(key in c for c in joined), f"skip {key!r} matches no README command"
    python = "\n".join(readme_blocks("python"))
    for old, _, why in PYTHON_SUBSTITUTIONS:
        assert old in python, why


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A scratch folder laid out like a checkout, with a user's reward module and data file."""
    work = tmp_path_factory.mktemp("readme")
    for name in (".venv", "train_agent.py", "envs_configs", "benchmarks"):
        (work / name).symlink_to(ROOT / name)
    (work / "my_pkg").mkdir()
    (work / "my_pkg" / "__init__.py").write_text("")
    (work / "my_pkg" / "rewards.py").write_text(
        "def fn(prev, cur, cost, config):\n"
        "    return (cur.accuracy or 0.0) - (prev.accuracy or 0.0) - 0.02 * cost\n")
    rows = ["text,label"] + [f"{'good fine' if i % 2 else 'bad poor'} movie {i},"
                             f"{'pos' if i % 2 else 'neg'}" for i in range(80)]
    (work / "my.csv").write_text("\n".join(rows) + "\n")
    return work


def run(command: str, cwd) -> subprocess.CompletedProcess:
    env = {"HF_HUB_OFFLINE": "1", "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin",
           "PYTHONPATH": str(cwd), "HOME": os.environ.get("HOME", str(cwd)),
           "LORA_GYM_CACHE": os.environ.get("LORA_GYM_CACHE", "")}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def test_readme_commands_run_as_written(checkout):
    """One test, in README's order: later commands use what earlier ones wrote."""
    ran = []
    for command in commands():
        if any(command.startswith(k) or k in command for k in SKIPPED):
            continue
        out = run(command, checkout)
        assert out.returncode == 0, f"README command failed: {command}\n{out.stderr[-3000:]}"
        ran.append(command)
    assert len(ran) >= 10, ran  # the train, compare, record, replay, improve, ... commands
    assert (checkout / "logs" / "ppo" / "LoRATune-v0_1" / "best_model.zip").is_file()
    assert (checkout / "tuned" / "adapter" / "adapter_config.json").is_file()


@pytest.mark.parametrize(("env_id", "expected"), [("LoRATune-v0", "val_accuracy"),
                                                   ("LoRATuneMultiTask-v0", "synth-"),
                                                   ("LoRATuneLM-v0", "perplexity")])
def test_readme_python_example_runs(checkout, env_id, expected):
    (code,) = [b for b in readme_blocks("python") if f'gym.make("{env_id}"' in b]
    script = checkout / f"readme_example_{env_id}.py"
    script.write_text(apply(code, PYTHON_SUBSTITUTIONS))
    out = run(f"{sys.executable} {script}", checkout)
    assert out.returncode == 0, out.stderr[-3000:]
    assert expected in out.stdout
