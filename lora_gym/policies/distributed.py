"""Run live episodes on a Ray cluster: actors step the envs, the driver is the one store writer.

Used by ``lora-gym record --backend ray`` (`record_ray`) and ``lora-gym sim2real --backend ray``
(`evaluate_ray`). Ray is an optional extra (``pip install 'lora-gym[ray]'``), imported only here.

Design:

* Each worker is a Ray actor (`EpisodeWorker`) holding one live env, so the base model is loaded
  once per actor and its token and prefix caches live as long as the actor.
* The driver hands out (policy, task, reset seed) jobs one at a time (`JobQueue`): a worker keeps
  to one corpus (`TaskSpec.corpus`; the variants of a corpus share its caches) while that corpus
  has jobs, and jobs of a corpus are queued by task, so consecutive episodes of an actor reuse
  its caches. An idle worker then takes the largest corpus nobody works on, or else helps with
  the largest one left.
* An episode is a Ray streaming generator: the actor yields the rows of every env call (reset
  and each step) as soon as it returns, the driver gets them with ``ray.wait`` over all running
  generators and commits each row to the SQLite store at once. Rows never wait for the end of
  an episode, and only the driver process touches the store file.
* A dead worker (killed process, lost node) is restarted by Ray (``max_restarts``: a fresh
  process that loads the model again) and the driver resubmits the interrupted episode (up to
  ``max_retries`` times per episode). The episode runs again from its reset: the live env is
  deterministic given the row key, and `Store.add` ignores a key already present, so the rows
  committed before the failure are neither lost nor duplicated; only the step in flight is lost.
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from lora_gym.core.config import EnvConfig
from lora_gym.policies.base import Policy
from lora_gym.policies.recording import pending_jobs, play_episode, progress_bar, record_counts
from lora_gym.policies.runner import EpisodeResult, run_episode
from lora_gym.replay.recording import RecordingWrapper
from lora_gym.replay.store import StepRecord, Store, library_versions, live_env_id

Job = tuple[Policy, str, int]


def import_ray():
    """The `ray` module.

    Raises:
        ImportError: Ray is not installed (it is the optional extra ``lora-gym[ray]``).
    """
    try:
        import ray
    except ImportError as err:
        raise ImportError("the Ray backend needs Ray: pip install 'lora-gym[ray]'") from err
    return ray


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how many Ray workers run the episodes."""

    address: str | None = None
    """``None`` joins ``$RAY_ADDRESS`` if set (as under ``ray job submit``), else starts a new
    local Ray on this machine; ``auto`` joins the cluster this machine belongs to (``ray start``);
    ``ray://host:10001`` connects through Ray Client."""
    num_workers: int = 2
    """Actors, each with its own env and copy of the model (capped at the number of episodes)."""
    worker_cpus: float = 1.0
    """CPUs reserved per worker; also its torch threads when the config's ``torch_threads`` is 0."""
    worker_gpus: float = 0.0
    """GPUs reserved per worker. Ray makes a worker see only its own GPU(s), so a config with
    ``device: cuda`` (or ``auto``) runs each worker's engine there; > 0 needs such a config."""
    max_restarts: int = 3
    """How often Ray restarts a worker whose process died."""
    max_retries: int = 3
    """How often one episode is resubmitted after its worker died."""

    def __post_init__(self) -> None:
        number = int | float
        rules = {"num_workers": (int, lambda v: v >= 1, "an int >= 1"),
                 "worker_cpus": (number, lambda v: v > 0, "a number > 0"),
                 "worker_gpus": (number, lambda v: v >= 0, "a number >= 0"),
                 "max_restarts": (int, lambda v: v >= 0, "an int >= 0"),
                 "max_retries": (int, lambda v: v >= 0, "an int >= 0")}
        for name, (types, ok, allowed) in rules.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, types) or not ok(value):
                raise ValueError(f"ClusterOptions `{name}` must be {allowed}, got {value!r}")
        if self.address is not None and not (self.address == "auto"
                                             or self.address.startswith("ray://")):
            raise ValueError("ClusterOptions `address` must be None, 'auto' or 'ray://host:port', "
                             f"got {self.address!r}")


def check_devices(config: EnvConfig, options: ClusterOptions) -> None:
    """Raise ValueError when reserved GPUs and the config's `device` disagree.

    GPUs reserved for a CPU config would idle; a CUDA config without reserved GPUs would find
    none (Ray hides the GPUs from an actor that reserved none). The device keys the table, so it
    is never changed behind the user's back.
    """
    if options.worker_gpus > 0 and config.device == "cpu":
        raise ValueError(f"--worker-gpus {options.worker_gpus} reserves GPUs but the config's "
                         "`device` is cpu: set device:cuda (or auto) to run the engines on them")
    if options.worker_gpus == 0 and config.device.startswith("cuda"):
        raise ValueError(f"`device` {config.device!r} needs GPUs on the Ray workers: "
                         "--worker-gpus 1 (or a fraction to share one)")


