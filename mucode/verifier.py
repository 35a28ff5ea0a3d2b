"""The learned verifier: data from episodes, BCE and Bradley-Terry losses (pure), training, scoring.

    python pipelines/train_verifier.py run_dir=runs/default                     # iteration 1, CPU
    python pipelines/train_verifier.py run_dir=runs/x out_dir=runs/x/iter2/verifier \
        inputs=[runs/x/iter1/rollouts,runs/x/iter2/rollouts] loss=bce
    torchrun --nproc_per_node 4 pipelines/train_verifier.py run_dir=runs/x model=hub \
        train.deepspeed=conf/deepspeed/zero2.json                              # multi-GPU
    scorer = load_scorer("runs/x/iter1/verifier/model", ModelConfig())  # [(problem text, code)] -> logits

The verifier R(x, y) is the base LM with a fresh scalar head (AutoModelForSequenceClassification,
num_labels=1); its input is the problem as the generator sees it at turn 1 (statement + public
tests) and the candidate code, rendered with the chat template as a user turn and an assistant turn;
the score is read at the last non-pad token (the assistant turn's end token). For the tiny default the
"base" is the warm start (generator 0): the untrained tiny model cannot read code at all.

Labels come from the oracle: a code is positive iff it passes public and private tests. Every turn
of every episode is a candidate (intermediate failed turns are negatives); candidates are unique per
(problem, code) and aggregated over iterations. Problems, not examples, are split into train and a
held-out validation share, on which the stage reports AUC, within-problem pair accuracy, accuracy
(logit > 0), ECE and Best-of-N selection accuracy (mucode.metrics.verifier_metrics).

Losses (SPEC §1 step 2):
    BCE   pointwise binary cross-entropy on (x, y, label); a batch item is one example
    BT    per problem with both kinds, P sampled (positive, negative) pairs;
          -log sigmoid(r+ - r-) + lambda * mean(r^2)   (lambda default 1e-3); a batch item is a pair,
          drawn once per run (seeded), and its length for the token budget is twice its longer side

Limits: inputs longer than train.max_length are cut from the left (the code, at the end, is kept);
BT scores are not probabilities, so its accuracy and ECE (sigmoid of the logit) are only indicative.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from mucode import artifacts
from mucode.metrics import verifier_metrics
from mucode.models import TINY, ModelConfig, load_verifier, resolve_path
from mucode.prompts import format_code, problem_text
from mucode.records import Episode, Message, Problem, VerifierExample, read_records
from mucode.tracking import TrackingConfig, open_logger
from mucode.training import TrainConfig, process_state, train

if TYPE_CHECKING:
    from mucode.search import Scorer

log = logging.getLogger(__name__)

BASE = "base"


class VerifierLoss(str, Enum):
    """The verifier's training loss (member names equal values: OmegaConf reads enums by name)."""

    bce = "bce"
    bt = "bt"


def default_recipe() -> TrainConfig:
    """The verifier's optimization recipe: 2 epochs of the training items (the paper's 2 epochs), 4096
    tokens per batch, lr 1e-3.

    Epochs, not a fixed step count, because the data grows with every iteration: R_i is trained on the
    rollouts of iterations 1..i. Measured on the default run's rollouts (seed 0; BT, 2 threads):
    R_1 (500 problems, 1.4k pairs) 160 steps, 41 s, validation AUC 0.774 (80 steps: 0.778);
    R_2 (1,000 problems, 2.8k pairs) 328 steps, 82 s, AUC 0.751 / 0.702 (two train seeds; 80 steps, half
    an epoch: 0.629). BCE, 2 epochs: R_1 0.804, R_2 0.764. lr 1e-4 / 3e-4 / 3e-3 did not help.
    """
    return TrainConfig(lr=1e-3, warmup_steps=10, max_steps=0, epochs=2.0, batch_tokens=4096, max_length=1024,
                       checkpoint_every=50, sort_window=0)


