"""Speed and accuracy of the INT8 frozen base (``base_dtype: int8``) against fp32, side by side.

In one process, on the same real task, with the same seed (head, adapter, batches), two engine
sessions that differ only in ``base_dtype`` run: the episode's start (tokens from the cache, the
frozen-prefix activations, the untrained evaluation), then ``--env-steps`` env steps (train
``steps_per_action`` steps at rank 8, lr 1e-3, then evaluate), each evaluation also timed alone.
The table gives medians and the int8 / fp32 ratios; accuracy is the validation accuracy after the
last step.

    .venv/bin/python benchmarks/int8_speed.py [--task tweet-sentiment] [--env-steps 3]
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


def run(config: EnvConfig, task, args: argparse.Namespace) -> dict[str, float]:
    """Start an episode and time `args.env_steps` env steps of one session."""
    session = FineTuneSession(config)
    began = time.perf_counter()
    session.start(task, args.seed)
    start = time.perf_counter() - began
    steps, evals = [], []
    for _ in range(args.env_steps):
        began = time.perf_counter()
        segment = session.train(args.rank, args.lr, config.steps_per_action)
        trained = time.perf_counter()
        metrics = session.evaluate(segment.train_loss)
        done = time.perf_counter()
        steps.append(done - began)
        evals.append(done - trained)
    return {"start": start, "step": statistics.median(steps), "eval": statistics.median(evals),
            "accuracy": metrics.accuracy, "val_loss": metrics.val_loss}


def main(argv: list[str] | None = None) -> None:
    """Run fp32 and int8 and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="tweet-sentiment", help="task of the default task set")
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
    results = {}
    for dtype in ("float32", "int8"):
        results[dtype] = run(config.replace(base_dtype=dtype), task, args)
        print(f"{dtype}: {results[dtype]}", flush=True)
    fp32, int8 = results["float32"], results["int8"]
    print("\n| base | episode start s (prefix + untrained eval) | env step s | evaluation s "
          "| val accuracy | val loss |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['start']:.2f} | {r['step']:.2f} | {r['eval']:.2f} | "
              f"{r['accuracy']:.3f} | {r['val_loss']:.3f} |")
    print(f"| int8 / fp32 | {int8['start'] / fp32['start']:.2f}x | "
          f"{int8['step'] / fp32['step']:.2f}x | {int8['eval'] / fp32['eval']:.2f}x | "
          f"{int8['accuracy'] - fp32['accuracy']:+.3f} | "
          f"{int8['val_loss'] - fp32['val_loss']:+.3f} |")


if __name__ == "__main__":
    main()
