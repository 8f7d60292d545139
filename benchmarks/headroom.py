r"""How much is there to decide? A wide fixed-action sweep on train and val tasks, and headroom.

    .venv/bin/python benchmarks/headroom.py record --store /work/stores/headroom.sqlite \
        --phases lr-train lr-val            # resumable; one process per core
    .venv/bin/python benchmarks/headroom.py report --store /work/stores/headroom.sqlite \
        [--store OTHER.sqlite ...] --out benchmarks/results/headroom.md

``record`` runs fixed-action and scheduled episodes of the live `LoRATune-v0` (the default
config on the legacy-v1 task set, with a wide grid: ranks 1-64, learning rates 1e-4 to 1e-1, and
the alpha policies or augmentations each phase names) on 2 variants of each train corpus and on
every val task, reset seed 0, and records every step into the store (skipping what is stored).
``report`` reads the stores and prints, per corpus and segment count (1, 2, 4, 8), the best lr
and rank, and two headroom figures on the **val** split at each λ:

(a) per-task oracle static (action, segments) − the global best static (action, segments)
    chosen on the train tasks;
(b) per-task best recorded action sequence (any recorded prefix, changing actions included)
    − the per-task oracle static, and − the global best static.

The return of a prefix of k segments is acc_k − acc_0 − λ·cost_k (what a γ = 1 episode that
stops there earns); a diverged step earns −divergence_penalty and ends the prefix. Nothing here
reads the test split.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lora_gym.core.actions import ActionGrid
from lora_gym.core.config import EnvConfig
from lora_gym.core.cost import rank_factor
from lora_gym.policies import Policy
from lora_gym.replay.recording import episode_seed
from lora_gym.replay.store import Store, config_hash

RANKS = (1, 2, 4, 8, 16, 32, 64)
LRS = (1.0e-4, 3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2, 3.0e-2, 1.0e-1)
TRAIN_TASKS = (
    "tweet-sentiment/n256-s0", "tweet-sentiment/n64-noise30-s0",
    "election-tweets/n512-s0", "election-tweets/n128-noise20-s0",
    "reuters-r8/k5-n256-s0", "reuters-r8/n1000-noise20-s0",
    "20newsgroups/k4-n256-s0", "20newsgroups/k8-n512-noise20-s0",
)
"""Two variants of each train corpus: a clean mid-sized one and a noisy one."""
LAMBDAS = (0.001, 0.003, 0.01)
SEGMENTS = (1, 2, 4, 8)


def sweep_config(**changes) -> EnvConfig:
    """The default config with the sweep's wide grid (one thread: one process per core).

    The sweep ran on the ``legacy-v1`` task set, the default task set when it was recorded
    (2026-12-04; its corpora need ``lora-gym-research-corpora``); its stores keep their keys.
    """
    return EnvConfig(ranks=RANKS, learning_rates=LRS, torch_threads=1, task_set="legacy-v1",
                     **changes)


class SequencePolicy(Policy):
    """Plays a fixed sequence of actions, then repeats its last one."""

    def __init__(self, actions: list[int], name: str) -> None:
        self.actions, self.name, self.t = list(actions), name, 0

    def begin_episode(self, task: str, seed: int | None = None) -> None:
        """Start the sequence over."""
        self.t = 0

    def act(self, obs: np.ndarray) -> int:
        """The sequence's next action."""
        action = self.actions[min(self.t, len(self.actions) - 1)]
        self.t += 1
        return action


@dataclass(frozen=True)
class Phase:
    """Episodes of one config on one split: fixed (rank, lr) pairs and (rank, lr) schedules."""

    split: str
    pairs: tuple[tuple[int, float], ...] = ()
    schedules: tuple[tuple[tuple[int, float, int], ...], ...] = ()
    """Each a sequence of (rank, lr, segments) legs; the last leg fills the episode."""
    config: dict = dataclasses.field(default_factory=dict)
    seed: int = 0
    """The reset seed of every episode (1: a second episode seed, to check the oracle's choice
    on episodes it was not chosen on)."""


def _pairs(ranks, lrs):
    return tuple(itertools.product(ranks, lrs))


