"""The stages of the muCode loop, one module each: its config dataclass (where it reads and writes,
and its recipe) and `run(config)`. The library modules next to this package hold the reusable parts
(losses, pairs, relabel rules, episodes, search, scoring); a stage wires them to the run folder.
"""

from __future__ import annotations

from mucode.artifacts import RunLayout, require
from mucode.sft import GENERATOR0, PREVIOUS

BASE = "base"
"""Start from the untrained base model (the warm start does)."""

__all__ = ["BASE", "GENERATOR0", "PREVIOUS", "init_weights"]


def init_weights(layout: RunLayout, init: str, model, iteration: int = 1) -> str:
    """The folder or Hub id a training stage starts from.

    init: "base" (the untrained base: run_dir/base/model for the tiny default, else the model itself),
    "generator0" (the warm start for the tiny default, else the base model), "previous" (generator
    iteration-1), or a saved model folder. `model` is the run's models.ModelConfig.
    """
    from mucode.models import TINY, resolve_path

    tiny = model.name_or_path == TINY
    if init == BASE:
        if not tiny:
            return resolve_path(model.name_or_path)  # a Hub id, a folder, or the offline SmolLM2 copy
        return str(require(layout.model(layout.base), "base model", "pipelines/prepare.py"))
    if init in (GENERATOR0, PREVIOUS):
        i = 0 if init == GENERATOR0 else iteration - 1
        if i == 0 and not tiny:
            return resolve_path(model.name_or_path)
        producer = "pipelines/warm_start.py" if i == 0 else f"pipelines/train_generator.py iteration={i}"
        return str(require(layout.generator(i, model.name_or_path), f"generator {i}", producer))
    return str(require(init, "init model", "a training stage"))