class JobQueue:
    """Pending job indices by corpus, handed out with corpus affinity (see the module doc).

    Args:
        corpora: The corpus of each job.
        tasks: The task of each job (jobs of a corpus are queued by task, then index).
    """

    def __init__(self, corpora: list[str], tasks: list[str]) -> None:
        self._corpus = corpora
        self._queues: dict[str, deque[int]] = {}
        for j in sorted(range(len(corpora)), key=lambda i: (tasks[i], i)):
            self._queues.setdefault(corpora[j], deque()).append(j)
        self._affinity: dict[int, str] = {}
        self._owner: dict[str, int] = {}

    def take(self, worker: int) -> int | None:
        """The next job for `worker`, or None when no job is left."""
        key = self._affinity.get(worker)
        if key is None or not self._queues[key]:
            left = {k: len(q) for k, q in self._queues.items() if q}
            if not left:
                return None
            unclaimed = [k for k in left if k not in self._owner]
            key = max(unclaimed or left, key=lambda k: left[k])
            self._owner.setdefault(key, worker)
            self._affinity[worker] = key
        # the corpus' first worker takes from the front, helpers from the back (other tasks)
        queue = self._queues[key]
        return queue.popleft() if self._owner[key] == worker else queue.pop()

    def put_back(self, job: int) -> None:
        """Queue `job` again, first in line of its corpus."""
        self._queues[self._corpus[job]].appendleft(job)

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())


class EpisodeWorker:
    """What one Ray actor runs: a recording-wrapped live env (model loaded once, then reused).

    Args:
        config: The env config.
        threads: Torch threads, used when ``config.torch_threads`` is 0 (auto).
    """

    def __init__(self, config: EnvConfig, threads: int) -> None:
        if config.torch_threads == 0:
            config = config.replace(torch_threads=threads)  # not part of the row keys
        self.episode_length = config.episode_length
        self._rows: list[StepRecord] = []
        self.env = RecordingWrapper(gym.make(live_env_id(config), config=config,
                                             disable_env_checker=True), None, self._rows.append)

    def versions(self) -> dict[str, str]:
        """Versions of the libraries that compute outcomes, on this worker."""
        return library_versions()

    def record(self, policy: Policy, task: str, seed: int
               ) -> Iterator[tuple[list[StepRecord], int]]:
        """Run one episode; after each env call yield its rows and `play_episode`'s progress."""
        for steps in play_episode(self.env, policy, task, seed, self.episode_length):
            yield self._take_rows(), steps

    def evaluate(self, policy: Policy, task: str, seed: int
                 ) -> Iterator[tuple[EpisodeResult, list[StepRecord]]]:
        """Run one episode with `run_episode`; yield its result and rows once, at the end."""
        result = run_episode(self.env, policy, task, seed)
        yield result, self._take_rows()

    def _take_rows(self) -> list[StepRecord]:
        rows, self._rows[:] = list(self._rows), []
        return rows


