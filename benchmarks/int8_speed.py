"""Speed and accuracy of the INT8 frozen base (``base_dtype: int8``) against fp32, side by side.

In one process, on the same real task, with the same seed (head, adapter, batches), two engine
sessions that differ only in ``base_dtype`` start an episode, then run ``--env-steps`` env steps
each, interleaved (alternating which base goes first, so that a busy machine slows both alike):
the frozen-prefix computation of the task (timed; what a reset on a new task costs), a training
segment (``steps_per_action`` steps at rank 8, lr 1e-3; fp32 in both) and an evaluation. The
table gives medians and the int8 / fp32 ratios; accuracy is the validation accuracy after the
last step.

    .venv/bin/python benchmarks/int8_speed.py [--task tweet-sentiment/n2000-s0] [--env-steps 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore", category=FutureWarning)  # transformers/peft deprecations

from lora_gym.core.config import EnvConfig  # noqa: E402
from lora_gym.engine.session import FineTuneSession  # noqa: E402
from lora_gym.tasks.loading import load_task  # noqa: E402
from lora_gym.tasks.sets import load_task_set  # noqa: E402

DTYPES = ("float32", "int8")


def run(config: EnvConfig, task, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Time both bases on the same episode, interleaved (alternating which goes first)."""
    sessions = {dtype: FineTuneSession(config.replace(base_dtype=dtype)) for dtype in DTYPES}
    times: dict[str, dict[str, list[float]]] = {d: {"prefix": [], "train": [], "eval": []}
                                                for d in DTYPES}
    metrics = {}
    for session in sessions.values():  # the first start also fills the token cache
        session.start(task, args.seed)
    for i in range(args.env_steps):
        for dtype in DTYPES if i % 2 == 0 else DTYPES[::-1]:
            session, t = sessions[dtype], times[dtype]
            began = time.perf_counter()
            session._compute_prefix(session.train_split, session.val_split)
            t["prefix"].append(time.perf_counter() - began)
            began = time.perf_counter()
            segment = session.train(args.rank, args.lr, config.steps_per_action)
            t["train"].append(time.perf_counter() - began)
            began = time.perf_counter()
            metrics[dtype] = session.evaluate(segment.train_loss)
            t["eval"].append(time.perf_counter() - began)
    return {d: {**{k: statistics.median(v) for k, v in times[d].items()},
                "accuracy": metrics[d].accuracy, "val_loss": metrics[d].val_loss}
            for d in DTYPES}


def main(argv: list[str] | None = None) -> None:
    """Run fp32 and int8 and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="tweet-sentiment/n2000-s0", help="task of the default set")
    p.add_argument("--env-steps", type=int, default=3, help="timed env steps per base")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--lr", type=float, default=1.0e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    config = EnvConfig()
    task = load_task(load_task_set(config.task_set).get(args.task))
    print(f"task {task.name}: {len(task.val_texts)} val examples; model {config.model}, "
          f"lora_layers {config.lora_layers}; {args.env_steps} env steps of "
          f"{config.steps_per_action} optimizer steps (rank {args.rank}, lr {args.lr})", flush=True)
    results = run(config, task, args)
    fp32, int8 = results["float32"], results["int8"]
    print("\n| base | frozen-prefix computation s | training segment s | evaluation s "
          "| val accuracy | val loss |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['prefix']:.2f} | {r['train']:.2f} | {r['eval']:.2f} | "
              f"{r['accuracy']:.3f} | {r['val_loss']:.3f} |")
    print(f"| int8 / fp32 | {int8['prefix'] / fp32['prefix']:.2f}x | "
          f"{int8['train'] / fp32['train']:.2f}x | {int8['eval'] / fp32['eval']:.2f}x | "
          f"{int8['accuracy'] - fp32['accuracy']:+.3f} | "
          f"{int8['val_loss'] - fp32['val_loss']:+.3f} |")

if __name__ == "__main__":
    main()
