"""The main job: the whole muCode loop as a plan of stages, run in this process.

    python pipelines/expert_iteration.py                      # embedded default, tiny model, CPU
    python pipelines/expert_iteration.py run_dir=runs/a iterations=3 verifier.loss=bce relabel.mode=rft
    python pipelines/expert_iteration.py run_dir=runs/mbpp task=mbpp task.path=data/mbpp.jsonl \
        model=hub model.name_or_path=meta-llama/Llama-3.2-1B-Instruct
    python -m mucode.slurm --shards 8 run_dir=runs/x ...     # the same plan as chained Slurm jobs

`plan(config)` is pure: it returns every stage in order with its config and the stages it needs
(folders under run_dir; artifacts.RunLayout):
    prepare              problems/<split> (and problems-<task>/ for the other tasks of eval.tasks), and
                         base/ (the tiny model + tokenizer, tiny default only)
    warmup               generator 0: SFT of the tiny base on the warm-up references (a pretrained
                         model is its own generator 0)
    for i in 1..M:
      iter{i}/rollouts   K episodes x T turns per problem with generator i-1
      iter{i}/verifier   R_i trained from generator 0 on the rollouts of iterations 1..i
      iter{i}/relabel    the local-search expert's targets for iteration i's episodes
      iter{i}/sft        generator i: SFT from generator 0 on the relabeled data of iterations 1..i,
                         plus warm-up references replayed 1:1 (where the task has them)
    iter{M+1}/rollouts   with final_rollouts=true: episodes of generator M, and
    final_verifier       a verifier trained on every rollout (otherwise the final verifier is R_M)
    eval/<name>          greedy + Best-of-N (all selectors, final verifier) for base, iter1..iterM, on the
                         run's task; eval-<task>/<name> on each other task of eval.tasks
    report               summary.json, report.md and the *.png plots, in run_dir
The main job runs the plan here; mucode.slurm submits the same plan as jobs. Each stage writes
`manifest.json` last; a complete stage is skipped, so a killed run resumes where it stopped, and with
the same seed it ends with the same metrics as a run never interrupted.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mucode import artifacts, recipes
from mucode.models import TINY, ModelConfig
from mucode.relabel import RelabelConfig
from mucode.rollouts import RolloutRecipe
from mucode.sandbox import SandboxConfig
from mucode.search import EvalRecipe
from mucode.sft import GeneratorRecipe
from mucode.stages import GENERATOR0, PREVIOUS
from mucode.stages.collect_rollouts import CollectRolloutsConfig
from mucode.stages.evaluate import EvaluateConfig
from mucode.stages.prepare import PrepareConfig
from mucode.stages.relabel import RelabelStageConfig
from mucode.stages.report import ReportConfig
from mucode.stages.train_generator import TrainGeneratorConfig
from mucode.stages.train_verifier import TrainVerifierConfig
from mucode.stages.warm_start import WarmStartConfig
from mucode.tasks import TaskConfig, TaskName, split_names
from mucode.tracking import TrackingConfig
from mucode.training import TrainConfig
from mucode.verifier import VerifierRecipe

log = logging.getLogger(__name__)


@dataclass
class ExpertIterationConfig:
    """The main job: the whole muCode loop on one task with one base model."""

    run_dir: str = "runs/default"
    """Where every stage writes its folder; rerunning with the same run_dir resumes."""
    seed: int = 0
    """Seed of rollout sampling, the verifier's problem split and pairs (the warm start, training
    data order and evaluation sampling have their own seeds, in their recipes)."""
    iterations: int = 2
    """M: generator iterations."""
    final_rollouts: bool = False
    """Collect rollouts of generator M too and train the final verifier on every rollout; when
    false, generators are evaluated with R_M (trained on the rollouts of generators 0..M-1)."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """The task suite and its splits."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model of the generator and the verifier."""
    warmup: TrainConfig = field(default_factory=recipes.warm_start)
    """Warm start recipe (tiny base only)."""
    rollout: RolloutRecipe = field(default_factory=recipes.rollouts)
    """K episodes x T turns on `problems_per_iteration` fresh train problems per iteration, sampling."""
    verifier: VerifierRecipe = field(default_factory=recipes.verifier)
    """Verifier training."""
    relabel: RelabelConfig = field(default_factory=RelabelConfig)
    """The local-search expert (mode both | oracle | learned | rft | star)."""
    sft: GeneratorRecipe = field(default_factory=recipes.iteration_sft)
    """Generator 1..M training."""
    eval: EvalRecipe = field(default_factory=recipes.evaluation)
    """Final evaluation of every generator."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """Limits and isolation for all code execution."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """metrics.jsonl + wandb (offline by default); the group defaults to the run directory's name."""

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError(f"iterations={self.iterations} must be >= 0")


@dataclass
class Step:
    """One stage of the plan: what runs (`stage`: a module of mucode.stages, a pipelines/ script and
    a conf/ YAML of that name), with which config, after which steps."""

    name: str
    """The step's folder under run_dir ("warmup", "iter1/rollouts", "eval/base"), or its stage name."""
    stage: str
    """The stage that runs it (config.STAGES)."""
    config: Any
    """The stage's config, as the main job passes it (the Slurm submitter turns it into overrides)."""
    needs: list[str]
    """Names of the steps whose outputs it reads: it runs after them."""


