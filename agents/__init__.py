"""Experiment tooling around Stable-Baselines3 (installed as ``lora_gym_agents``).

Training (rl-baselines3-zoo style), the improve loop, curriculum and callbacks; the policies,
baselines and their report are `lora_gym.policies`, the ``compare`` and ``demo`` commands
`lora_gym.cli`.
"""