SCHEDULES = (
    ((4, 1.0e-2, 1), (4, 3.0e-3, 7)), ((4, 1.0e-2, 2), (4, 3.0e-3, 6)),
    ((4, 3.0e-2, 1), (4, 3.0e-3, 7)), ((4, 3.0e-2, 1), (4, 1.0e-2, 7)),
    ((4, 1.0e-2, 2), (4, 1.0e-3, 6)), ((1, 1.0e-2, 2), (16, 1.0e-2, 6)),
)
"""High lr then lower (the shape a policy could adapt), and grow the rank."""
PHASES: dict[str, Phase] = {
    "lr-train": Phase("train", _pairs((4,), LRS)),
    "lr-val": Phase("val", _pairs((4,), (1.0e-3, 3.0e-3, 1.0e-2, 3.0e-2))),
    "rank-train": Phase("train", _pairs((1, 16, 64), (3.0e-3, 1.0e-2))),
    "rank-val": Phase("val", _pairs((1, 16, 64), (1.0e-2,))),
    "rslora-train": Phase("train", _pairs((1, 16, 64), (1.0e-2,)), config={"alpha_policy":
                                                                           "rslora"}),
    "aug-noise-train": Phase("train", _pairs((4,), (3.0e-3, 1.0e-2)),
                             config={"augmentation": "hidden_noise"}),
    "aug-mixup-train": Phase("train", _pairs((4,), (3.0e-3, 1.0e-2)),
                             config={"augmentation": "mixup"}),
    "aug-noise-val": Phase("val", _pairs((4,), (3.0e-3, 1.0e-2)),
                           config={"augmentation": "hidden_noise"}),
    "aug-mixup-val": Phase("val", _pairs((4,), (3.0e-3, 1.0e-2)),
                           config={"augmentation": "mixup"}),
    "xseed-val": Phase("val", _pairs((4,), (1.0e-3, 3.0e-3, 1.0e-2, 3.0e-2)), seed=1),
    "xseed-noise-val": Phase("val", _pairs((4,), (3.0e-3, 1.0e-2)),
                             config={"augmentation": "hidden_noise"}, seed=1),
    "xseed-rank-val": Phase("val", _pairs((1, 16), (1.0e-2,)), seed=1),
    "sched-train": Phase("train", schedules=SCHEDULES),
    "sched-val": Phase("val", schedules=SCHEDULES),
}


def phase_jobs(phase: Phase, config: EnvConfig) -> list[tuple[Policy, str, int]]:
    """The (policy, task, reset seed) episodes of a phase, task-major (caches stay warm)."""
    from lora_gym.tasks.sets import load_task_set

    grid = ActionGrid.of(config)
    tasks = TRAIN_TASKS if phase.split == "train" else tuple(
        t.name for t in load_task_set(config.task_set).val)
    policies: list[Policy] = []
    for rank, lr in phase.pairs:
        a = grid.encode(rank, lr)
        policies.append(SequencePolicy([a], f"r{rank}-lr{lr:g}"))
    for legs in phase.schedules:
        actions = [grid.encode(r, lr) for r, lr, n in legs for _ in range(n)]
        policies.append(SequencePolicy(actions, "+".join(f"r{r}-lr{lr:g}x{n}" for r, lr, n
                                                          in legs)))
    return [(p, task, phase.seed) for task in tasks for p in policies]


