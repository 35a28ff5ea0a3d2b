"""Stage relabel: iteration i's episodes and verifier R_i -> the SFT examples of generator i.

    python pipelines/relabel.py run_dir=runs/default iteration=1
    python pipelines/relabel.py run_dir=runs/default iteration=1 relabel.mode=rft \
        out_dir=runs/default/iter1/relabel-rft       # another expert, beside the main job's

Reads run_dir/iter{i}/rollouts and (modes both and learned) the verifier iter{i}/verifier; writes
out_dir/examples (SFTExample dataset; out_dir defaults to run_dir/iter{i}/relabel, a train_generator input
with `inputs=`). The rules are mucode.relabel.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mucode import artifacts
from mucode.models import ModelConfig
from mucode.records import Episode, Problem, SFTExample, read_records, write_records
from mucode.relabel import RelabelConfig, RelabelMode, Scores, relabel, relabel_stats
from mucode.tracking import TrackingConfig
from mucode.verifier import Scorer, load_scorer

log = logging.getLogger(__name__)

EXAMPLES = "examples"
"""The SFTExample dataset inside the stage's folder (generator SFT reads it)."""


@dataclass
class RelabelStageConfig:
    """The relabel stage: iteration i's episodes + verifier R_i -> SFT examples for generator i."""

    run_dir: str = "runs/default"
    """The run directory (reads iter{i}/rollouts and iter{i}/verifier, writes iter{i}/relabel)."""
    iteration: int = 1
    """Which iteration's rollouts to relabel."""
    out_dir: str | None = None
    """Where examples/, config.yaml and manifest.json go; null = run_dir/iter{i}/relabel."""
    split: str = "train"
    """The problem split the rollouts were collected on (for the verifier's problem text)."""
    verifier: str | None = None
    """Verifier model folder; null = run_dir/iter{i}/verifier/model. Not read by oracle, rft and star."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model config (how the verifier is loaded)."""
    relabel: RelabelConfig = field(default_factory=RelabelConfig)
    """The expert."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """metrics.jsonl + wandb (the relabel counts)."""

    def __post_init__(self) -> None:
        if self.iteration < 1:
            raise ValueError(f"iteration={self.iteration} must be >= 1")

    def needs_verifier(self) -> bool:
        return self.relabel.mode in (RelabelMode.both, RelabelMode.learned) and self.relabel.betas()[1] > 0


def final_code_scores(episodes: list[Episode], problems: dict[str, Problem], scorer: Scorer) -> Scores:
    """R(x, y) for every distinct (problem, final code) of the episodes, scored in one batch."""
    missing = sorted({e.problem_id for e in episodes} - problems.keys())
    if missing:
        raise ValueError(f"episodes name problems not in the split: {', '.join(missing[:3])}; check split=")
    return scorer.scores((problems[e.problem_id], e.turns[-1].code) for e in episodes)


def run(config: RelabelStageConfig, scorer: Scorer | None = None) -> dict[str, Any]:
    """Run the stage unless complete; returns its metrics. `scorer` replaces the verifier."""
    layout = artifacts.RunLayout(config.run_dir)
    out = Path(config.out_dir or layout.relabel(config.iteration))
    return artifacts.run_stage(out, config, lambda logger: _relabel(config, layout, out, scorer))


def _relabel(config: RelabelStageConfig, layout: artifacts.RunLayout, out: Path, scorer: Scorer | None
             ) -> artifacts.StageOutput:
    rollouts = layout.rollouts(config.iteration)
    if artifacts.read_manifest(rollouts) is None:
        raise FileNotFoundError(f"{rollouts}: rollouts of iteration {config.iteration} not complete; "
                                "run pipelines/collect_rollouts.py first")
    episodes = read_records(rollouts / "episodes", Episode)
    inputs: dict[str, str | Path] = {"episodes": rollouts / "episodes"}
    scores: Scores = {}
    if config.needs_verifier():
        if scorer is None:
            path = Path(config.verifier or layout.model(layout.verifier(config.iteration)))
            artifacts.require(path, "verifier", "pipelines/train_verifier.py")
            scorer = load_scorer(str(path), config.model)
            inputs["verifier"] = path
        split = artifacts.require(layout.problems(config.split), f"problem split '{config.split}'",
                                  "pipelines/prepare.py")
        problems = {p.id: p for p in read_records(split, Problem)}
        scores = final_code_scores(episodes, problems, scorer)
    examples = relabel(episodes, scores, config.relabel)
    write_records(examples, out / EXAMPLES, SFTExample)
    metrics = relabel_stats(episodes, examples)
    log.info("relabel (%s): %s", config.relabel.mode.value, metrics)
    return artifacts.StageOutput(inputs, [EXAMPLES], metrics)
