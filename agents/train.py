r"""``lora-gym train``: train a Stable-Baselines3 agent on LoRATune-v0, as rl-baselines3-zoo does.

    lora-gym train --algo ppo --env LoRATune-v0 -n 2048 -P --env-kwargs config:tiny -f logs
    python train_agent.py ...            # the same trainer, from a checkout

Hyperparameters come from ``-conf`` (default: the shipped ``envs_configs/<algo>.yml``, keyed by
env id) and
``-params k:v`` overrides. Evaluation during training (and so ``best_model.zip``) runs on the
task set's *val* split -- held-out variants of the training corpora -- never on the test split,
which is kept for final reports; ``--eval-env-kwargs task_split:"'train'"`` changes it.
A run writes ``<log folder>/<algo>/<env>_<N>/``:
``<env>.zip`` (final model), ``best_model.zip``, ``evaluations.npz``, ``vecnormalize.pkl``,
``0.monitor.csv``, checkpoints ``rl_model_<steps>_steps.zip`` and ``<env>/{args,config,
env_config}.yml``; TensorBoard logs go to ``-tb``. ``--curriculum envs_configs/curriculum.yml``
switches env settings at given timesteps (seed 000's curriculum; see `lora_gym_agents.curriculum`).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
from pathlib import Path

import yaml
from lora_gym_agents.algos import ALGOS, check_action_space
from lora_gym_agents.curriculum import CurriculumCallback, CurriculumEnv, load_curriculum
from lora_gym_agents.features import resolve_policy_kwargs

import lora_gym  # noqa: F401 - registers the env ids
from lora_gym.core.parsing import StoreDict, int_at_least
from lora_gym.core.paths import configs_dir

SPECIAL_KEYS = ("n_timesteps", "policy", "n_envs", "normalize")
N_ENVS_VAR = "LORA_GYM_N_ENVS"
"""Env processes sharing the machine (`lora_gym.core.config.EnvConfig.torch_threads`)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The rl-zoo flags this script supports."""
    p = argparse.ArgumentParser(prog="lora-gym train", description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--algo", default="ppo", choices=sorted(ALGOS), help="RL algorithm")
    p.add_argument("--env", default="LoRATune-v0", help="environment id")
    p.add_argument("-n", "--n-timesteps", type=int_at_least(1, special=-1), default=-1,
                   help="timesteps (env steps) to train; -1 uses the hyperparameter file's")
    p.add_argument("-conf", "--conf-file", default=None,
                   help="hyperparameter YAML keyed by env id (default envs_configs/<algo>.yml)")
    p.add_argument("-params", "--hyperparams", nargs="+", action=StoreDict, default={},
                   help="overwrite hyperparameters, e.g. n_steps:32 learning_rate:1e-3")
    p.add_argument("--env-kwargs", nargs="+", action=StoreDict, default={},
                   help="env keyword arguments, e.g. config:tiny or "
                        "config:\"'envs_configs/tiny.yaml'\" (Python literals or bare strings)")
    p.add_argument("--eval-env-kwargs", nargs="+", action=StoreDict, default={},
                   help="eval env keyword arguments on top of --env-kwargs "
                        "(default adds task_split:'val': model selection never sees test)")
    p.add_argument("--eval-freq", type=int, default=1024,
                   help="evaluate every n steps (per env); 0 or -1 disables evaluation")
    p.add_argument("--eval-episodes", type=int_at_least(1), default=5,
                   help="episodes per evaluation")
    p.add_argument("--save-freq", type=int, default=-1,
                   help="save a checkpoint every n steps (per env); 0 or -1 disables")
    p.add_argument("-tb", "--tensorboard-log", default="", help="TensorBoard log folder")
    p.add_argument("-f", "--log-folder", default="logs", help="log folder")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="random seed")
    p.add_argument("--n-envs", type=int_at_least(0), default=0,
                   help="parallel envs (0: hyperparameter file)")
    p.add_argument("--vec-env", default="dummy", choices=("dummy", "subproc"), help="VecEnv type")
    p.add_argument("--curriculum", default="",
                   help="curriculum YAML (agents/curriculum.py): env settings by timestep, e.g. "
                        "envs_configs/curriculum.yml")
    p.add_argument("-i", "--trained-agent", default="",
                   help="zip of an agent to continue training (the final model, best_model.zip "
                        "or a checkpoint rl_model_<N>_steps.zip); its step count continues")
    p.add_argument("-P", "--progress", action="store_true", help="show SB3's progress bar")
    p.add_argument("--verbose", type=int, default=1, help="SB3 verbosity")
    return p.parse_args(argv)


def load_hyperparams(args: argparse.Namespace) -> dict:
    """The env's section of the hyperparameter file, with ``-params`` overrides."""
    path = Path(args.conf_file or configs_dir() / f"{args.algo}.yml")
    table = yaml.safe_load(path.read_text())
    if args.env not in table:
        raise SystemExit(f"{path}: no hyperparameters for env {args.env!r}; has {sorted(table)}")
    return {**table[args.env], **args.hyperparams}


