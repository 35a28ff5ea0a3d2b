"""The expert-iteration driver (the main job): every stage of the muCode loop, each in its own folder.

    python pipelines/expert_iteration.py                      # embedded default, tiny model, CPU
    python pipelines/expert_iteration.py run_dir=runs/a iterations=3 verifier.loss=bce relabel.mode=rft
    python pipelines/expert_iteration.py run_dir=runs/mbpp task=mbpp task.path=data/mbpp.jsonl \
        model=hub model.name_or_path=meta-llama/Llama-3.2-1B-Instruct

Stages, in order (folders under run_dir; see artifacts.RunLayout):
    problems/<split>     the task's splits as Problem datasets
    base/                the tiny model + tokenizer built offline (only when model is the tiny default)
    warmup/              warm start: SFT of the tiny base on the warm-up split's references = generator 0
                         (a pretrained model is its own generator 0)
    for i in 1..M:
      iter{i}/rollouts   K episodes x T turns per problem with generator i-1
      iter{i}/verifier   R_i trained from the base on the rollouts of iterations 1..i
      iter{i}/relabel    the local-search expert's targets for iteration i's episodes
      iter{i}/sft        generator i: SFT from generator 0 on the relabeled data of iterations 1..i,
                         plus warm-up references replayed 1:1 (embedded suite)
    iter{M+1}/rollouts   with final_rollouts=true: episodes of generator M, and
    final_verifier/      a verifier trained on every rollout (otherwise the final verifier is R_M)
    eval/<name>          greedy + Best-of-N (all selectors, final verifier) for base, iter1..iterM
    report.md, summary.json, plots/   (mucode.report)

Each stage writes `manifest.json` last (input hashes, outputs, metrics, seconds); a stage with a
complete manifest is skipped on rerun, so a killed run resumes where it stopped, and with the same
seed it ends with the same metrics as a run never interrupted (every stage is seeded; training
resumes from its checkpoint, rollouts from their last finished chunk).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mucode import artifacts
from mucode.evaluate import EvaluateConfig, evaluate
from mucode.generation import SamplingConfig
from mucode.models import TINY, ModelConfig, build_tiny_model, build_tokenizer
from mucode.records import Problem, read_records, write_records
from mucode.relabel import RelabelConfig, RelabelStageConfig, relabel_stage
from mucode.rollouts import CollectRolloutsConfig, RolloutConfig, collect_rollouts
from mucode.sandbox import SandboxConfig
from mucode.search import SearchConfig
from mucode.sft import TrainGeneratorConfig, train_generator
from mucode.tasks import TaskConfig, load_problems, split_names
from mucode.tracking import TrackingConfig
from mucode.training import TrainConfig
from mucode.verifier import TrainVerifierConfig, VerifierLoss, default_recipe, train_verifier

log = logging.getLogger(__name__)


def _iteration_sft() -> TrainConfig:
    """Generator i's recipe: a short fine-tune of generator 0 (feasibility: ~170 steps at 5e-4)."""
    return TrainConfig(lr=5e-4, warmup_steps=10, max_steps=170, checkpoint_every=50, sort_window=0)


@dataclass
class VerifierRecipe:
    """How each verifier is trained (the paths are the driver's)."""

    loss: VerifierLoss = VerifierLoss.bt
    """bt (Bradley-Terry, the paper's default) or bce."""
    pairs_per_problem: int = 32
    """BT: most (positive, negative) pairs per problem."""
    l2: float = 1e-3
    """BT: weight of the mean squared score."""
    valid_fraction: float = 0.1
    """Share of problems held out for AUC / accuracy / calibration."""
    train: TrainConfig = field(default_factory=default_recipe)
    """The optimization recipe."""


@dataclass
class GeneratorRecipe:
    """How generators 1..M are trained."""

    init: str = "generator0"
    """generator0 (the warm start, or the pretrained model) or previous (generator i-1)."""
    replay: float | None = 1.0
    """Warm-up references mixed in per relabeled example (embedded suite; null: all of them)."""
    train: TrainConfig = field(default_factory=_iteration_sft)
    """The optimization recipe."""

    def __post_init__(self) -> None:
        if self.init not in ("generator0", "previous"):
            raise ValueError(f"sft.init={self.init!r}; choose generator0 or previous")


@dataclass
class EvalRecipe:
    """The final evaluation of every generator."""

    split: str = "test"
    """Problem split evaluated (held out from everything else)."""
    limit: int | None = 300
    """Evaluate only the split's first `limit` problems (null: all)."""
    search: SearchConfig = field(default_factory=lambda: SearchConfig(
        searches=1, candidates=4, turns=3, sampling=SamplingConfig(temperature=0.8, max_new_tokens=96)))
    """S searches x N candidates x T turns for Best-of-N (greedy uses T)."""
    candidates_sweep: list[int] = field(default_factory=list)
    """Extra pt+lv BoN runs per N for the final generator (accuracy vs N)."""


