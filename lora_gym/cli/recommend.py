"""Recommend a LoRA fine-tune for your own data: run a tuning policy on it, keep the adapter.

``lora-gym recommend --data my.csv --agent runs/ppo/best_model.zip --out tuned/`` reads
the labelled file as a ``source: file`` task (csv, tsv, json, jsonl or parquet; its validation
subset is split off the rows), runs one episode of the live env on it with the policy choosing
every (rank, lr) step, and writes to ``--out``:

* ``adapter/``: the tuned adapter and head as a standard PEFT adapter folder
  (`lora_gym.engine.export`);
* ``summary.json``: the task, the policy, the config, and per step the chosen rank(s), lr (and
  scope), validation accuracy, macro-F1 and cost; final accuracy and total cost;
* ``task_set.yaml``: the one-task task set the env ran on.

A table of the steps is printed. ``--agent`` is a Stable-Baselines3 zip (``--algo`` names its
algorithm; a ``vecnormalize.pkl`` beside it is applied to observations) or a built-in policy:
``default`` (PEFT's common r=8, lr=1e-3, or the nearest grid pair, on every module).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lora_gym.core.parsing import int_at_least, positive_float
from lora_gym.core.preferences import default_cost_weight
from lora_gym.policies import FixedPolicy, Policy, SB3Policy, nearest_pair
from lora_gym.tasks.loading import MIN_VAL_ROWS

BUILTIN_POLICIES: tuple[str, ...] = ("default",)
LIVE_ENV_IDS: tuple[str, ...] = ("LoRATune-v0", "LoRATunePerLayer-v0", "LoRATuneScope-v0")
"""The env ids that fine-tune live (every registered id but the replay)."""
TASK_NAME = "my-data"


@dataclass(frozen=True)
class Args:
    """Command-line arguments of `lora_gym.cli.recommend`."""

    data: str
    """Labelled data file (csv, tsv, json, jsonl or parquet)."""
    agent: str
    """An SB3 model zip, or a built-in policy name (``default``)."""
    out: str
    """Output folder (adapter/, summary.json, task_set.yaml)."""
    text_column: str = "text"
    """Column holding the text."""
    label_column: str = "label"
    """Column holding the label."""
    config: str | None = None
    """Env config YAML (default: the embedded default); must match the agent's training config."""
    env_id: str = "LoRATune-v0"
    """Registered env id the agent acts in (e.g. ``LoRATunePerLayer-v0``)."""
    algo: str = "ppo"
    """SB3 algorithm of the zip: ppo, a2c or dqn."""
    seed: int = 0
    """Reset seed of the episode (head init, adapter init, batch order)."""
    max_train: int = 2000
    """Cap on training rows (a seeded random subset)."""
    max_val: int = 256
    """Size of the validation subset split off the rows (at least 16: `MIN_VAL_ROWS`)."""
    cost_weight: float | None = None
    """λ, the accuracy-cost trade-off you want (> 0): an agent trained with a ``cost_weight``
    range acts for this λ (default: the config's λ, or its range's geometric mean)."""


MINIMA: dict[str, int] = {"seed": 0, "max_train": 1, "max_val": MIN_VAL_ROWS}
"""Smallest accepted value of each integer argument (smaller ones are usage errors)."""


def parse_args(argv: list[str] | None = None) -> Args:
    """Parse the command line into `Args` (help texts are the fields' docstrings)."""
    parser = argparse.ArgumentParser(prog="lora-gym recommend",
                                     description=__doc__.splitlines()[0])
    helps = _field_docs()
    for name, field in Args.__dataclass_fields__.items():
        flag = "--" + name.replace("_", "-")
        required = field.default is field.default_factory  # no default: MISSING on both
        kwargs: dict[str, Any] = {"help": helps.get(name, ""), "dest": name}
        if required:
            parser.add_argument(flag, required=True, **kwargs)
        else:
            kind = (int_at_least(MINIMA[name]) if isinstance(field.default, int)
                    else positive_float if name == "cost_weight" else str)
            parser.add_argument(flag, type=kind, default=field.default, **kwargs)
    return Args(**vars(parser.parse_args(argv)))


def _field_docs() -> dict[str, str]:
    """Field docstrings of `Args` (the string literal after each field)."""
    import ast
    import inspect

    body = ast.parse(inspect.getsource(Args)).body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr):
            docs[node.target.id] = str(nxt.value.value)
    return docs


