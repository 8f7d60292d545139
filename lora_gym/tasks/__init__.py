"""Task layer: task specs, the readers of real and synthetic sources, task sets."""
