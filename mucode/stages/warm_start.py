"""Stage warm_start: generator 0 of the tiny default, SFT of the untrained base on the task's
warm-up references (single turn). A pretrained model is its own generator 0 and skips this stage.

    python pipelines/warm_start.py run_dir=runs/default                  # after pipelines/prepare.py
    python pipelines/warm_start.py run_dir=runs/default warmup.max_steps=900 out_dir=runs/default/warmup-900

Reads run_dir/base/model (the prepare stage) and the task's warmup split; writes run_dir/warmup/model,
metrics.jsonl, config.yaml and manifest.json. A killed run resumes from its checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mucode import artifacts, recipes
from mucode.models import ModelConfig
from mucode.sft import warmup_examples
from mucode.stages import BASE, init_weights
from mucode.stages.train_generator import fit
from mucode.tasks import TaskConfig, load_problems
from mucode.tracking import MetricLogger, TrackingConfig
from mucode.training import TrainConfig, process_state


@dataclass
class WarmStartConfig:
    """Stage: train generator 0 from the base model on the warmup split's reference solutions."""

    run_dir: str = "runs/default"
    """The run directory (see artifacts.RunLayout)."""
    out_dir: str | None = None
    """Where the stage writes model/, metrics.jsonl, config.yaml and manifest.json; null = run_dir/warmup."""
    init: str = BASE
    """Starting weights: base (run_dir/base/model for the tiny default) or a saved model folder."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """The task suite; its warmup split is the data."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model."""
    warmup: TrainConfig = field(default_factory=recipes.warm_start)
    """The optimization recipe."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """metrics.jsonl + wandb."""


def run(config: WarmStartConfig) -> dict[str, Any]:
    """Run the stage (skipped when complete); returns the manifest's metrics (train: the TrainResult)."""
    layout = artifacts.RunLayout(config.run_dir)
    out_dir = Path(config.out_dir or layout.warmup)

    def body(logger: MetricLogger) -> artifacts.StageOutput:
        init = init_weights(layout, config.init, config.model)
        examples = warmup_examples(load_problems(config.task, "warmup"))
        return fit(config.model, init, examples, config.warmup, out_dir, logger, {})

    main = process_state(config.warmup).is_main_process
    return artifacts.run_stage(out_dir, config, body, main_process=main)
