"""The environments of lora-gym."""