@dataclass
class TrainVerifierConfig:
    """Stage: train the verifier on every rollout so far, from the base model with a fresh head."""

    run_dir: str = "runs/default"
    """The run directory (see artifacts.RunLayout)."""
    out_dir: str = "${run_dir}/iter1/verifier"
    """Where the stage writes model/, metrics.jsonl, config.yaml and manifest.json."""
    inputs: list[str] = field(default_factory=lambda: ["${run_dir}/iter1/rollouts"])
    """Rollout folders (collect_rollouts' iter{i}/rollouts, or an Episode dataset), aggregated."""
    problems: str = "${run_dir}/problems/train"
    """The Problem dataset the rollouts were collected on (for the turn-1 problem text)."""
    init: str = BASE
    """Starting weights: "base" (the warm start for the tiny model, else model.name_or_path) or a folder."""
    loss: VerifierLoss = VerifierLoss.bt
    """bt (Bradley-Terry on sampled pairs, the paper's default) or bce (pointwise)."""
    pairs_per_problem: int = 32
    """BT: most (positive, negative) pairs per training problem."""
    l2: float = 1e-3
    """BT: weight of the mean squared score, which keeps scores near 0."""
    valid_fraction: float = 0.1
    """Share of problems held out for the validation metrics."""
    seed: int = 0
    """Seed of the problem split and the pair sampling (train.seed orders the data)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model (dtype, chat template; name_or_path when it is not the tiny default)."""
    train: TrainConfig = field(default_factory=default_recipe)
    """The optimization recipe."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """metrics.jsonl + wandb."""

    def __post_init__(self) -> None:
        if self.loss not in {m.value for m in VerifierLoss}:
            raise ValueError(f"loss={self.loss!r}; choose one of bce, bt")
        self.loss = VerifierLoss(self.loss)
        if not self.inputs:
            raise ValueError("inputs is empty; give the rollout folders, e.g. inputs=[runs/x/iter1/rollouts]")
        if self.pairs_per_problem < 1:
            raise ValueError(f"pairs_per_problem={self.pairs_per_problem} must be >= 1")
        if self.l2 < 0:
            raise ValueError(f"l2={self.l2} must be >= 0")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction={self.valid_fraction} must be in [0, 1)")
        if not self.init:
            raise ValueError('init is empty; use "base" or a saved model folder')


def bce_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of logits `scores` [B] against 0/1 `labels` [B]."""
    return F.binary_cross_entropy_with_logits(scores.float(), labels.float())


def bt_loss(chosen: torch.Tensor, rejected: torch.Tensor, l2: float = 1e-3) -> torch.Tensor:
    """Bradley-Terry loss of paired scores [P] (positive, negative) plus l2 * mean(r^2) over both."""
    chosen, rejected = chosen.float(), rejected.float()
    return -F.logsigmoid(chosen - rejected).mean() + l2 * torch.cat([chosen, rejected]).pow(2).mean()


def examples_from_episodes(episodes: list[Episode], problems: dict[str, Problem]) -> list[VerifierExample]:
    """One example per unique (problem, code) over all turns of all episodes, labeled by the oracle.

    The iteration of an example is the first iteration that produced that code.
    """
    seen: dict[tuple[str, str], VerifierExample] = {}
    for e in sorted(episodes, key=lambda e: (e.iteration, e.problem_id, e.sample)):
        for t in e.turns:
            key = (e.problem_id, t.code)
            if key not in seen:
                text = problem_text(problems[e.problem_id])
                seen[key] = VerifierExample(e.problem_id, text, t.code, t.correct, e.iteration)
    return list(seen.values())


def split_by_problem(examples: list[VerifierExample], valid_fraction: float, seed: int
                     ) -> tuple[list[VerifierExample], list[VerifierExample]]:
    """(train, valid) with every problem wholly on one side; a seeded shuffle of problem ids."""
    ids = sorted({ex.problem_id for ex in examples})
    random.Random(seed).shuffle(ids)
    held = set(ids[: round(len(ids) * valid_fraction)])
    return [ex for ex in examples if ex.problem_id not in held], [ex for ex in examples if ex.problem_id in held]


