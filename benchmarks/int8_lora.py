r"""INT8 LoRA increments (``lora_dtype: int8``, seed 003): accuracy change and adapter size vs fp32.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/int8_lora.py [--config default] [--segments 4]

Live MiniLM fine-tunes on train tasks (never test): each (task, rank) trains ``--segments``
segments at lr 3e-3 and, after every segment, the same adapter is evaluated twice, with A and B in
fp32 and with their int8 round trip (per-tensor dynamic scale). Prints the accuracy and loss
differences (int8 − fp32) over all evaluations and the adapter's size: fp32 A and B against int8
A and B plus one fp32 scale per tensor.
"""

from __future__ import annotations

import argparse
import statistics

from lora_gym.core.config import resolve_config
from lora_gym.engine.session import FineTuneSession
from lora_gym.tasks.loading import load_task
from lora_gym.tasks.sets import load_task_set

TASKS = ("tweet-sentiment/n256-s0", "amazon-snippets/n512-s0", "nyt-editorials/n256-s0",
         "health-tweets/k4-n256-s0")


def main(argv: list[str] | None = None) -> None:
    """Run the comparison and print its table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=None, help="env config (default: the embedded one)")
    p.add_argument("--segments", type=int, default=4)
    p.add_argument("--ranks", type=int, nargs="+", default=[4, 16])
    args = p.parse_args(argv)
    config = resolve_config(args.config, lora_dtype="float32")
    session = FineTuneSession(config)
    task_set = load_task_set(config.task_set)
    d_acc, d_loss, sizes = [], [], {}
    for name in TASKS:
        task = load_task(task_set.get(name))
        for rank in args.ranks:
            session.start(task, seed=0)
            for _ in range(args.segments):
                session.train(rank, 3.0e-3, config.steps_per_action)
                session.config = config
                fp32 = session.evaluate()
                session.config = config.replace(lora_dtype="int8")
                int8 = session.evaluate()
                d_acc.append(int8.accuracy - fp32.accuracy)
                d_loss.append(int8.val_loss - fp32.val_loss)
            n = sum(m.lora_A["default"].weight.numel() + m.lora_B["default"].weight.numel()
                    for m in session.adapter.layers.values())
            sizes[rank] = (4 * n, n + 4 * 2 * len(session.adapter.layers))
    print(f"{len(d_acc)} evaluations ({len(TASKS)} train tasks x ranks {args.ranks} x "
          f"{args.segments} segments, lr 3e-3)")
    print("| int8 − fp32 | mean | median | min | max |\n|---|---|---|---|---|")
    for label, xs in (("accuracy", d_acc), ("val loss", d_loss)):
        print(f"| {label} | {statistics.fmean(xs):+.5f} | {statistics.median(xs):+.5f} | "
              f"{min(xs):+.5f} | {max(xs):+.5f} |")
    print("| rank | fp32 A+B bytes | int8 A+B + scales bytes | ratio |\n|---|---|---|---|")
    for rank, (fp32, int8) in sizes.items():
        print(f"| {rank} | {fp32:,} | {int8:,} | {int8 / fp32:.3f} |")


if __name__ == "__main__":
    main()