class RayPool:
    """A started set of `EpisodeWorker` actors (a context manager that removes them on exit).

    Args:
        config: The env config of every worker.
        options: Where and how many.
        worker_cls: `EpisodeWorker` or a subclass (tests inject faults with one).
    """

    def __init__(self, config: EnvConfig, options: ClusterOptions,
                 worker_cls: type[EpisodeWorker] = EpisodeWorker) -> None:
        check_devices(config, options)
        ray = import_ray()
        self.config, self.options, self.worker_cls = config, options, worker_cls
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            address = options.address or os.environ.get("RAY_ADDRESS") or "local"
            kwargs = {"include_dashboard": False} if address == "local" else {}
            ray.init(address=address, **kwargs)
        self.workers: list[Any] = []

    def start(self, n: int) -> None:
        """Start `n` workers and check that they run the driver's library versions."""
        import ray

        actor = ray.remote(self.worker_cls).options(
            num_cpus=self.options.worker_cpus, num_gpus=self.options.worker_gpus,
            max_restarts=self.options.max_restarts, max_task_retries=0)
        threads = max(1, round(self.options.worker_cpus))
        self.workers = [actor.remote(self.config, threads) for _ in range(n)]
        mine = library_versions()
        for theirs in ray.get([w.versions.remote() for w in self.workers]):
            if theirs != mine:
                raise RuntimeError(f"a Ray worker runs {theirs}, the driver {mine}: rows would "
                                   "carry the wrong versions; install the same on every node")

    def run(self, method: str, jobs: list[Job], on_item: Callable[[int, Any], None]) -> int:
        """Run every job with the workers' generator `method`; returns how many were retried.

        `on_item(job_index, item)` is called in the driver for every item a job yields.

        Raises:
            RuntimeError: A job failed more than ``max_retries`` times, or every worker died.
        """
        import ray
        from ray.exceptions import ActorDiedError, RayActorError

        from lora_gym.tasks.sets import load_task_set

        task_set = load_task_set(self.config.task_set)
        queue = JobQueue([task_set.get(t).corpus for _, t, _ in jobs], [t for _, t, _ in jobs])
        policies = {id(p): ray.put(p) for p, _, _ in jobs}
        running: dict[Any, tuple[int, int | None]] = {}  # call -> (worker, job; None: a ping)
        attempts: Counter[int] = Counter()
        idle: set[int] = set()

        def submit(w: int) -> None:
            j = queue.take(w)
            if j is None:
                idle.add(w)
            else:
                idle.discard(w)
                policy, task, seed = jobs[j]
                call = getattr(self.workers[w], method)
                running[call.remote(policies[id(policy)], task, seed)] = (w, j)

        def retry(j: int, err: Exception) -> None:
            attempts[j] += 1
            if attempts[j] > self.options.max_retries:
                raise RuntimeError(f"job {jobs[j][0].name} {jobs[j][1]} seed {jobs[j][2]}: "
                                   f"its worker died {attempts[j]} times") from err
            queue.put_back(j)
            for v in sorted(idle):
                submit(v)

        for w in range(len(self.workers)):
            submit(w)
        while running:
            (ref,), _ = ray.wait(list(running), num_returns=1)
            w, j = running.pop(ref)
            try:
                item = ray.get(ref if j is None else next(ref))
            except StopIteration:
                submit(w)
                continue
            except RayActorError as err:
                if j is not None:
                    retry(j, err)  # the episode runs again from its reset, on a free worker
                if j is not None or not isinstance(err, ActorDiedError):
                    # Ray is restarting the worker: ping it, give it work once it answers
                    running[self.workers[w].versions.remote()] = (w, None)
                continue  # else a ping found the worker dead for good (its restarts used up)
            if j is None:
                submit(w)
            else:
                running[ref] = (w, j)
                on_item(j, item)
        if len(queue):
            raise RuntimeError(f"every Ray worker died; {len(queue)} episodes were not run")
        return sum(attempts.values())

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        for w in self.workers:
            ray.kill(w)
        if self._started_ray:
            ray.shutdown()


def _write(store: Store, rows: list[StepRecord]) -> None:
    for row in rows:
        store.add(row)


def record_ray(config: EnvConfig, jobs: list[Job], store_path: str,
               options: ClusterOptions | None = None, progress: bool = True,
               worker_cls: type[EpisodeWorker] = EpisodeWorker) -> dict[str, int]:
    """`lora_gym.replay.recording.record` on Ray workers: the same rows and counts.

    The counts add ``workers`` and ``retried`` (episodes resubmitted after a worker died).
    """
    options = options or ClusterOptions()
    with Store(store_path) as store:
        store.register_config(config)
        pending = pending_jobs(store, config, jobs)
        before = store.count()
        n = min(options.num_workers, len(pending))
        retried = 0
        if pending:
            with RayPool(config, options, worker_cls) as pool:
                bar = progress_bar(len(pending), len(jobs) - len(pending), config.episode_length,
                                   progress)
                credited = [0] * len(pending)

                def on_item(j: int, item: tuple[list[StepRecord], int]) -> None:
                    rows, steps = item
                    _write(store, rows)
                    if steps > credited[j]:  # a rerun of a retried episode is not counted twice
                        bar.update(steps - credited[j])
                        credited[j] = steps

                pool.start(n)
                retried = pool.run("record", pending, on_item)
                bar.close()
        return {**record_counts(store, len(jobs), len(pending), before), "workers": n,
                "retried": retried}


def evaluate_ray(config: EnvConfig, jobs: list[Job], options: ClusterOptions | None = None,
                 record_to: str | None = None,
                 worker_cls: type[EpisodeWorker] = EpisodeWorker) -> list[EpisodeResult]:
    """`run_episode` of every job on Ray workers, in job order; rows go to `record_to` if given."""
    options = options or ClusterOptions()
    results: list[EpisodeResult | None] = [None] * len(jobs)
    writer = Store(record_to) if record_to else None

    def on_item(j: int, item: tuple[EpisodeResult, list[StepRecord]]) -> None:
        results[j] = item[0]
        if writer is not None:
            _write(writer, item[1])

    try:
        if writer is not None:
            writer.register_config(config)
        if jobs:
            with RayPool(config, options, worker_cls) as pool:
                pool.start(min(options.num_workers, len(jobs)))
                pool.run("evaluate", jobs, on_item)
    finally:
        if writer is not None:
            writer.close()
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]