@dataclass
class ExpertIterationConfig:
    """The main job: the whole muCode loop on one task with one base model."""

    run_dir: str = "runs/default"
    """Where every stage writes its folder; rerunning with the same run_dir resumes."""
    seed: int = 0
    """Seed for model init, sampling, data order and splits."""
    iterations: int = 2
    """M: generator iterations."""
    final_rollouts: bool = False
    """Collect rollouts of generator M too and train the final verifier on every rollout; when
    false, generators are evaluated with R_M (trained on the rollouts of generators 0..M-1)."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """The task suite and its splits."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model of the generator and the verifier."""
    warmup: TrainConfig = field(default_factory=TrainConfig)
    """Warm start recipe (tiny base only): defaults 700 steps x 2048 tokens at 4e-3."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """K episodes x T turns on `problems_per_iteration` fresh train problems per iteration."""
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.8, max_new_tokens=96))
    """Rollout sampling."""
    verifier: VerifierRecipe = field(default_factory=VerifierRecipe)
    """Verifier training."""
    relabel: RelabelConfig = field(default_factory=RelabelConfig)
    """The local-search expert (mode both | oracle | learned | rft | star)."""
    sft: GeneratorRecipe = field(default_factory=GeneratorRecipe)
    """Generator 1..M training."""
    eval: EvalRecipe = field(default_factory=EvalRecipe)
    """Final evaluation."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """Limits and isolation for all code execution."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """metrics.jsonl + wandb (offline by default)."""

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError(f"iterations={self.iterations} must be >= 0")


def prepare_problems(config: ExpertIterationConfig) -> dict[str, list[Problem]]:
    """Stage `problems`: every split of the task written as a Problem dataset."""
    stage = Path(config.run_dir) / "problems"
    if artifacts.read_manifest(stage) is None:
        start = time.perf_counter()
        splits = {name: load_problems(config.task, name) for name in split_names(config.task)}
        for name, problems in splits.items():
            write_records(problems, stage / name, Problem)
        sizes = {name: len(p) for name, p in splits.items()}
        artifacts.write_manifest(stage, {}, list(splits), {"sizes": sizes}, time.perf_counter() - start)
        log.info("problems: %s", sizes)
    return {name: read_records(stage / name, Problem) for name in split_names(config.task)}


def prepare_base(config: ExpertIterationConfig, problems: dict[str, list[Problem]]) -> str:
    """Stage `base`: build the tiny model + tokenizer offline, or name the configured model."""
    if config.model.name_or_path != TINY:
        return config.model.name_or_path
    stage = Path(config.run_dir) / "base"
    if artifacts.read_manifest(stage) is None:
        start = time.perf_counter()
        corpus = tokenizer_corpus(problems.get("warmup") or problems.get("train") or [])
        tokenizer = build_tokenizer(corpus, config.model.tiny.vocab_size)
        model = build_tiny_model(config.model.tiny, tokenizer)
        with artifacts.atomic_dir(stage / "model") as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        n_params = sum(p.numel() for p in model.parameters())
        metrics = {"parameters": n_params, "vocab_size": len(tokenizer)}
        artifacts.write_manifest(stage, {}, ["model"], metrics, time.perf_counter() - start)
        log.info("base: tiny model with %d parameters, vocabulary %d", n_params, len(tokenizer))
    return str(stage / "model")


def tokenizer_corpus(problems: list[Problem]) -> list[str]:
    """Text the tiny tokenizer is trained on: statements, tests, references and feedback phrases."""
    texts = [p.prompt + "\n" + "\n".join(p.tests) + "\n" + (p.reference or "") for p in problems]
    feedback = [
        "Failed: assert f(1) == 2\nf(1) returned 3", "raised TypeError: unsupported operand",
        "Error: SyntaxError: invalid syntax (line 2)", "Timed out after 3 s", "Memory limit exceeded",
        "```python\ndef f(x):\n    return x\n```", "Tests:\nassert f([1, 2]) == [2, 4]",
    ]
    return texts + feedback * 50


class Driver:
    """Builds each stage's config from the main job's and runs the stages in order."""

    def __init__(self, config: ExpertIterationConfig) -> None:
        self.config = config
        self.layout = artifacts.RunLayout(Path(config.run_dir))
        if config.tracking.group is None:
            config.tracking.group = Path(config.run_dir).name

    @property
    def tiny(self) -> bool:
        return self.config.model.name_or_path == TINY

    def generator(self, i: int) -> str:
        return self.layout.generator(i, self.config.model.name_or_path)

    def warm_start(self) -> None:
        if not self.tiny:
            return
        c = self.config
        train_generator(TrainGeneratorConfig(
            run_dir=c.run_dir, out_dir=str(self.layout.warmup), warmup=True, task=c.task, model=c.model,
            train=c.warmup, tracking=c.tracking))

    def rollouts(self, i: int) -> None:
        c = self.config
        collect_rollouts(CollectRolloutsConfig(
            run_dir=c.run_dir, iteration=i, split=self.rollout_split, generator=self.generator(i - 1),
            seed=c.seed, model=c.model, rollout=c.rollout, sampling=c.sampling, sandbox=c.sandbox))

    @property
    def rollout_split(self) -> str:
        return "train" if "train" in split_names(self.config.task) else "test"

    def verifier(self, i: int, out: Path) -> None:
        c, r = self.config, self.config.verifier
        inputs = [str(self.layout.rollouts(j)) for j in range(1, i + 1)]
        train_verifier(TrainVerifierConfig(
            run_dir=c.run_dir, out_dir=str(out), inputs=inputs,
            problems=str(self.layout.problems(self.rollout_split)), init="base", loss=r.loss,
            pairs_per_problem=r.pairs_per_problem, l2=r.l2, valid_fraction=r.valid_fraction, seed=c.seed,
            model=c.model, train=r.train, tracking=c.tracking))

    def relabel(self, i: int) -> None:
        c = self.config
        relabel_stage(RelabelStageConfig(
            run_dir=c.run_dir, iteration=i, split=self.rollout_split,
            verifier=str(self.layout.verifier(i) / "model"), model=c.model, relabel=c.relabel))

    def sft(self, i: int) -> None:
        c, r = self.config, self.config.sft
        init = self.generator(0 if r.init == "generator0" else i - 1)
        has_warmup = self.tiny or "warmup" in split_names(c.task)
        train_generator(TrainGeneratorConfig(
            run_dir=c.run_dir, out_dir=str(self.layout.sft(i)),
            inputs=[str(self.layout.relabel(j) / "examples") for j in range(1, i + 1)],
            warmup=has_warmup and r.replay != 0, replay=r.replay, init=init, task=c.task, model=c.model,
            train=r.train, tracking=c.tracking))

    def evaluate(self, name: str, generator: str) -> dict:
        c, e = self.config, self.config.eval
        verifier = self.final_verifier
        return evaluate(EvaluateConfig(
            run_dir=c.run_dir, name=name, generator=generator,
            verifier=str(verifier) if verifier is not None else None, split=e.split, limit=e.limit,
            out_dir=str(self.layout.root / "eval" / name),
            candidates_sweep=e.candidates_sweep if name == self.names[-1] else [], model=c.model,
            search=e.search, sandbox=c.sandbox))

    @property
    def final_verifier(self) -> Path | None:
        """The verifier every generator is evaluated with (None when there is none: M = 0)."""
        if self.config.final_rollouts:
            return self.layout.root / "final_verifier" / "model"
        return self.layout.verifier(self.config.iterations) / "model" if self.config.iterations else None

    @property
    def names(self) -> list[str]:
        return ["base"] + [f"iter{i}" for i in range(1, self.config.iterations + 1)]

    def run(self) -> None:
        c = self.config
        clock = _Clock(self.layout.root / "driver.json")
        torch.manual_seed(c.seed)
        problems = prepare_problems(c)
        prepare_base(c, problems)
        clock.tick()
        self.warm_start()
        clock.tick()
        for i in range(1, c.iterations + 1):
            for stage in (self.rollouts, self.verifier_i, self.relabel, self.sft):
                stage(i)
                clock.tick()
        if c.final_rollouts:  # else the final verifier is R_M, already trained on rollouts 1..M
            self.rollouts(c.iterations + 1)
            self.verifier(c.iterations + 1, self.layout.root / "final_verifier")
            clock.tick()
        for i, name in enumerate(self.names):
            self.evaluate(name, self.generator(i))
            clock.tick()
        from mucode.report import write_report

        write_report(c.run_dir, wall_seconds=clock.tick())
        log.info("run %s done: %.1f s in all", c.run_dir, clock.total)

    def verifier_i(self, i: int) -> None:
        self.verifier(i, self.layout.verifier(i))


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
    """Run every stage that is not complete yet."""
    Driver(config).run()
