"""The fleet side of the domain models: training data from the simulator, baselines,
evaluation, and the registry of model versions (the networks themselves live in models/)."""
