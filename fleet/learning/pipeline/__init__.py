"""The domain models' experiment pipeline, free of Django: simulated sites and their runs
(``sites``, ``datasets``), training runs (``training``), evaluation and the baselines
(``evaluation``, ``detection``, ``baselines``), plots and ``bench models`` (``bench``).

It reads its inputs through ``fleet.learning.features`` exactly as live serving does, and it
is one of the few places allowed to import the simulator (import-linter contracts in
pyproject.toml). The registry, deployments and serving stay in the Django app
(``fleet.learning``); ``fleet.learning.runs`` registers a run's checkpoints.
"""
