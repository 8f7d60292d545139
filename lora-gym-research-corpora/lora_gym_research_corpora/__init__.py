"""Research-only corpora of lora-gym's task sets, as lora-gym's ``bundled`` source reads them.

lora-gym finds this folder by importing the package (`lora_gym.tasks.sources.bundled_dirs`);
nothing here runs code. The files, their origin and their terms: README.md and LICENSE.md of the
distribution.
"""

from pathlib import Path

DATA_DIR = Path(__file__).parent
"""Where the corpora lie: ``<name>.jsonl.xz``, rows ``{"text", "label", "split"}``."""
