"""Experiment tooling around Stable-Baselines3 (installed as ``lora_gym_agents``).

Training (rl-baselines3-zoo style), the comparison command and its report, the demo, the improve
loop, curriculum and callbacks; the policies and baselines themselves are `lora_gym.policies`.
"""
