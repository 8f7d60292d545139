"""The wheel works on its own: built, installed into a fresh venv, run from an empty folder.

The fresh venv gets the wheel (``pip install --no-deps``) and reuses the already installed
dependencies of the test's interpreter through a ``.pth`` line (installing torch and the rest
again would take minutes and the registry); that line adds the dependencies' folder without
running its ``.pth`` files, so the checkout's editable install is not visible: ``lora_gym`` is
the wheel's copy, which the test checks. Nothing of the checkout is on the path or in the
working directory.
"""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import ROOT, build_wheel


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """(venv bin folder, empty working folder, environment) with only the wheel installed."""
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(tmp)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    bin_dir = venv / "bin"
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True)
    site = Path(subprocess.run([str(bin_dir / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "_lora_gym_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp / "empty"
    work.mkdir()
    env = {"HF_HUB_OFFLINE": "1", "PATH": f"{bin_dir}:/usr/bin:/bin",
           "HOME": os.environ.get("HOME", str(tmp)), "LORA_GYM_CACHE": str(tmp / "cache")}
    return bin_dir, work, env


def run(fresh, *argv: str) -> subprocess.CompletedProcess:
    bin_dir, work, env = fresh
    out = subprocess.run([str(bin_dir / argv[0]), *argv[1:]], cwd=work, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, f"{argv}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


def test_the_wheel_is_what_runs(fresh):
    out = run(fresh, "python", "-c", "import lora_gym, lora_gym_agents; "
              "print(lora_gym.__file__); print(lora_gym_agents.__file__)")
    for path in out.stdout.split():
        assert str(fresh[0].parent) in path and str(ROOT) not in path, path


def test_lora_gym_train_from_an_empty_folder(fresh):
    run(fresh, "lora-gym", "train", "--env", "LoRATune-v0", "--env-kwargs", "config:tiny",
        "-n", "16", "--eval-freq", "8", "--eval-episodes", "1", "-params", "n_steps:8",
        "batch_size:8")
    run_dir = fresh[1] / "logs" / "ppo" / "LoRATune-v0_1"
    assert (run_dir / "LoRATune-v0.zip").is_file() and (run_dir / "best_model.zip").is_file()


def test_lora_gym_demo_from_an_empty_folder(fresh):
    out = run(fresh, "lora-gym", "demo", "--timesteps", "500", "--seeds", "1",
              "--live-episodes", "0")
    assert "best-static" in out.stdout and "ppo" in out.stdout
    assert (fresh[1] / "runs" / "demo" / "compare" / "results.json").is_file()
