"""Pure building blocks of the MDP: config, grid, observation, rewards, cost, metrics (no torch)."""
