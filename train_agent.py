r"""Train a Stable-Baselines3 agent on LoRATune-v0: rl-baselines3-zoo's ``train.py`` entry point.

    python train_agent.py --algo ppo --env LoRATune-v0 -n 2048 -P --env-kwargs config:tiny

The trainer is library code, `lora_gym_agents.train` (also ``lora-gym train``, same flags);
``python train_agent.py --help`` lists them.
"""

from lora_gym_agents.train import main

if __name__ == "__main__":
    main()