def record_phases(names: list[str], store: str) -> None:
    """Record every phase in `names` into `store` (resumable)."""
    from lora_gym.policies.recording import record

    for name in names:
        phase = PHASES[name]
        config = sweep_config(**phase.config)
        counts = record(config, phase_jobs(phase, config), store)
        print(name, " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)


# ---------------------------------------------------------------------------------- report


@dataclass
class Curve:
    """One recorded episode prefix chain: accuracy and cost after each segment."""

    task: str
    actions: tuple[tuple[int, float, str], ...]
    acc: list[float]
    cost: list[float]
    diverged: list[bool]
    seed: int = 0
    """The episode seed (`lora_gym.replay.recording.episode_seed` of the phase's reset seed)."""

    def ret(self, k: int, lam: float, penalty: float = 1.0) -> float:
        """Return of stopping after k segments (a divergence ends the prefix)."""
        for j in range(1, k + 1):
            if self.diverged[j]:
                return self.acc[j - 1] - self.acc[0] - lam * self.cost[j] - penalty
        return self.acc[k] - self.acc[0] - lam * self.cost[k]


def cost_scale(rank: int, recorded_ranks: tuple[int, ...]) -> float:
    """Factor that turns a segment's recorded cost into the default config's cost units.

    A segment's cost is tokens × (1 + rank / median rank of the grid) / 2: the sweep's wide grid
    (median 8) prices a rank lower than the default grid (median 4) does, so the report
    re-prices every segment as the default config would (same tokens, same rank).
    """
    return rank_factor(rank, EnvConfig()) / rank_factor(rank, EnvConfig(ranks=recorded_ranks))


def load_curves(stores: list[str]) -> list[Curve]:
    """Every recorded prefix of the sweep's configs, as (task, decoded actions) -> curve.

    Costs are in the default config's units (`cost_scale`).
    """
    out: list[Curve] = []
    for path in stores:
        with Store(path, readonly=True) as st:
            for info in st.configs():
                cfg = info["config"]
                alpha = cfg.get("alpha_policy", "fixed")
                aug = cfg.get("augmentation", "none")
                grid = ActionGrid(tuple(cfg["ranks"]), tuple(cfg["learning_rates"]), True)
                rows = defaultdict(dict)
                for r in st.rows(info["model"], info["config_hash"]):
                    rows[(r[0], r[3])][r[4]] = r
                for (task, seed), by_prefix in rows.items():
                    out.extend(_chains(task, by_prefix, grid, f"{alpha}/{aug}",
                                       tuple(cfg["ranks"]), seed))
    return out


def _chains(task, by_prefix, grid, tag, recorded_ranks, seed) -> list[Curve]:
    """A curve for every recorded prefix whose every ancestor is recorded."""
    if "" not in by_prefix:
        return []
    root = by_prefix[""]
    curves = []
    for text in by_prefix:
        if not text:
            continue
        acts = [int(a) for a in text.split(",")]
        chain = [by_prefix.get(",".join(map(str, acts[:i]))) for i in range(1, len(acts) + 1)]
        if any(c is None for c in chain):
            continue
        nodes = [root, *chain]
        acc = [math.nan if n[7] is None else n[7] for n in nodes]
        costs = np.cumsum([0.0] + [n[13] * cost_scale(n[11], recorded_ranks) for n in chain])
        curves.append(Curve(task, tuple((*grid.decode(a), tag) for a in acts), acc,
                            costs.tolist(), [bool(n[15]) for n in nodes], int(seed)))
    return curves


def corpus(task: str) -> str:
    """The corpus of a variant name."""
    return task.split("/")[0]


def static_table(curves: list[Curve], reset_seed: int = 0) -> dict[tuple[str, tuple], Curve]:
    """(task, fixed action) -> its full-length fixed-action curve on one reset seed's episode."""
    out = {}
    seed = episode_seed(reset_seed)
    for c in curves:
        if c.seed != seed:
            continue
        if len(set(c.actions)) == 1 and (c.task, c.actions[0]) not in out or (
                len(set(c.actions)) == 1 and len(c.acc) > len(out[(c.task, c.actions[0])].acc)):
            out[(c.task, c.actions[0])] = c
    return out


def report(stores: list[str], val_tasks: set[str]) -> str:
    """The sweep's tables and headroom figures, as markdown."""
    curves = load_curves(stores)
    second = static_table(curves, reset_seed=1)
    curves = [c for c in curves if c.seed == episode_seed(0)]
    static = static_table(curves)
    tasks = sorted({t for t, _ in static})
    train = [t for t in tasks if t not in val_tasks]
    val = [t for t in tasks if t in val_tasks]
    lines = [f"{len(curves)} recorded prefixes, {len(static)} fixed-action episodes; "
             f"{len(train)} train tasks, {len(val)} val tasks. Costs in the default config's "
             "units (its grid's median rank prices the rank factor).", ""]
    lines += _best_table(static, train, "train")
    lines += _lr_table(static, train, "train")
    lines += _best_table(static, val, "val")
    lines += _lr_table(static, val, "val")
    for lam in LAMBDAS:
        lines += _headroom(curves, static, train, val, lam)
    for lam in LAMBDAS:
        lines += _headroom(curves, static, train, val, lam, in_default_space,
                           "the default action space")
    lines += _augmentation_table(static, second, tasks)
    if second:
        lines += _cross_seed(static, second, train, val)
    return "\n".join(lines)


def _augmentation_table(static, second, tasks, lam: float = 0.01) -> list[str]:
    """Per task: the best return with each augmentation minus the best without (seed 0 and 1).

    Best over r4 at lr 3e-3 and 1e-2 and 1-8 segments; "–" where not recorded on every one.
    """
    def best(table, task, aug):
        curves = [table.get((task, (4, lr, f"fixed/{aug}"))) for lr in (3.0e-3, 1.0e-2)]
        if any(c is None or len(c.acc) < 9 for c in curves):
            return math.nan
        return max(c.ret(k, lam) for c in curves for k in range(1, 9))

    lines = [f"### Augmentation against none per task (best return at λ = {lam} over r4, lr "
             "3e-3/1e-2, 1-8 segments; reset seed 0, and seed 1 where recorded)", "",
             "| task | hidden_noise − none (seed 0) | (seed 1) | mixup − none (seed 0) |",
             "|---|---|---|---|"]
    def cell(x: float) -> str:
        return "–" if math.isnan(x) else f"{x:+.3f}"

    for task in tasks:
        none0 = best(static, task, "none")
        row = [best(static, task, "hidden_noise") - none0,
               best(second, task, "hidden_noise") - best(second, task, "none"),
               best(static, task, "mixup") - none0]
        if not all(math.isnan(x) for x in row):
            lines.append(f"| {task} | " + " | ".join(map(cell, row)) + " |")
    return [*lines, ""]


CROSS_SEED_SETS: dict[str, Callable[[tuple], bool]] = {
    "r4, lr 1e-3..3e-2": lambda a: a[0] == 4 and a[2] == "fixed/none",
    "the same + hidden_noise": lambda a: a[0] == 4 and a[2] in ("fixed/none",
                                                                "fixed/hidden_noise"),
    "r4 + r1/r16 at lr 1e-2 (no augmentation)": lambda a: a[2] == "fixed/none",
    "every action recorded on both seeds": lambda a: True,
}
"""Action sets of the out-of-sample check (each restricted to what both seeds recorded)."""


def _cross_seed(static, second, train, val) -> list[str]:
    """Headroom (a) out of sample: choices made on seed-0 episodes, scored on seed-1 episodes.

    For each action set of `CROSS_SEED_SETS` (over the actions whose seed-1 episodes are whole
    on every val task): the global best static (chosen on the train tasks) and each val task's
    oracle static (chosen on its seed-0 episode) are both scored on the task's seed-1 episode;
    the in-sample (seed-0) figure over the same actions is beside it.
    """
    second = {key: c for key, c in second.items() if len(c.acc) == 9}  # whole episodes only
    recorded = {a for (t, a) in second if all((v, a) in second and (v, a) in static
                                              for v in val)}
    if not recorded:
        return []
    lines = ["### Headroom (a) out of sample (val; choices on reset seed 0, scored on reset "
             "seed 1)", "",
             "| actions | λ | global static (train choice) | in-sample (a) | out-of-sample (a) "
             "| val tasks where the oracle's choice beats the global one on seed 1 |",
             "|---|---|---|---|---|---|"]
    for name, member in CROSS_SEED_SETS.items():
        actions = sorted(a for a in recorded if member(a))
        if not actions:
            continue
        for lam in LAMBDAS:
            keys = [(a, k) for a in actions for k in range(1, 9)]
            best = max(keys, key=lambda key: np.mean([static[t, key[0]].ret(key[1], lam)
                                                      for t in train if (t, key[0]) in static]))
            ins, outs = [], []
            for t in val:
                oracle = max(keys, key=lambda key: static[t, key[0]].ret(key[1], lam))
                ins.append(static[t, oracle[0]].ret(oracle[1], lam)
                           - static[t, best[0]].ret(best[1], lam))
                outs.append(second[t, oracle[0]].ret(oracle[1], lam)
                            - second[t, best[0]].ret(best[1], lam))
            wins = sum(d > 0 for d in outs)
            lines.append(f"| {name} ({len(actions)}) | {lam} | {_fmt(best[0])} x{best[1]} | "
                         f"{np.mean(ins):+.3f} | {np.mean(outs):+.3f} | {wins} of {len(val)} |")
    return [*lines, ""]


def _fmt(action) -> str:
    rank, lr, tag = action
    return f"r{rank} lr{lr:g}" + ("" if tag == "fixed/none" else f" {tag}")


def _best_table(static, tasks, split) -> list[str]:
    """Per corpus and segment count: the best fixed (rank, lr) by mean accuracy, and its lr."""
    if not tasks:
        return []
    lines = [f"### Best fixed action by corpus ({split}; mean validation accuracy after k "
             "segments over the corpus's swept variants)", "",
             "| corpus | " + " | ".join(f"k={k}" for k in SEGMENTS) + " |",
             "|---|" + "---|" * len(SEGMENTS)]
    for name in sorted({corpus(t) for t in tasks}):
        mine = [t for t in tasks if corpus(t) == name]
        cells = []
        for k in SEGMENTS:
            scores = defaultdict(list)
            for (task, action), c in static.items():
                if task in mine and len(c.acc) > k:
                    scores[action].append(c.ret(k, 0.0) + c.acc[0])
            full = {a: np.mean(v) for a, v in scores.items() if len(v) == len(mine)}
            if not full:
                cells.append("–")
                continue
            best = max(full, key=full.get)
            cells.append(f"{_fmt(best)}: {full[best]:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _lr_table(static, tasks, split, rank: int = 4) -> list[str]:
    """Mean accuracy after k segments per corpus and lr at one rank (fixed alpha, no aug)."""
    lrs = sorted({a[1] for (t, a) in static if t in tasks and a[0] == rank and a[2] ==
                  "fixed/none"})
    if not lrs:
        return []
    lines = [f"### Accuracy by learning rate at rank {rank} ({split}; mean over the corpus's "
             "swept variants; best in bold)", "",
             "| corpus | k | " + " | ".join(f"{lr:g}" for lr in lrs) + " |",
             "|---|---|" + "---|" * len(lrs)]
    for name in sorted({corpus(t) for t in tasks}):
        mine = [t for t in tasks if corpus(t) == name]
        for k in SEGMENTS:
            means = []
            for lr in lrs:
                curves = [static.get((t, (rank, lr, "fixed/none"))) for t in mine]
                ok = [c for c in curves if c is not None and len(c.acc) > k]
                means.append(np.mean([c.ret(k, 0.0) + c.acc[0] for c in ok])
                             if len(ok) == len(mine) else math.nan)
            best = np.nanmax(means) if not all(map(math.isnan, means)) else math.nan
            cells = ["–" if math.isnan(m) else (f"**{m:.3f}**" if m == best else f"{m:.3f}")
                     for m in means]
            lines.append(f"| {name} | {k} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def in_default_space(action) -> bool:
    """Whether a swept (rank, lr, alpha/augmentation) is an action of the default config."""
    rank, lr, tag = action
    alpha, aug = tag.split("/")
    config = EnvConfig()
    return (rank in config.ranks and lr in config.learning_rates and alpha == config.alpha_policy
            and aug in (config.augmentation_choices or (config.augmentation,)))


def _headroom(curves, static, train, val, lam, allowed=None, scope="the sweep") -> list[str]:
    """Headroom figures (a) and (b) on the val tasks at one λ (actions filtered by `allowed`)."""
    if allowed is not None:
        curves = [c for c in curves if all(map(allowed, c.actions))]
        static = {key: c for key, c in static.items() if allowed(key[1])}
    candidates = defaultdict(dict)  # (action, k) -> task -> return
    for (task, action), c in static.items():
        for k in range(1, len(c.acc)):
            candidates[(action, k)][task] = c.ret(k, lam)
    common = {key: v for key, v in candidates.items() if set(train) <= set(v)
              and set(val) <= set(v)}
    if not common or not val:
        return [f"λ={lam}: not enough recorded to compare (no action swept on every task)", ""]
    best_key = max(common, key=lambda key: np.mean([common[key][t] for t in train]))
    rows = [f"### Headroom on val at λ = {lam}, actions of {scope} (global best static chosen "
            f"on train: {_fmt(best_key[0])} x{best_key[1]} segments)", "",
            "| val task | global static | oracle static | best sequence | (a) oracle − global "
            "| (b) sequence − oracle | sequence − global |", "|---|---|---|---|---|---|---|"]
    a_all, b_all, bg_all = [], [], []
    for task in val:
        glob = common[best_key][task]
        oracle = max(v[task] for v in candidates.values() if task in v)
        seq = max(c.ret(k, lam) for c in curves if c.task == task for k in range(1, len(c.acc)))
        a_all.append(oracle - glob)
        b_all.append(seq - oracle)
        bg_all.append(seq - glob)
        rows.append(f"| {task} | {glob:.3f} | {oracle:.3f} | {seq:.3f} | {oracle - glob:+.3f} "
                    f"| {seq - oracle:+.3f} | {seq - glob:+.3f} |")
    rows.append(f"| **mean** | | | | **{np.mean(a_all):+.3f}** | **{np.mean(b_all):+.3f}** | "
                f"**{np.mean(bg_all):+.3f}** |")
    return [*rows, ""]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("record", "report"))
    p.add_argument("--store", action="append", required=True,
                   help="store to record into (record) or read (report; repeatable)")
    p.add_argument("--phases", nargs="+", default=list(PHASES), choices=list(PHASES))
    p.add_argument("--out", default=None, help="report: also write the markdown here")
    args = p.parse_args(argv)
    if args.command == "record":
        record_phases(args.phases, args.store[0])
        return
    from lora_gym.tasks.sets import load_task_set

    val = {t.name for t in load_task_set("default").val}
    text = report(args.store, val)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    print("config hash of the sweep:", config_hash(sweep_config()))
    main()
