"""lora-gym: a Gymnasium environment in which an RL agent learns to tune live LoRA fine-tuning.

Importing the package only registers the environment ids; torch, transformers, peft and the data
load lazily on the first ``reset``.
"""

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

ENV_IDS = ("LoRATune-v0", "LoRATuneReplay-v0", "LoRATunePerLayer-v0", "LoRATuneScope-v0")
"""The ids that tune a sequence classifier (task sets of ``type: classification``)."""
MULTI_TASK_ENV_IDS = ("LoRATuneMultiTask-v0",)
"""The ids that tune several classification tasks at once (the single-task tools -- compare,
recommend, sim2real, replay -- do not apply to them)."""
LM_ENV_IDS = ("LoRATuneLM-v0", "LoRATuneLMReplay-v0")
"""The ids that tune a causal language model (task sets of ``type: causal_lm``)."""

if "LoRATune-v0" not in registry:
    register(id="LoRATune-v0", entry_point="lora_gym.envs.lora_tune:LoRATuningEnv")
if "LoRATuneReplay-v0" not in registry:
    register(id="LoRATuneReplay-v0", entry_point="lora_gym.envs.replay:LoRATuneReplayEnv")
if "LoRATunePerLayer-v0" not in registry:
    register(id="LoRATunePerLayer-v0", entry_point="lora_gym.envs.per_layer:LoRAPerLayerEnv")
if "LoRATuneScope-v0" not in registry:
    register(id="LoRATuneScope-v0", entry_point="lora_gym.envs.scope:LoRAScopeEnv")
if "LoRATuneMultiTask-v0" not in registry:
    register(id="LoRATuneMultiTask-v0", entry_point="lora_gym.envs.multi_task:LoRATuneMultiTaskEnv")
if "LoRATuneLM-v0" not in registry:
    register(id="LoRATuneLM-v0", entry_point="lora_gym.envs.lm_tune:LoRATuneLMEnv")
if "LoRATuneLMReplay-v0" not in registry:
    register(id="LoRATuneLMReplay-v0", entry_point="lora_gym.envs.lm_replay:LoRATuneLMReplayEnv")
