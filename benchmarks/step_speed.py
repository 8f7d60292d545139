"""Side-by-side speed of one env step: naive PEFT + Hugging Face Trainer vs the env's engine.

One env step = ``--steps`` optimizer steps (batch ``batch_size``) + evaluation on the task's fixed
validation subset. In one process, on the same real task, from the same initial weights and with
the same batches in the same order, this script times ``--env-steps`` env steps of

(a) the way a user writes it first: every env step loads the model (``from_pretrained``), wraps
    it with PEFT ``get_peft_model``, loads the adapter, head and AdamW state of the previous step,
    trains with a ``Trainer`` (``use_cpu``, no saving, no reporting, inputs padded to
    ``max_length``) and evaluates with ``Trainer.predict``;
(b) the env's engine (`lora_gym.engine.session.FineTuneSession`) without the frozen-prefix cache;
(c) the engine with it (only differs from (b) with ``lora_layers: top-<k>``).

To compare like with like, (a) gets what the engine does by construction: dropout off (the
engine always runs in eval mode), a constant learning rate, the engine's batches in order
(``train_sampling_strategy="sequential"``), and AdamW moments carried between env steps (the
env's "continue" semantics). All three should then reach the same accuracy (up to float
rounding); the table shows whether they do.

GFLOP per step are counted by `torch.utils.flop_counter.FlopCounterMode` in one extra env step
(matmuls and attention, forward and backward); the CPU's fp32 peak is estimated from a large
matmul. The share of an engine step spent in model forward/backward is measured with
`torch.profiler` (the engine labels its forward, backward and optimizer regions).

    .venv/bin/python benchmarks/step_speed.py [--task tweet-sentiment/n2000-s0] [--env-steps 5]

On a GPU (``--device cuda``, ``--dtype bfloat16``; (a) is skipped there with ``--no-naive``) and
with another model: ``--model DIR`` (a local Hugging Face model folder) or ``--random-model
qwen2-0.5b`` (a randomly initialised Qwen2 of ~0.5B parameters built from its config, with the
MiniLM tokenizer: speed only, its accuracy means nothing). The peak is then the device's
matmul peak in that dtype.
"""

from __future__ import annotations

import argparse
import ast
import copy
import inspect
import math
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, fields

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore", category=FutureWarning)  # transformers/peft deprecations

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lora_gym.core.config import EnvConfig  # noqa: E402
from lora_gym.engine.models import load_base, model_dir  # noqa: E402
from lora_gym.engine.session import FineTuneSession, resolve_threads  # noqa: E402
from lora_gym.tasks.loading import load_task  # noqa: E402
from lora_gym.tasks.sets import load_task_set  # noqa: E402


@dataclass
class Args:
    task: str = "tweet-sentiment/n2000-s0"
    """Task of the config's task set to fine-tune on."""
    env_steps: int = 5
    """Timed env steps per method (the median is reported); one more is run to count FLOPs."""
    steps: int = 0
    """Optimizer steps per env step (0: the config's steps_per_action)."""
    rank: int = 0
    """LoRA rank of every env step (0: the config's middle rank)."""
    lr: float = 1.0e-3
    """Learning rate of every env step."""
    seed: int = 0
    """Seed of the episode (initial adapter, head and batch order)."""
    config: str = ""
    """EnvConfig YAML (default: the embedded default, envs_configs/default.yaml)."""
    profile: bool = True
    """Profile one engine step with torch.profiler (forward/backward share)."""
    naive: bool = True
    """Also time (a), PEFT + Trainer per step (CPU float32 only)."""
    device: str = ""
    """Override the config's device: cpu, cuda, cuda:N or auto."""
    dtype: str = ""
    """Override the config's dtype: float32, bfloat16 or float16 (CUDA)."""
    model: str = ""
    """Override the config's model: minilm, tiny-bert or a local model folder."""
    random_model: str = ""
    """Build a random model to time: qwen2-0.5b (overrides --model)."""
    lora_layers: str = ""
    """Override the config's lora_layers (e.g. top-4 for a deep model)."""