def sample_pairs(examples: list[VerifierExample], pairs_per_problem: int, rng: random.Random
                 ) -> list[tuple[int, int]]:
    """(positive index, negative index) pairs: for each problem with both kinds, all pairs if there
    are at most `pairs_per_problem`, else that many drawn without replacement."""
    by_problem: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for i, ex in enumerate(examples):
        by_problem[ex.problem_id][0 if ex.label else 1].append(i)
    pairs: list[tuple[int, int]] = []
    for pid in sorted(by_problem):
        pos, neg = by_problem[pid]
        n_all = len(pos) * len(neg)
        if n_all == 0:
            continue
        flat = range(n_all) if n_all <= pairs_per_problem else rng.sample(range(n_all), pairs_per_problem)
        pairs += [(pos[k // len(neg)], neg[k % len(neg)]) for k in flat]
    return pairs


# ---------------------------------------------------------------------------------------------
# Training data: token ids, batches and the two loss steps


def tokenize(tokenizer, examples: Sequence[VerifierExample], max_length: int) -> list[list[int]]:
    """Token ids of each example's verifier text, cut from the left to max_length (as `score` cuts)."""
    if not examples:
        return []
    tokenizer.truncation_side = "left"
    texts = [verifier_text(tokenizer, ex.prompt, ex.code) for ex in examples]
    return tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=False)["input_ids"]


def pad_left(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), each [len(rows), longest], padded on the left like `score`."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids, mask


def collate_pointwise(items: list[tuple[list[int], bool]], pad_id: int) -> dict[str, torch.Tensor]:
    """BCE batch: input_ids, attention_mask [B, L] and labels [B] (float 0/1)."""
    ids, mask = pad_left([ids for ids, _ in items], pad_id)
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([float(y) for _, y in items])}


def collate_pairs(items: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """BT batch of P pairs: input_ids, attention_mask [2P, L], the P chosen rows first, then the rejected."""
    ids, mask = pad_left([c for c, _ in items] + [r for _, r in items], pad_id)
    return {"input_ids": ids, "attention_mask": mask}


def _scores(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B] logits, read by the model at each row's last non-pad token."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)


def bce_step(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """BCE over a pointwise batch; metric: accuracy at logit 0."""
    scores = _scores(model, batch)
    with torch.no_grad():
        accuracy = ((scores > 0) == batch["labels"].bool()).float().mean()
    return bce_loss(scores, batch["labels"]), {"accuracy": accuracy}


def bt_step(model, batch: dict[str, torch.Tensor], l2: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Bradley-Terry over a batch of pairs; metric: share of pairs ordered right."""
    chosen, rejected = _scores(model, batch).chunk(2)
    with torch.no_grad():
        pair_accuracy = (chosen > rejected).float().mean()
    return bt_loss(chosen, rejected, l2), {"pair_accuracy": pair_accuracy}


def training_items(examples: list[VerifierExample], ids: list[list[int]], config: TrainVerifierConfig
                   ) -> tuple[list[Any], list[int]]:
    """(items, lengths) for the training loop: (ids, label) for BCE; (chosen ids, rejected ids) pairs
    for BT, each counted as twice its longer side against the token budget."""
    if config.loss is VerifierLoss.bce:
        return [(i, ex.label) for i, ex in zip(ids, examples)], [len(i) for i in ids]
    pairs = sample_pairs(examples, config.pairs_per_problem, random.Random(config.seed))
    if not pairs:
        raise ValueError("loss=bt: no training problem has both a correct and a wrong code; "
                         "collect more rollouts or use loss=bce")
    return [(ids[p], ids[n]) for p, n in pairs], [2 * max(len(ids[p]), len(ids[n])) for p, n in pairs]


# ---------------------------------------------------------------------------------------------
# The stage


def rollout_dataset(path: str | Path) -> Path:
    """The Episode dataset of an input: a complete rollouts stage folder, or the dataset itself."""
    path = Path(path)
    if (path / "dataset_info.json").is_file():
        return path
    if artifacts.read_manifest(path) is None or not (path / "episodes").is_dir():
        raise FileNotFoundError(f"{path}: no rollouts here; run pipelines/collect_rollouts.py first or point to them")
    return path / "episodes"


def load_data(config: TrainVerifierConfig, episodes: list[Episode] | None, problems: list[Problem] | None
              ) -> tuple[list[VerifierExample], dict[str, Path]]:
    """Labeled examples from the episodes (read from config.inputs unless given) and the input paths read."""
    inputs: dict[str, Path] = {}
    if episodes is None:
        paths = [rollout_dataset(p) for p in config.inputs]
        episodes = [e for p in paths for e in read_records(p, Episode)]
        inputs.update({f"input{i}": p for i, p in enumerate(paths)})
    if problems is None:
        folder = artifacts.require(config.problems, "problem split", "pipelines/expert_iteration.py (stage problems)")
        problems = read_records(folder, Problem)
        inputs["problems"] = folder
    by_id = {p.id: p for p in problems}
    missing = sorted({e.problem_id for e in episodes} - by_id.keys())
    if missing:
        raise ValueError(f"problems={config.problems}: {len(missing)} rollout problems are not there "
                         f"(first: {missing[0]}); point problems= to the split the rollouts were collected on")
    examples = examples_from_episodes(episodes, by_id)
    if not examples:
        raise ValueError(f"inputs={config.inputs}: no episodes; nothing to train the verifier on")
    return examples, inputs


def init_path(config: TrainVerifierConfig) -> str:
    """The folder (or Hub id) the verifier starts from: for the tiny default, the warm start."""
    if config.init != BASE:
        return str(artifacts.require(config.init, "init model", "a training stage"))
    if config.model.name_or_path != TINY:
        return resolve_path(config.model)
    warm = artifacts.RunLayout(Path(config.run_dir)).generator(0, TINY)
    return str(artifacts.require(warm, "warm-started base model", "pipelines/train_generator.py (the warm start)"))


def train_verifier(config: TrainVerifierConfig, episodes: list[Episode] | None = None,
                   problems: list[Problem] | None = None) -> dict[str, Any]:
    """Run the verifier stage into config.out_dir (skipped when its manifest is complete).

    Returns the manifest's metrics: train (the TrainResult), valid (verifier metrics on the held-out
    problems; an undefined one, such as AUC with one class, is None) and sizes.
    """
    out_dir = Path(config.out_dir)
    if (manifest := artifacts.read_manifest(out_dir)) is not None:
        log.info("%s complete; skipping", out_dir)
        return manifest["metrics"]
    start = time.perf_counter()
    init = init_path(config)
    examples, inputs = load_data(config, episodes, problems)
    train_ex, valid_ex = split_by_problem(examples, config.valid_fraction, config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)  # the fresh head's initialisation
        model, tokenizer = _load(init, config.model)
    ids = tokenize(tokenizer, train_ex, config.train.max_length)
    items, lengths = training_items(train_ex, ids, config)
    collate = functools.partial(collate_pointwise if config.loss is VerifierLoss.bce else collate_pairs,
                                pad_id=tokenizer.pad_token_id)
    loss_fn = bce_step if config.loss is VerifierLoss.bce else functools.partial(bt_step, l2=config.l2)
    main = process_state(config.train).is_main_process
    params = artifacts.write_config(out_dir, config, main)
    metrics: dict[str, Any] = {"sizes": _sizes(train_ex, valid_ex, items, ids, config.train.max_length)}
    with open_logger(config.tracking, out_dir, _label(config), params, main_process=main) as logger:
        result = train(model, items, lengths, collate, loss_fn, config.train, out_dir, logger, tokenizer)
        metrics["train"] = dataclasses.asdict(result)
        if main:
            scorer = load_scorer(out_dir / "model", config.model, max_length=config.train.max_length)
            metrics["valid"] = evaluate(scorer, valid_ex)
            logger.log({f"valid_{k}": v for k, v in metrics["valid"].items()}, step=result.steps)
    if main:
        if os.path.isdir(init):
            inputs["init"] = Path(init)
        artifacts.write_manifest(out_dir, inputs, ["model"], metrics, time.perf_counter() - start)
        metrics = artifacts.read_manifest(out_dir)["metrics"]  # as a rerun reads it (NaN -> None)
        log.info("verifier (%s): %d steps, %.0f s; valid %s", config.loss.value, result.steps, result.seconds,
                 metrics["valid"])
    return metrics


def evaluate(scorer: Scorer, examples: list[VerifierExample]) -> dict[str, float]:
    """Verifier metrics of `scorer` on `examples` (empty when there are none): auc, pair_accuracy (within
    problems), accuracy (logit > 0), ece, brier, bon_selection_accuracy (and its random-pick baseline),
    positives, examples."""
    if not examples:
        return {}
    scores = scorer([(ex.prompt, ex.code) for ex in examples])
    metrics = verifier_metrics(scores, [ex.label for ex in examples], [ex.problem_id for ex in examples])
    metrics["bon_selection_accuracy"] = metrics.pop("selection_accuracy")
    metrics["bon_selection_random"] = metrics.pop("selection_random")
    return metrics


def _sizes(train_ex: list[VerifierExample], valid_ex: list[VerifierExample], items: list[Any],
           ids: list[list[int]], max_length: int) -> dict[str, int]:
    return {
        "train_examples": len(train_ex), "train_positives": sum(ex.label for ex in train_ex),
        "train_problems": len({ex.problem_id for ex in train_ex}), "train_items": len(items),
        "truncated": sum(len(i) >= max_length for i in ids),
        "valid_examples": len(valid_ex), "valid_problems": len({ex.problem_id for ex in valid_ex}),
    }


def _label(config: TrainVerifierConfig) -> str:
    """Stage name in metrics: out_dir relative to run_dir ("iter1/verifier")."""
    out, run = Path(config.out_dir).resolve(), Path(config.run_dir).resolve()
    return str(out.relative_to(run)) if out.is_relative_to(run) else out.name


# ---------------------------------------------------------------------------------------------
# Scoring


def verifier_messages(prompt: str, code: str) -> list[Message]:
    """The verifier's input as chat messages: the turn-1 problem text, then the code as the answer."""
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": format_code(code)}]


def verifier_text(tokenizer, prompt: str, code: str) -> str:
    """The verifier's input text (the chat template applied, no generation prompt)."""
    return tokenizer.apply_chat_template(verifier_messages(prompt, code), tokenize=False)


@torch.inference_mode()
def score(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 64, max_length: int = 1024
          ) -> list[float]:
    """Verifier logits for (prompt, code) pairs, in order; batches sorted by length to cut padding."""
    model.eval()
    texts = [verifier_text(tokenizer, p, c) for p, c in pairs]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = [0.0] * len(texts)
    device = next(model.parameters()).device
    tokenizer.truncation_side = "left"  # the score is read at the end: never cut the code
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                        max_length=max_length, add_special_tokens=False).to(device)
        logits = model(**enc).logits.squeeze(-1).float().tolist()
        for i, s in zip(idx, logits):
            out[i] = s
    return out


def load_scorer(path: str | Path, model_config: ModelConfig, batch_size: int = 64, max_length: int = 1024
                ) -> Scorer:
    """A saved verifier as a Scorer: [(problem text, code)] -> logits (problem text = prompts.problem_text).

    On the GPU when there is one; `model_config` gives the dtype and a chat template if the tokenizer lacks one.
    """
    path = artifacts.require(path, "verifier model", "pipelines/train_verifier.py")
    model, tokenizer = _load(str(path), model_config)
    if torch.cuda.is_available():
        model.to("cuda")
    return functools.partial(score, model, tokenizer, batch_size=batch_size, max_length=max_length)


def _load(path: str, model_config: ModelConfig):
    """(scalar-head model, tokenizer with a chat template) from a base or a saved verifier."""
    model, tokenizer = load_verifier(path, model_config.dtype)
    if model_config.chat_template:
        tokenizer.chat_template = model_config.chat_template
    if not tokenizer.chat_template:
        raise ValueError(f"{path}: tokenizer has no chat template; set model.chat_template or use an instruct model")
    return model, tokenizer