def make_env(args: Args, out: Path):
    """The live env on the user's file (its one-task task set is written to `out`)."""
    import gymnasium as gym

    import lora_gym  # noqa: F401 - registers the env ids
    from lora_gym.core.config import resolve_config

    spec = {"name": TASK_NAME, "source": "file", "path": str(Path(args.data).resolve()),
            "text_column": args.text_column, "label_column": args.label_column,
            "max_train": args.max_train, "max_val": args.max_val}
    if args.env_id not in LIVE_ENV_IDS:
        raise ValueError(f"`--env-id` must be a live env, one of {list(LIVE_ENV_IDS)}, got "
                         f"{args.env_id!r}: a replay env serves recorded tasks, not your data")
    task_set = out / "task_set.yaml"
    task_set.write_text(yaml.safe_dump({"name": "recommend", "train": [spec]}, sort_keys=False))
    config = resolve_config(args.config, task_set=str(task_set), task_split="all")
    return gym.make(args.env_id, config=config).unwrapped


def load_policy(args: Args, env) -> Policy:
    """The built-in ``default`` (on every module) or an SB3 zip (with its observation stats)."""
    if args.agent == "default":
        return FixedPolicy(env.uniform_action(*nearest_pair(env.grid)), name="default")
    if not Path(args.agent).is_file():
        raise FileNotFoundError(f"`--agent` {args.agent!r} is neither a built-in policy "
                                f"{list(BUILTIN_POLICIES)} nor an SB3 model zip")
    return SB3Policy.load(args.agent, args.algo)


def run(args: Args) -> dict[str, Any]:
    """Run the policy for one episode on the user's data; write the adapter and summary."""
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = make_env(args, out)
    policy = load_policy(args, env)
    lam = default_cost_weight(env.config) if args.cost_weight is None else args.cost_weight
    options = {"task": TASK_NAME, "cost_weight": lam}
    obs, info = env.reset(seed=args.seed, options=options)
    rows = [_row(info, reward=None)]
    terminated = truncated = False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(policy.act(obs))
        rows.append(_row(info, reward))
    summary = {
        "data": str(Path(args.data).resolve()), "agent": args.agent, "env_id": args.env_id,
        "num_classes": env.task.num_classes, "label_names": list(env.task.label_names),
        "train_rows": len(env.task.train_texts), "val_rows": len(env.task.val_texts),
        "initial_accuracy": rows[0]["accuracy"], "final_accuracy": rows[-1]["accuracy"],
        "total_cost": info["cost_so_far"],
        "cost_weight": env.cost_weight, "diverged": bool(info.get("diverged")),
        "stopped": bool(info.get("stopped")), "segments": sum(not r["stopped"] for r in rows[1:]),
        "steps": rows, "adapter": None, "config": env.config.to_dict(),
    }
    if not summary["diverged"]:  # a diverged adapter holds non-finite weights: never exported
        summary["adapter"] = str(env.save_adapter(out / "adapter"))
    summary["seconds"] = time.perf_counter() - started
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=_plain))
    return summary


def _row(info: dict[str, Any], reward: float | None) -> dict[str, Any]:
    metrics = info["metrics"]
    row = {"step": info["step"], "rank": info["rank"], "lr": info["lr"],
           "accuracy": metrics["accuracy"], "f1": metrics["f1"],
           "cost": info.get("cost", 0.0), "reward": reward,
           "stopped": bool(info.get("stopped", False))}
    if "scope" in info:
        row["scope"] = info["scope"]
    return row


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and tuples inside the summary."""
    return value.item() if isinstance(value, np.generic) else str(value)


def format_table(summary: dict[str, Any]) -> str:
    """The steps of a summary as a fixed-width text table."""
    lines = [f"{'step':>4}  {'rank':<16} {'lr':>8}  {'accuracy':>8}  {'f1':>6}  {'cost':>6}"]
    for row in summary["steps"]:
        rank = row["rank"]
        rank = "x".join(map(str, rank)) if isinstance(rank, tuple | list) else str(rank)
        if "scope" in row:
            rank = f"{rank} @{row['scope']}"
        lr = "-" if row["lr"] is None else f"{row['lr']:.0e}"
        acc = "nan" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
        f1 = "nan" if row["f1"] is None else f"{row['f1']:.3f}"
        if row.get("stopped"):
            rank, lr = "stop", "-"
        lines.append(f"{row['step']:>4}  {rank!s:<16} {lr:>8}  {acc:>8}  {f1:>6}  "
                     f"{row['cost']:>6.2f}")
    lines.append(f"final accuracy {summary['final_accuracy']}, total cost "
                 f"{summary['total_cost']:.2f} over {summary['segments']} segment(s), "
                 f"adapter {summary['adapter']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run, print the table, return 1 if the fine-tune diverged."""
    summary = run(parse_args(argv))
    print(format_table(summary))
    return 1 if summary["diverged"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
