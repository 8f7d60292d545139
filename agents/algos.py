"""The Stable-Baselines3 algorithms that `train_agent.py` can use (those with Discrete actions)."""

from stable_baselines3 import A2C, DQN, PPO

ALGOS = {"ppo": PPO, "a2c": A2C, "dqn": DQN}
"""Name -> SB3 algorithm class; every one supports the env's Discrete action space."""
