"""Stage train_verifier: R_i, trained from generator 0 on every rollout so far (a fresh scalar head, or
scored through the LM head: verifier.head, see mucode.verifier).

    python pipelines/train_verifier.py run_dir=runs/default                        # R_1, CPU
    python pipelines/train_verifier.py run_dir=runs/default iteration=2 verifier.loss=bce \
        out_dir=runs/default/iter2/verifier-bce     # another loss, beside the main job's R_2
    python pipelines/train_verifier.py run_dir=runs/default verifier.head=ratio verifier.sft_weight=0.1 \
        out_dir=runs/default/iter1/verifier-ratio   # the DPO-style implicit reward against generator 0
    python pipelines/train_verifier.py run_dir=runs/default verifier.mutants=4 \
        out_dir=runs/default/iter1/verifier-mutants   # + up to 4 sandbox-labelled mutants per correct code
    torchrun --nproc_per_node 4 pipelines/train_verifier.py run_dir=runs/x model=hub \
        verifier.train.deepspeed=conf/deepspeed/zero2.json verifier.train.precision=bf16   # multi-GPU

Reads the rollouts of iterations 1..i (or `inputs`), the problem split they were collected on and
the starting weights (generator 0: the warm start for the tiny default); writes out_dir/model
(AutoModelForSequenceClassification, num_labels=1, for the scalar head; AutoModelForCausalLM with
mucode_verifier.json naming the head, beta and the reference, for the LM heads),
metrics.jsonl, config.yaml and manifest.json with the held-out validation metrics
(mucode.verifier.validation_metrics). A killed run resumes from out_dir/checkpoints; a complete stage
is skipped. The starting weights' log-probs of the training codes (the ratio head's reference, the
loglik head's starting score) are computed once before training, on each process. With verifier.mutants
> 0 the main process also runs one-edit mutants of the training problems' correct codes in the sandbox
(`sandbox` limits) and adds them, labelled by the tests, to the training examples (never to the
validation problems); the other processes receive them, so every rank trains on the same data
(mucode.mutants; metrics `mutants`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mucode import artifacts, lm_verifier, recipes
from mucode.lm_verifier import SavedHead, VerifierHead, code_rows, reference_for
from mucode.models import ModelConfig, load_generator, load_verifier, training_copy
from mucode.mutants import mutant_examples
from mucode.records import Episode, Problem, VerifierExample, read_records
from mucode.sandbox import Sandbox, SandboxConfig
from mucode.stages import GENERATOR0, init_weights
from mucode.tracking import MetricLogger, TrackingConfig
from mucode.training import process_state, train
from mucode.verifier import (
    VerifierLoss, VerifierRecipe, bce_step, bt_step, collate_pairs, collate_pointwise, examples_from_episodes,
    lm_step, load_scorer, split_by_problem, tokenize, training_items, validation_metrics,
)
from mucode.vllm_engine import release_engines

log = logging.getLogger(__name__)


@dataclass
class TrainVerifierConfig:
    """Stage: train the verifier of iteration i on the rollouts of iterations 1..i."""

    run_dir: str = "runs/default"
    """The run directory (see artifacts.RunLayout)."""
    iteration: int = 1
    """i: the verifier R_i (the main job's final verifier is iteration M+1 into final_verifier/)."""
    out_dir: str | None = None
    """Where the stage writes model/, metrics.jsonl, config.yaml and manifest.json; null = iter{i}/verifier."""
    inputs: list[str] | None = None
    """Rollout folders (a rollouts stage, or an Episode dataset), aggregated; null = iterations 1..i."""
    split: str = "train"
    """The problem split the rollouts were collected on (for the turn-1 problem text)."""
    init: str = GENERATOR0
    """Starting weights: generator0 (the warm start for the tiny default, else the base model), base,
    previous (generator i-1) or a saved model folder."""
    seed: int = 0
    """Seed of the problem split and the pair sampling (verifier.train.seed orders the data)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model (dtype, chat template; name_or_path when it is not the tiny default)."""
    verifier: VerifierRecipe = field(default_factory=recipes.verifier)
    """Loss, pairs, validation share and optimization recipe."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """Limits for running the mutants' tests (verifier.mutants > 0)."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """metrics.jsonl + wandb."""

    def __post_init__(self) -> None:
        if self.iteration < 1:
            raise ValueError(f"iteration={self.iteration} must be >= 1")
        if self.inputs is not None and not self.inputs:
            raise ValueError("inputs is empty; give the rollout folders, e.g. inputs=[runs/x/iter1/rollouts], or null")
        if not self.init:
            raise ValueError('init is empty; use "generator0", "base" or a saved model folder')


def rollout_dataset(path: str | Path) -> Path:
    """The Episode dataset of an input: a complete rollouts stage folder, or the dataset itself."""
    path = Path(path)
    if (path / "dataset_info.json").is_file():
        return path
    if artifacts.read_manifest(path) is None or not (path / "episodes").is_dir():
        raise FileNotFoundError(f"{path}: no rollouts here; run pipelines/collect_rollouts.py first or point to them")
    return path / "episodes"


def load_data(config: TrainVerifierConfig, inputs: list[str], episodes: list[Episode] | None = None,
              problems: list[Problem] | None = None
              ) -> tuple[list[VerifierExample], dict[str, Problem], dict[str, Path]]:
    """Labeled examples from the episodes (read from `inputs` unless given), the split's problems by id
    and the input paths read."""
    read: dict[str, Path] = {}
    if episodes is None:
        paths = [rollout_dataset(p) for p in inputs]
        episodes = [e for p in paths for e in read_records(p, Episode)]
        read.update({f"input{i}": p for i, p in enumerate(paths)})
    split = artifacts.RunLayout(config.run_dir).problems(config.split)
    if problems is None:
        problems = read_records(artifacts.require(split, "problem split", "pipelines/prepare.py"), Problem)
        read["problems"] = split
    by_id = {p.id: p for p in problems}
    missing = sorted({e.problem_id for e in episodes} - by_id.keys())
    if missing:
        raise ValueError(f"split={config.split}: {len(missing)} rollout problems are not in {split} "
                         f"(first: {missing[0]}); set split= to the split the rollouts were collected on")
    examples = examples_from_episodes(episodes, by_id)
    if not examples:
        raise ValueError(f"inputs={inputs}: no episodes; nothing to train the verifier on")
    return examples, by_id, read


def add_mutants(config: TrainVerifierConfig, train_ex: list[VerifierExample], problems: dict[str, Problem],
                main: bool) -> tuple[list[VerifierExample], dict[str, Any]]:
    """train_ex + up to verifier.mutants sandbox-labelled mutants of each correct code (mucode.mutants), and
    their counts. The main process runs them; with several processes it sends them to the others (a
    program near the time limit could be labelled differently on two ranks)."""
    added: list[Any] = [None]
    if main:
        with Sandbox(config.sandbox) as sandbox:
            added = [mutant_examples(train_ex, problems, config.verifier.mutants, config.seed, sandbox)]
    if process_state(config.verifier.train).num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(added)
    mutants, counts = added[0]
    log.info("verifier mutants: %d made from %d correct codes, %d run, %d failed (new negatives)",
             counts["made"], counts["sources"], counts["run"], counts["failed"])
    return train_ex + mutants, counts


def run(config: TrainVerifierConfig, episodes: list[Episode] | None = None,
        problems: list[Problem] | None = None) -> dict[str, Any]:
    """Run the stage (skipped when complete); returns the manifest's metrics: train (the TrainResult),
    valid (held-out verifier metrics; an undefined one, such as AUC with one class, is None) and sizes."""
    layout = artifacts.RunLayout(config.run_dir)
    out_dir = Path(config.out_dir or layout.verifier(config.iteration))
    main = process_state(config.verifier.train).is_main_process
    return artifacts.run_stage(
        out_dir, config, lambda logger: _train(config, layout, out_dir, main, logger, episodes, problems),
        main_process=main)


def _train(config: TrainVerifierConfig, layout: artifacts.RunLayout, out_dir: Path, main: bool, logger: MetricLogger,
           episodes: list[Episode] | None, problems: list[Problem] | None) -> artifacts.StageOutput:
    recipe = config.verifier
    init = init_weights(layout, config.init, config.model, config.iteration)
    inputs = config.inputs or [str(layout.rollouts(j)) for j in range(1, config.iteration + 1)]
    examples, by_id, read = load_data(config, inputs, episodes, problems)
    train_ex, valid_ex = split_by_problem(examples, recipe.valid_fraction, config.seed)
    mutant_counts = None
    if recipe.mutants:  # after the split: validation problems are never mutated
        train_ex, mutant_counts = add_mutants(config, train_ex, by_id, main)
    release_engines()  # a vLLM engine of this process gives its GPU memory back before training
    bce = recipe.loss is VerifierLoss.bce
    if recipe.head is VerifierHead.scalar:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.train.seed)  # the fresh head's initialisation
            model, tokenizer = load_verifier(init, training_copy(config.model))
        ids = tokenize(tokenizer, train_ex, recipe.train.max_length)
        items, lengths = training_items(train_ex, ids, recipe, config.seed)
        collate = functools.partial(collate_pointwise if bce else collate_pairs, pad_id=tokenizer.pad_token_id)
        loss_fn = bce_step if bce else functools.partial(bt_step, l2=recipe.l2)
    else:  # the LM heads: the generator's own weights, the reference's log-probs computed once here
        model, tokenizer = load_generator(training_copy(config.model), init)
        rows = code_rows(model, tokenizer, train_ex, recipe.head, recipe.train.max_length)
        ids = [r.tokens.input_ids for r in rows]
        items, lengths = training_items(train_ex, rows, recipe, config.seed, lengths=[len(i) for i in ids])
        collate = functools.partial(lm_verifier.collate_pointwise if bce else lm_verifier.collate_pairs,
                                    pad_id=tokenizer.pad_token_id)
        loss_fn = functools.partial(lm_step, recipe=recipe)
    tokenizer.model_max_length = recipe.train.max_length  # saved with it: scoring cuts inputs where training did
    metrics: dict[str, Any] = {"sizes": _sizes(train_ex, valid_ex, items, ids, recipe.train.max_length)}
    if mutant_counts is not None:
        metrics["mutants"] = mutant_counts
    result = train(model, items, lengths, collate, loss_fn, recipe.train, out_dir, logger, tokenizer)
    metrics["train"] = dataclasses.asdict(result)
    if main and recipe.head is not VerifierHead.scalar:  # load_scorer reads the head from the folder
        model_dir = layout.model(out_dir)
        reference = reference_for(init, model_dir) if recipe.head is VerifierHead.ratio else None
        SavedHead(recipe.head, recipe.beta, reference).write(model_dir)
    if main:  # the validation metrics reach metrics.jsonl and wandb with the stage's final row (run_stage)
        scorer = load_scorer(layout.model(out_dir), config.model)
        metrics["valid"] = validation_metrics(scorer, valid_ex)
        log.info("verifier (%s): %d steps, %.0f s; valid %s", recipe.loss.value, result.steps, result.seconds,
                 metrics["valid"])
    if os.path.isdir(init):
        read["init"] = Path(init)
    return artifacts.StageOutput(read, [artifacts.MODEL], metrics)


def _sizes(train_ex: list[VerifierExample], valid_ex: list[VerifierExample], items: list[Any],
           ids: list[list[int]], max_length: int) -> dict[str, int]:
    return {
        "train_examples": len(train_ex), "train_positives": sum(ex.label for ex in train_ex),
        "train_problems": len({ex.problem_id for ex in train_ex}), "train_items": len(items),
        "truncated": sum(len(i) >= max_length for i in ids),
        "valid_examples": len(valid_ex), "valid_problems": len({ex.problem_id for ex in valid_ex}),
    }
