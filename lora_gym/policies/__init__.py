"""Policies and what runs them.

The policy protocol and registry, the baselines, the episode runner, evaluation, the
sim-to-real comparison and the recorder (serial and Ray):

| module | what |
|---|---|
| `base` | `Policy`, `PolicyContext`, the heuristic baselines, `SB3Policy`, `POLICIES` |
| `oracles` | baselines that know the task: `TaskTablePolicy`, `SequencePolicy` |
| `search` | search baselines on the train split: best static, per-task oracle, Optuna |
| `runner` | `run_episode` and `EpisodeResult` |
| `evaluate` | every policy on the same tasks and seeds; fixed-action returns |
| `sim2real` | the same episodes on the replay and the live env, paired and summarised |
| `recording`, `distributed` | record policies' live episodes into a store, here or on Ray |

The registry is filled here, explicitly: the heuristics of `base` and `search.SEARCH_POLICIES`.
"""

from lora_gym.policies.base import (
    POLICIES,
    SB3_ALGOS,
    FixedPolicy,
    PatiencePolicy,
    Policy,
    PolicyContext,
    PolicyFactory,
    RandomPolicy,
    RankControllerPolicy,
    SB3Policy,
    SchedulePolicy,
    make_policies,
    nearest_pair,
    register_policy,
    step_of,
)
from lora_gym.policies.oracles import SequencePolicy, TaskTablePolicy
from lora_gym.policies.runner import EpisodeResult, run_episode
from lora_gym.policies.search import SEARCH_POLICIES

for _name, _factory in SEARCH_POLICIES.items():
    register_policy(_name)(_factory)

__all__ = ["POLICIES", "SB3_ALGOS", "EpisodeResult", "FixedPolicy", "PatiencePolicy", "Policy",
           "PolicyContext", "PolicyFactory", "RandomPolicy", "RankControllerPolicy", "SB3Policy",
           "SchedulePolicy", "SequencePolicy", "TaskTablePolicy", "make_policies", "nearest_pair",
           "register_policy", "run_episode", "step_of"]