def check_algo(args: argparse.Namespace) -> None:
    """Fail early (no heavy work: envs load lazily) if the algorithm cannot act in the env."""
    import gymnasium as gym

    env = gym.make(args.env, **args.env_kwargs)
    try:
        check_action_space(args.algo, args.env, env.action_space)
    except ValueError as err:
        raise SystemExit(f"train_agent.py: {err}") from None
    finally:
        env.close()


def normalization_stats(agent: Path) -> Path:
    """The VecNormalize statistics saved with an agent zip.

    A checkpoint ``rl_model_<N>_steps.zip`` has ``rl_model_vecnormalize_<N>_steps.pkl`` (written
    by the checkpoint callback, so a run killed with SIGKILL resumes with the statistics of the
    same step); a final model or ``best_model.zip`` has the run's ``vecnormalize.pkl``.
    """
    found = re.fullmatch(r"(.*)_(\d+)_steps\.zip", agent.name)
    if found:
        return agent.with_name(f"{found[1]}_vecnormalize_{found[2]}_steps.pkl")
    return agent.parent / "vecnormalize.pkl"


def next_run_dir(log_folder: str, algo: str, env_id: str) -> Path:
    """``<log folder>/<algo>/<env>_<N>`` with N one more than the largest existing."""
    root = Path(log_folder) / algo
    ids = [int(p.name.rsplit("_", 1)[1]) for p in root.glob(f"{env_id}_*")
           if p.name.rsplit("_", 1)[1].isdigit()]
    return root / f"{env_id}_{max(ids, default=0) + 1}"


