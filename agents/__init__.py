"""Baselines, evaluation and comparison of LoRA-tuning policies (RL agents and classic HPO)."""
