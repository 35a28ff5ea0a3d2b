"""Stage train_generator: generator i, SFT from generator 0 on the relabeled data of iterations 1..i.

    python pipelines/train_generator.py run_dir=runs/default iteration=1
    python pipelines/train_generator.py run_dir=runs/default iteration=2 sft.init=previous sft.replay=0 \
        out_dir=runs/default/iter2/sft-previous     # another recipe, beside the main job's generator 2
    torchrun --nproc_per_node 4 pipelines/train_generator.py run_dir=runs/x model=hub \
        sft.train.deepspeed=conf/deepspeed/zero3.json sft.train.precision=bf16        # multi-GPU

Reads the relabeled SFTExamples of iterations 1..i (or `inputs`), the starting weights (`sft.init`)
and, where the task has a warmup split, its references for replay; writes out_dir/model,
metrics.jsonl, config.yaml and manifest.json (the loss: mucode.sft). A killed run resumes from
out_dir/checkpoints; a complete stage is skipped.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mucode import artifacts, recipes
from mucode.models import ModelConfig, load_generator, training_copy
from mucode.records import SFTExample, read_records
from mucode.sft import GeneratorRecipe, collate, sft_loss, tokenize_all, warmup_examples
from mucode.stages import init_weights
from mucode.stages.relabel import EXAMPLES
from mucode.tasks import TaskConfig, load_problems, split_names
from mucode.tracking import MetricLogger, TrackingConfig
from mucode.training import TrainConfig, process_state, train
from mucode.vllm_engine import release_engines

log = logging.getLogger(__name__)

@dataclass
class TrainGeneratorConfig:
    """Stage: train generator i on the relabeled examples of iterations 1..i."""

    run_dir: str = "runs/default"
    """The run directory (see artifacts.RunLayout)."""
    iteration: int = 1
    """i >= 1: the generator trained (generator 0 is the warm start, pipelines/warm_start.py)."""
    out_dir: str | None = None
    """Where the stage writes model/, metrics.jsonl, config.yaml and manifest.json; null = iter{i}/sft."""
    inputs: list[str] | None = None
    """SFTExample dataset folders, concatenated; null = the relabel stages of iterations 1..i."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """The task suite (its warmup split, if any, feeds the replay)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model."""
    sft: GeneratorRecipe = field(default_factory=recipes.iteration_sft)
    """Starting weights, replay and optimization recipe."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """metrics.jsonl + wandb."""

    def __post_init__(self) -> None:
        if self.iteration < 1:
            raise ValueError(f"iteration={self.iteration} must be >= 1 (generator 0 is pipelines/warm_start.py)")
        if self.inputs is not None and not self.inputs:
            raise ValueError("inputs is empty; give SFTExample folders, e.g. inputs=[runs/x/iter1/relabel/examples]")


def load_examples(config: TrainGeneratorConfig, inputs: list[str]) -> list[SFTExample]:
    """Every input folder's examples, plus warm-up references replayed where the task has them."""
    examples = []
    for path in inputs:
        examples += read_records(artifacts.require(path, "SFT examples", "pipelines/relabel.py"), SFTExample)
    replay = config.sft.replay
    if replay != 0 and "warmup" in split_names(config.task):
        references = warmup_examples(load_problems(config.task, "warmup"))
        if replay is not None:
            n = min(len(references), round(replay * len(examples)))
            references = random.Random(config.sft.train.seed).sample(references, n)
        examples += references
    if not examples:
        raise ValueError(f"train_generator: no examples in inputs={inputs} (relabeling yields none when no "
                         "rollout has a correct code: warm start longer or collect more rollouts)")
    return examples


def fit(model: ModelConfig, init: str, examples: list[SFTExample], recipe: TrainConfig, out_dir: Path,
        logger: MetricLogger, inputs: dict[str, str | Path]) -> artifacts.StageOutput:
    """SFT of the model at `init` on `examples` into out_dir, logging with the stage's `logger` (shared
    by the warm start and generators 1..M)."""
    release_engines()  # a vLLM engine of this process gives its GPU memory back before training
    network, tokenizer = load_generator(training_copy(model), init)
    items, dropped = tokenize_all(tokenizer, examples, recipe.max_length)
    result = train(network, items, [len(t.input_ids) for t in items],
                   lambda batch: collate(batch, tokenizer.pad_token_id), sft_loss, recipe, out_dir, logger, tokenizer)
    log.info("generator SFT: %d steps, final loss %.4f, %.0f s -> %s", result.steps, result.final_loss,
             result.seconds, result.model_dir)
    if os.path.isdir(init):
        inputs = {**inputs, "init": init}
    metrics = {"train": dataclasses.asdict(result), "examples": len(examples), "dropped": dropped}
    return artifacts.StageOutput(inputs, [artifacts.MODEL], metrics)


def run(config: TrainGeneratorConfig, examples: list[SFTExample] | None = None) -> dict[str, Any]:
    """Run the stage (skipped when complete); returns the manifest's metrics (train: the TrainResult)."""
    layout = artifacts.RunLayout(config.run_dir)
    out_dir = Path(config.out_dir or layout.sft(config.iteration))
    inputs = config.inputs or [str(layout.relabel(j) / EXAMPLES) for j in range(1, config.iteration + 1)]

    def body(logger: MetricLogger) -> artifacts.StageOutput:
        init = init_weights(layout, config.sft.init, config.model, config.iteration)
        data = load_examples(config, inputs) if examples is None else examples
        return fit(config.model, init, data, config.sft.train, out_dir, logger,
                   {f"input{i}": p for i, p in enumerate(inputs)})

    main = process_state(config.sft.train).is_main_process
    return artifacts.run_stage(out_dir, config, body, main_process=main)
