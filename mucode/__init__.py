"""mucode: multi-turn code generation by expert iteration with a learned verifier (muCode).

The library modules of this package hold the reusable parts (records, tasks, sandbox, models,
generation, rollouts, verifier, relabel, sft, training, search, metrics, report, export); each stage
of the loop is a module of `mucode.stages` (its config and `run`), the tuned values of the default are
`mucode.recipes`, and the Hydra entry points are `pipelines/<stage>.py` (README, "Architecture").
"""

__version__ = "0.1.0"