def parse_args(argv: list[str] | None = None) -> Args:
    """`Args` from the command line; the field docstrings are the help."""
    tree = ast.parse(inspect.getsource(Args))
    body = tree.body[0].body
    docs = {a.target.id: b.value.value for a, b in zip(body, body[1:], strict=False)
            if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr)}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in fields(Args):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=docs.get(f.name))
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            parser.add_argument(flag, type=kind, default=f.default, help=docs.get(f.name))
    return Args(**vars(parser.parse_args(argv)))


@dataclass
class Result:
    """What one method measured."""

    name: str
    seconds: list[float]
    accuracy: float
    setup: float
    gflop: float = math.nan

    @property
    def median(self) -> float:
        """Median seconds per env step."""
        return statistics.median(self.seconds)


# -- measurements ------------------------------------------------------------------------------
def peak_gflops(n: int = 2048, repeats: int = 5, device: str = "cpu",
                dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of a large square matmul in `dtype` on `device`: an estimate of its peak."""
    if device != "cpu":
        n = 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm up
    best = math.inf
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def random_model(kind: str) -> str:
    """A folder holding a randomly initialised model of `kind` and the MiniLM tokenizer."""
    import tempfile

    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Qwen2Config

    from lora_gym.engine.models import embedded_model_dir

    if kind != "qwen2-0.5b":
        raise SystemExit(f"--random-model must be qwen2-0.5b, got {kind!r}")
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir(), local_files_only=True)
    config = Qwen2Config(vocab_size=tokenizer.vocab_size, hidden_size=896, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, intermediate_size=4864,
                         max_position_embeddings=512, num_labels=2,
                         pad_token_id=tokenizer.pad_token_id)
    folder = tempfile.mkdtemp(prefix="lora-gym-random-")
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def count_gflop(fn) -> float:
    """GFLOP that `fn()` computes (matmuls, convolutions and attention, incl. backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def profile_share(step) -> tuple[float, float]:
    """``(forward/backward share, wall seconds)`` of one call of `step` under torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        step()
        wall = time.perf_counter() - start
    model_us = sum(e.cpu_time_total for e in prof.events()
                   if e.name in ("lora_gym.forward", "lora_gym.backward"))
    return model_us / 1e6 / wall, wall


# -- (b), (c): the engine -------------------------------------------------------------------------
def run_engine(name: str, config: EnvConfig, task, args: Args, steps: int,
               record: list | None = None) -> tuple[Result, FineTuneSession]:
    """Time `args.env_steps` env steps of a `FineTuneSession`."""
    session = FineTuneSession(config)
    start = time.perf_counter()
    session.start(task, args.seed)
    session.set_rank(args.rank)
    setup = time.perf_counter() - start
    if record is not None:  # remember the batches, for (a)
        next_batch = session._next_batch

        def recording():
            batch = next_batch()
            record.append(batch)
            return batch

        session._next_batch = recording
    init = {n: p.detach().clone() for n, p in session.net.named_parameters() if p.requires_grad}

    def env_step():
        segment = session.train(args.rank, args.lr, steps)
        return session.evaluate(segment.train_loss)

    seconds = []
    for _ in range(args.env_steps):
        began = time.perf_counter()
        metrics = env_step()
        seconds.append(time.perf_counter() - began)
    result = Result(name, seconds, metrics.accuracy, setup)
    result.gflop = count_gflop(env_step)
    if record is not None:
        session._next_batch = next_batch
    session.initial_state = init
    session.env_step = env_step
    return result, session


# -- (a): PEFT + Trainer, the first way ------------------------------------------------------
def _key(name: str) -> str:
    """A trainable parameter's name without PEFT's wrapping (comparable across models)."""
    for part in ("base_model.model.", "modules_to_save.default.", "original_module."):
        name = name.replace(part, "")
    return name


class NaiveTrainerLoop:
    """Each env step: fresh model + PEFT + Trainer, state carried from the previous step."""

    def __init__(self, config: EnvConfig, task, args: Args, steps: int,
                 initial_state: dict[str, torch.Tensor], batches: list[np.ndarray]) -> None:
        from datasets import Dataset

        self.config, self.task, self.args, self.steps = config, task, args, steps
        self.state = {_key(k): v.clone() for k, v in initial_state.items()}
        self.optimizer_state = None
        self.batches = batches
        _, tokenizer = load_base(config.model)

        def tokenised(texts, labels):
            enc = tokenizer(list(texts), truncation=True, padding="max_length",
                            max_length=config.max_length)
            return Dataset.from_dict({**enc, "labels": labels.tolist()})

        self.train_set = tokenised(task.train_texts, task.train_labels)
        self.val_set = tokenised(task.val_texts, task.val_labels)
        self.t = 0

    def env_step(self) -> float:
        """Train `steps` optimizer steps on the next batches, then predict; returns accuracy."""
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments
        from transformers.trainer_callback import PrinterCallback

        config, args = self.config, self.args
        k = config.top_layers
        net = AutoModelForSequenceClassification.from_pretrained(
            model_dir(config.model), num_labels=self.task.num_classes, local_files_only=True,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
        n_layers = net.config.num_hidden_layers
        lora = LoraConfig(task_type="SEQ_CLS", r=args.rank, lora_alpha=config.lora_alpha,
                          lora_dropout=0.0, target_modules=list(config.target_modules),
                          layers_to_transform=None if k is None else list(range(n_layers - k,
                                                                                n_layers)),
                          layers_pattern=None if k is None else "layer")
        model = get_peft_model(net, lora)
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        assert {_key(n) for n, _ in params} == set(self.state), "trainable parameters differ"
        with torch.no_grad():
            for n, p in params:
                p.copy_(self.state[_key(n)])
        optimizer = torch.optim.AdamW([p for _, p in params], lr=args.lr,
                                      weight_decay=config.weight_decay)
        if self.optimizer_state is not None:
            optimizer.load_state_dict(self.optimizer_state)
        order = np.concatenate(self.batches[self.t * self.steps:(self.t + 1) * self.steps])
        training = TrainingArguments(
            output_dir="/tmp/lora_gym_bench", use_cpu=True, report_to="none",
            save_strategy="no", logging_strategy="no", disable_tqdm=True, max_steps=self.steps,
            per_device_train_batch_size=config.batch_size,
            per_device_eval_batch_size=config.eval_batch_size, learning_rate=args.lr,
            lr_scheduler_type="constant", weight_decay=config.weight_decay,
            max_grad_norm=config.max_grad_norm, seed=args.seed,
            train_sampling_strategy="sequential", dataloader_num_workers=0)
        trainer = Trainer(model=model, args=training, train_dataset=self.train_set.select(order),
                          optimizers=(optimizer, None))
        trainer.remove_callback(PrinterCallback)  # no per-step log lines in the table's output
        trainer.train()
        predictions = trainer.predict(self.val_set)
        self.state = {_key(n): p.detach().clone() for n, p in params}
        self.optimizer_state = copy.deepcopy(optimizer.state_dict())
        self.t += 1
        return float((predictions.predictions.argmax(1) == self.task.val_labels).mean())


def run_naive(config: EnvConfig, task, args: Args, steps: int, initial_state, batches) -> Result:
    """Time `args.env_steps` env steps of `NaiveTrainerLoop`."""
    start = time.perf_counter()
    loop = NaiveTrainerLoop(config, task, args, steps, initial_state, batches)
    setup = time.perf_counter() - start
    seconds = []
    for _ in range(args.env_steps):
        began = time.perf_counter()
        accuracy = loop.env_step()
        seconds.append(time.perf_counter() - began)
    result = Result("(a) PEFT + Trainer", seconds, accuracy, setup)
    result.gflop = count_gflop(loop.env_step)
    return result


# -- report ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Run the three methods and print the table."""
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    config = EnvConfig.from_yaml(args.config) if args.config else EnvConfig()
    overrides = {name: getattr(args, name) for name in ("device", "dtype", "model", "lora_layers")
                 if getattr(args, name)}
    if args.random_model:
        overrides["model"] = random_model(args.random_model)
    if overrides.get("model", config.model) not in ("minilm", "tiny-bert"):
        from lora_gym.engine.families import family_of
        from lora_gym.engine.models import load_base

        overrides.setdefault("target_modules", family_of(
            load_base(overrides["model"])[0].config).targets)
    config = config.replace(**overrides)
    device = config.device_name(torch.cuda.is_available())
    if device != "cpu" or config.dtype != "float32" or config.model != "minilm":
        args.naive = False  # (a) is the CPU float32 baseline of the embedded MiniLM
    args.rank = args.rank or config.ranks[len(config.ranks) // 2]
    steps = args.steps or config.steps_per_action
    if args.rank not in config.ranks:
        raise SystemExit(f"--rank must be one of the config's ranks {list(config.ranks)}")
    torch.set_num_threads(resolve_threads(config.torch_threads))
    torch.manual_seed(args.seed)
    task = load_task(load_task_set(config.task_set).get(args.task))
    print(f"task {task.name}: {len(task.train_texts)} train / {len(task.val_texts)} val, "
          f"{task.num_classes} classes; model {config.model}, lora_layers {config.lora_layers}, "
          f"target_modules {list(config.target_modules)}; rank {args.rank}, lr {args.lr}; "
          f"{steps} optimizer steps x batch {config.batch_size} + eval per env step; "
          f"{torch.get_num_threads()} threads; device {device}, dtype {config.dtype}", flush=True)
    peak = peak_gflops(device=device, dtype=getattr(torch, config.dtype))
    print(f"{config.dtype} peak estimate (square matmul on {device}): {peak:.0f} GFLOP/s",
          flush=True)

    batches: list[np.ndarray] = []
    plain, plain_session = run_engine("(b) engine, no prefix cache",
                                      config.replace(prefix_cache=False), task, args, steps,
                                      record=batches)
    print(f"{plain.name}: {plain.median:.2f} s/step", flush=True)
    cached, cached_session = run_engine("(c) engine + prefix cache",
                                        config.replace(prefix_cache=True), task, args, steps)
    print(f"{cached.name}: {cached.median:.2f} s/step", flush=True)
    naive = None
    if args.naive:
        naive = run_naive(config, task, args, steps, plain_session.initial_state, batches)
        print(f"{naive.name}: {naive.median:.2f} s/step", flush=True)

    default = cached if config.prefix_cache else plain
    default_session = cached_session if config.prefix_cache else plain_session
    examples = steps * config.batch_size + len(task.val_texts)
    print()
    print(f"| method | s/env step (median of {args.env_steps}) | examples/s | GFLOP/step "
          f"| GFLOP/s | % of peak | val accuracy | one-time setup s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in (r for r in (naive, plain, cached) if r is not None):
        rate = r.gflop / r.median
        print(f"| {r.name} | {r.median:.2f} | {examples / r.median:.0f} | {r.gflop:.0f} | "
              f"{rate:.0f} | {100 * rate / peak:.0f}% | {r.accuracy:.3f} | {r.setup:.1f} |")
    print(f"\nexamples/s counts the {steps * config.batch_size} training and "
          f"{len(task.val_texts)} validation examples of an env step; accuracy is after "
          f"{args.env_steps * steps} optimizer steps; setup: (a) tokenising, (b)/(c) the "
          "episode's start (with (c): computing the frozen-prefix activations once per task).")
    if args.profile:
        share, wall = profile_share(default_session.env_step)
        print(f"torch.profiler, one engine step ({default.name}, {wall:.2f} s profiled): "
              f"{100 * share:.0f}% of the time in model forward/backward (target >= 80%: "
              f"{'met' if share >= 0.8 else 'MISSED'})")
    if naive is None:
        return 0
    speedup = naive.median / default.median
    gap = 100 * abs(naive.accuracy - default.accuracy)
    print(f"accuracy (a) {naive.accuracy:.3f} vs engine {default.accuracy:.3f}: "
          f"{gap:.1f} points apart ({'within' if gap <= 1.0 else 'MORE THAN'} 1 point)")
    print(f"target >= 5x at equal accuracy: {'met' if speedup >= 5 and gap <= 1 else 'MISSED'}")
    print(f"speedup {speedup:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
