"""The Stable-Baselines3 algorithms that `train_agent.py` can use, and the action spaces of each."""

import stable_baselines3
from gymnasium import spaces

from lora_gym.policies import SB3_ALGOS

ALGOS = {name: getattr(stable_baselines3, name.upper()) for name in SB3_ALGOS}
"""Name -> SB3 algorithm class, for every name of `lora_gym.policies.SB3_ALGOS`."""

ACTION_SPACES: dict[str, tuple[type[spaces.Space], ...]] = {
    "ppo": (spaces.Discrete, spaces.MultiDiscrete),
    "a2c": (spaces.Discrete, spaces.MultiDiscrete),
    "dqn": (spaces.Discrete,),
}
"""Name -> the action spaces the algorithm supports (SB3's ``supported_action_spaces``)."""


def check_action_space(algo: str, env_id: str, space: spaces.Space) -> None:
    """Raise `ValueError` when `algo` cannot act in `space` (e.g. DQN on ``MultiDiscrete``)."""
    if not isinstance(space, ACTION_SPACES[algo]):
        able = sorted(name for name, kinds in ACTION_SPACES.items() if isinstance(space, kinds))
        raise ValueError(f"--algo {algo} supports only {[k.__name__ for k in ACTION_SPACES[algo]]} "
                         f"action spaces; {env_id} has {space}: use --algo {' or '.join(able)}")
