"""mucode: multi-turn code generation by expert iteration with a learned verifier (muCode).

Components live in this package (records, tasks, sandbox, models, generation, rollouts, verifier,
relabel, training, search, iterate); the stage entry points live in `pipelines/`.
"""

__version__ = "0.1.0"