def make_env(args, env_kwargs: dict, n_envs: int, normalize, seed: int, monitor_dir, training,
             stages=None):
    """A (normalised) VecEnv of the env id; with curriculum `stages`, of `CurriculumEnv`s."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

    vec_cls = SubprocVecEnv if args.vec_env == "subproc" else DummyVecEnv
    env_kwargs = {"render_mode": None, **env_kwargs}  # SB3 would ask for "rgb_array"
    env_id = args.env if stages is None else functools.partial(CurriculumEnv, args.env, stages)
    env = make_vec_env(env_id, n_envs=n_envs, seed=seed, env_kwargs=env_kwargs,
                       monitor_dir=monitor_dir, vec_env_cls=vec_cls,
                       monitor_kwargs={"info_keywords": ("task",)})
    if normalize:
        kwargs = normalize if isinstance(normalize, dict) else {}
        env = VecNormalize(env, training=training, **{"norm_reward": False, **kwargs})
        if not training:
            env.norm_reward = False
    return env


def main(argv: list[str] | None = None) -> Path:
    """Train, evaluate and save; returns the run folder."""
    previous = os.environ.get(N_ENVS_VAR)
    try:
        return _train(parse_args(argv))
    finally:  # in-process callers (demo, improve) get their own share of the cores back
        if previous is None:
            os.environ.pop(N_ENVS_VAR, None)
        else:
            os.environ[N_ENVS_VAR] = previous


def _train(args: argparse.Namespace) -> Path:
    from lora_gym_agents.callbacks import LoRAInfoCallback
    from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
    from stable_baselines3.common.utils import set_random_seed
    from stable_baselines3.common.vec_env import VecNormalize

    check_algo(args)
    set_random_seed(args.seed)
    hyperparams = load_hyperparams(args)
    n_timesteps = args.n_timesteps if args.n_timesteps > 0 else int(hyperparams["n_timesteps"])
    n_envs = args.n_envs or int(hyperparams.get("n_envs", 1))
    normalize = hyperparams.get("normalize", False)
    policy = hyperparams.get("policy", "MlpPolicy")
    algo_kwargs = {k: v for k, v in hyperparams.items() if k not in SPECIAL_KEYS}
    if "policy_kwargs" in algo_kwargs:
        algo_kwargs["policy_kwargs"] = resolve_policy_kwargs(algo_kwargs["policy_kwargs"])
    os.environ[N_ENVS_VAR] = str(n_envs)  # each env process takes its share of the cores

    run_dir = next_run_dir(args.log_folder, args.algo, args.env)
    params_dir = run_dir / args.env
    params_dir.mkdir(parents=True)
    stages = load_curriculum(args.curriculum) if args.curriculum else None
    env = make_env(args, args.env_kwargs, n_envs, normalize, args.seed, str(run_dir), True,
                   stages)
    (params_dir / "args.yml").write_text(yaml.safe_dump(vars(args), sort_keys=True))
    (params_dir / "config.yml").write_text(yaml.safe_dump(hyperparams, sort_keys=True))
    env_config = env.get_attr("config", indices=0)[0]
    (params_dir / "env_config.yml").write_text(yaml.safe_dump(env_config.to_dict()))

    callbacks = [LoRAInfoCallback()]
    if stages is not None:
        (params_dir / "curriculum.yml").write_text(Path(args.curriculum).read_text())
        callbacks.append(CurriculumCallback(stages, verbose=args.verbose))
    if args.save_freq > 0:
        callbacks.append(CheckpointCallback(args.save_freq, str(run_dir), "rl_model",
                                            save_vecnormalize=bool(normalize)))
    if args.eval_freq > 0:
        eval_kwargs = {**args.env_kwargs, "task_split": "val", **args.eval_env_kwargs}
        eval_env = make_env(args, eval_kwargs, 1, normalize, args.seed + 1000, None, False)
        callbacks.append(EvalCallback(eval_env, n_eval_episodes=args.eval_episodes,
                                      eval_freq=args.eval_freq, log_path=str(run_dir),
                                      best_model_save_path=str(run_dir), deterministic=True))

    algo = ALGOS[args.algo]
    tb = args.tensorboard_log or None
    if args.trained_agent:
        stats = normalization_stats(Path(args.trained_agent))
        if normalize and stats.is_file():
            env = VecNormalize.load(str(stats), env.venv)
        model = algo.load(args.trained_agent, env=env, tensorboard_log=tb, device="cpu")
    else:
        model = algo(policy, env, seed=args.seed, tensorboard_log=tb, verbose=args.verbose,
                     device="cpu", **algo_kwargs)
    try:
        model.learn(n_timesteps, callback=callbacks, progress_bar=args.progress,
                    tb_log_name=run_dir.name, reset_num_timesteps=not args.trained_agent)
    finally:  # an interrupted run still saves what it learned
        model.save(run_dir / f"{args.env}.zip")
        if isinstance(env, VecNormalize):
            env.save(str(run_dir / "vecnormalize.pkl"))
        env.close()
    print(f"Saving to {run_dir}")
    return run_dir


if __name__ == "__main__":
    main()
