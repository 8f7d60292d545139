"""The `lora-gym` command and its subcommands."""
