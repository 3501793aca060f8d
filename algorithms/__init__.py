"""Multi-agent RL trainers and networks for the cell-free MIMO environments."""
