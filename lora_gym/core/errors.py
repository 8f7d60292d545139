"""The project's own exception and warning classes."""


class ConfigError(ValueError):
    """A configuration field has a bad value, a bad type, or an unknown name."""


class TaskError(ValueError):
    """A task's data cannot be loaded or used (missing file or column, one class, empty text)."""


class TaskSourceUnavailable(TaskError):
    """The package or file that carries a task's data is not installed or not present."""


class StoreError(ValueError):
    """A file given as a store is not a lora-gym store: foreign, corrupt, or another schema."""


class RewardError(ValueError):
    """A reward function cannot be resolved, or returned a non-float or non-finite value."""


class LoRAGymWarning(UserWarning):
    """Base class of the warnings this project emits."""
