"""``python -m lora_gym``: the same as the ``lora-gym`` command."""

import sys

from lora_gym.cli.main import main

sys.exit(main())