def plan(config: ExpertIterationConfig) -> list[Step]:
    """Every stage of the main job in order, with its config and the steps it needs (pure: it reads
    nothing but the task's split names, which for task=jsonl come from its folder)."""
    c, layout = config, artifacts.RunLayout(config.run_dir)
    tracking = dataclasses.replace(c.tracking, group=c.tracking.group or Path(c.run_dir).name)
    if "train" not in (splits := split_names(c.task)):
        fix = ("give task.path a folder holding train.jsonl and test.jsonl" if c.task.name is TaskName.jsonl else
               f"train on another task and evaluate on this one: task=mbpp eval.tasks=[mbpp,{c.task.name.value}]")
        raise ValueError(f"task={c.task.name.value} has no train split to roll out on (its splits: "
                         f"{', '.join(splits)}); {fix}")
    split = "train"
    common = dict(run_dir=c.run_dir, model=c.model, tracking=tracking)  # every stage logs to the run's group
    steps = [Step("prepare", "prepare", PrepareConfig(task=c.task, eval_tasks=c.eval.tasks, **common), [])]
    generators = ["prepare"]  # the step that makes generator i (a pretrained model: prepare)
    if c.model.name_or_path == TINY:
        steps.append(Step("warmup", "warm_start",
                          WarmStartConfig(task=c.task, warmup=c.warmup, **common), ["prepare"]))
        generators = ["warmup"]

    def rollouts(i: int) -> Step:
        return Step(f"iter{i}/rollouts", "collect_rollouts", CollectRolloutsConfig(
            iteration=i, split=split, seed=c.seed, rollout=c.rollout, sandbox=c.sandbox, **common),
            [generators[i - 1]])

    def verifier(i: int, name: str, out_dir: str | None) -> Step:
        return Step(name, "train_verifier", TrainVerifierConfig(
            iteration=i, out_dir=out_dir, split=split, seed=c.seed, verifier=c.verifier, sandbox=c.sandbox,
            **common),
            [generators[0], *(f"iter{j}/rollouts" for j in range(1, i + 1))])

    for i in range(1, c.iterations + 1):
        steps += [rollouts(i), verifier(i, f"iter{i}/verifier", None)]
        steps.append(Step(f"iter{i}/relabel", "relabel", RelabelStageConfig(
            iteration=i, split=split, relabel=c.relabel, **common), [f"iter{i}/rollouts", f"iter{i}/verifier"]))
        init = {GENERATOR0: generators[:1], PREVIOUS: generators[i - 1:i]}.get(c.sft.init, [])
        steps.append(Step(f"iter{i}/sft", "train_generator", TrainGeneratorConfig(
            iteration=i, task=c.task, sft=c.sft, **common),
            [*init, *(f"iter{j}/relabel" for j in range(1, i + 1))]))
        generators.append(f"iter{i}/sft")
    final = layout.verifier(c.iterations) if c.iterations else None  # R_M: trained on rollouts 1..M
    if c.final_rollouts:
        final = layout.final_verifier
        steps += [rollouts(c.iterations + 1),
                  verifier(c.iterations + 1, layout.stage_name(final), str(final))]
    needs_final = [layout.stage_name(final)] if final else []
    evals = []
    for i, made_by in enumerate(generators):
        name = layout.generator_name(i)
        recipe = c.eval if i == c.iterations else dataclasses.replace(c.eval, candidates_sweep=[])
        steps.append(Step(f"eval/{name}", "evaluate", EvaluateConfig(
            name=name, verifier=str(layout.model(final)) if final else None, task=c.task, eval=recipe,
            sandbox=c.sandbox, **common), [made_by, *needs_final]))
        evals.append(steps[-1].name)
    steps.append(Step("report", "report", ReportConfig(run_dir=c.run_dir), evals))
    return steps


def run_step(step: Step) -> Any:
    """Run one step's stage in this process."""
    return importlib.import_module(f"mucode.stages.{step.stage}").run(step.config)


class _Clock:
    """Wall seconds of the whole run across resumed invocations, saved after every stage (a stage
    killed half-way loses only its own partial time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.before = json.loads(path.read_text())["wall_seconds"] if path.is_file() else 0.0
        self.start = time.perf_counter()
        self.total = self.before

    def tick(self) -> float:
        self.total = self.before + time.perf_counter() - self.start
        artifacts.atomic_write_text(self.path, json.dumps({"wall_seconds": self.total}))
        return self.total


def run(config: ExpertIterationConfig) -> None:
    """Run every stage of the plan that is not complete yet."""
    steps = plan(config)
    clock = _Clock(artifacts.RunLayout(config.run_dir).clock)
    torch.manual_seed(config.seed)
    for step in steps:
        run_step(step)
        clock.tick()  # saved before the report, which reads the run's wall time from it
    log.info("run %s done: %.1f s in all", config.run_dir, clock.total)
