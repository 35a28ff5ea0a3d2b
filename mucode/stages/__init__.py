"""The stages of the muCode loop, one module each: its config dataclass (where it reads and writes,
and its recipe) and `run(config)`. The library modules next to this package hold the reusable parts
(losses, pairs, relabel rules, episodes, search, scoring); a stage wires them to the run folder.
"""
