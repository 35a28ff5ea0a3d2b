"""The learned verifier: data from episodes, BCE and Bradley-Terry losses (pure), batches, scoring.

    scorer = load_scorer("runs/x/iter1/verifier/model", ModelConfig())  # [(problem text, code)] -> scores
    pairs = sample_pairs(examples, 32, random.Random(0))              # BT training pairs

The verifier R(x, y) reads the generator's turn-1 message (statement + public tests + instruction,
prompts.first_turn_of) and the candidate code, rendered with the chat template as a user turn and an
assistant turn: the very text the generator's turn-1 answer is trained and sampled in, so an LM head
starts from the generator's own likelihood of the code (with the bare problem text instead, the warm
start's summed log-likelihood ranked the near misses of the embedded suite at 0.689, not 0.794). Its
score comes from one of four heads (`verifier.head`), all trained on the same examples and pairs with
the same losses and the same loop (mucode.training):
    scalar      the paper's: the base LM with a fresh scalar head (AutoModelForSequenceClassification,
                num_labels=1); the score is read at the input's last token, the assistant turn's eos
                (the pad token is never eos: models.set_verifier_pad), as TRL and OpenRLHF read it
    ratio       through the LM head (AutoModelForCausalLM, initialised from the starting weights):
                r = beta * (log p_theta(y|x) - log p_ref(y|x)), summed over the assistant turn's tokens
                (the code block and its eos), p_ref = the starting weights frozen: the implicit reward
                of DPO-style verifiers (V-STaR); r = 0 for every code before training
    likelihood  through the LM head: the mean log p_theta over the same tokens, no reference
    loglik      through the LM head: r = beta * sum log p_theta over the same tokens; before training,
                the generator's own ranking of its candidates (which the BT loss then corrects, its l2
                term holding r near that start)
The LM heads keep what the generator knows about which token goes where (a near miss differs from a
correct code in one token); they may add `sft_weight` x the mean token NLL of the correct codes of a
batch (GenRM's joint SFT). Their scoring and batches are mucode.lm_verifier; a saved LM verifier says
which head it is in its folder (lm_verifier.HEAD_FILE), so load_scorer needs no option. For the tiny
default the starting weights are the warm start (generator 0): the untrained tiny model cannot read
code at all. The stage that trains one in a run is mucode.stages.train_verifier.

Labels come from the oracle: a code is positive iff it passes public and private tests. Every turn
of every episode is a candidate (intermediate failed turns are negatives); candidates are unique per
(problem, code) and aggregated over iterations. Problems, not examples, are split into train and a
held-out validation share, on which the stage reports AUC, within-problem pair accuracy, accuracy
(score > 0), ECE and Best-of-N selection accuracy (mucode.metrics.verifier_metrics).

Minimal pairs (`verifier.mutants`, 0 = off): up to that many one-edit mutants (mucode.mutants: a
constant +/- 1, a near operator, a dropped `not`, a range bound off by one, min <-> max, ...) of each
correct distinct code of the training problems, run in the sandbox against the problem's public and
private tests and labelled as rollouts are (a mutant that still passes is a positive). They join that
problem's examples, so BT pairs are drawn from the on-policy codes and the mutants alike and a failing
mutant meets its correct source. Validation problems are never mutated. The stage's metrics count
them (`mutants`: sources, made, run, failed, passed, by operator).

Losses (the muCode paper, step 2), on the score r of any head:
    BCE   pointwise binary cross-entropy on (x, y, label); a batch item is one example
    BT    per problem with both kinds, P sampled (positive, negative) pairs;
          -log sigmoid(r+ - r-) + lambda * mean((r - r0)^2)   (lambda default 1e-3); r0 is the score
          before training: 0 for the scalar head (a fresh head) and for ratio (theta = reference), the
          starting weights' beta * sum log p for loglik (lambda keeps it near the generator's own ranking);
          a batch item is a pair,
          drawn once per run (seeded), and its length for the token budget is twice its longer side

Limits: inputs longer than train.max_length are cut from the left (the code, at the end, is kept);
BT scores are not probabilities, so its accuracy and ECE (sigmoid of the score) are only indicative;
the likelihood and loglik heads' scores are always < 0, so with BCE they cannot reach a positive logit, and
their accuracy at 0 is the share of negatives (use BT with them; read AUC and pair_accuracy).
"""

from __future__ import annotations

import functools
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mucode import artifacts, lm_verifier
from mucode.lm_verifier import ReferenceSums, SavedHead, VerifierHead, code_logprobs, head_scores
from mucode.metrics import verifier_metrics
from mucode.models import ModelConfig, inference_device, load_generator, load_verifier
from mucode.prompts import first_turn_of, format_code, problem_text
from mucode.records import Episode, Message, Problem, VerifierExample
from mucode.training import TrainConfig


class VerifierLoss(str, Enum):
    """The verifier's training loss (member names equal values: OmegaConf reads enums by name)."""

    bce = "bce"
    bt = "bt"


@dataclass
class VerifierRecipe:
    """How a verifier is trained (where it reads and writes is the stage's)."""

    loss: VerifierLoss = VerifierLoss.bt
    """bt (Bradley-Terry on sampled pairs, the paper's default) or bce (pointwise)."""
    head: VerifierHead = VerifierHead.scalar
    """scalar (a fresh linear head on the last token, the paper's), ratio (beta * log p_theta/p_ref over the
    code tokens, p_ref = the starting weights frozen), likelihood (mean log p_theta over the code tokens) or
    loglik (beta * summed log p_theta: the generator's own ranking at initialisation)."""
    beta: float = 0.1
    """ratio, loglik: the scale of the (ratio of) log-likelihoods (DPO's beta)."""
    sft_weight: float = 0.0
    """ratio, likelihood, loglik: weight of an SFT term, the mean token NLL of the batch's correct codes (0 = none)."""
    pairs_per_problem: int = 32
    """BT: most (positive, negative) pairs per training problem."""
    l2: float = 1e-3
    """BT: weight of the mean squared score, which keeps scores near 0."""
    valid_fraction: float = 0.1
    """Share of problems held out for the validation metrics."""
    mutants: int = 0
    """Most one-edit mutants (mucode.mutants) of each correct distinct training code added as examples,
    labelled by running the problem's tests in the sandbox (0 = none, on-policy data only)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The optimization recipe."""

    def __post_init__(self) -> None:
        if self.loss not in {m.value for m in VerifierLoss}:
            raise ValueError(f"verifier.loss={self.loss!r}; choose one of bce, bt")
        self.loss = VerifierLoss(self.loss)
        if self.head not in {m.value for m in VerifierHead}:
            raise ValueError(f"verifier.head={self.head!r}; choose one of scalar, ratio, likelihood, loglik")
        self.head = VerifierHead(self.head)
        if self.beta <= 0:
            raise ValueError(f"verifier.beta={self.beta} must be > 0")
        if self.sft_weight < 0:
            raise ValueError(f"verifier.sft_weight={self.sft_weight} must be >= 0")
        if self.sft_weight and self.head is VerifierHead.scalar:
            raise ValueError("verifier.sft_weight needs an LM head (verifier.head=ratio, likelihood or loglik); "
                             "the scalar head has no language-model output")
        if self.pairs_per_problem < 1:
            raise ValueError(f"verifier.pairs_per_problem={self.pairs_per_problem} must be >= 1")
        if self.l2 < 0:
            raise ValueError(f"verifier.l2={self.l2} must be >= 0")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"verifier.valid_fraction={self.valid_fraction} must be in [0, 1)")
        if self.mutants < 0:
            raise ValueError(f"verifier.mutants={self.mutants} must be >= 0 (0 = no mutants)")


def bce_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of logits `scores` [B] against 0/1 `labels` [B]."""
    return F.binary_cross_entropy_with_logits(scores.float(), labels.float())


def bt_loss(chosen: torch.Tensor, rejected: torch.Tensor, l2: float = 1e-3, start: torch.Tensor | None = None
            ) -> torch.Tensor:
    """Bradley-Terry loss of paired scores [P] (positive, negative) plus l2 * mean((r - r0)^2) over both,
    r0 = `start` [2P] (the chosen's then the rejected's scores before training; default 0)."""
    chosen, rejected = chosen.float(), rejected.float()
    drift = torch.cat([chosen, rejected])
    if start is not None:
        drift = drift - start.float()
    return -F.logsigmoid(chosen - rejected).mean() + l2 * drift.pow(2).mean()


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


def training_items(examples: list[VerifierExample], ids: Sequence[Any], recipe: VerifierRecipe, seed: int,
                   lengths: Sequence[int] | None = None) -> tuple[list[Any], list[int]]:
    """(items, lengths) for the training loop: (ids, label) for BCE; (chosen ids, rejected ids) pairs
    for BT (drawn with `seed`), each counted as twice its longer side against the token budget.
    `ids[i]` is example i's model input (token ids, or an LM head's lm_verifier.CodeRow) and `lengths[i]`
    its length in tokens (default len(ids[i]))."""
    n = [len(i) for i in ids] if lengths is None else list(lengths)
    if recipe.loss is VerifierLoss.bce:
        return [(i, ex.label) for i, ex in zip(ids, examples)], n
    pairs = sample_pairs(examples, recipe.pairs_per_problem, random.Random(seed))
    if not pairs:
        raise ValueError("verifier.loss=bt: no training problem has both a correct and a wrong code; "
                         "collect more rollouts or use verifier.loss=bce")
    return [(ids[p], ids[q]) for p, q in pairs], [2 * max(n[p], n[q]) for p, q in pairs]


def lm_step(model, batch: dict[str, torch.Tensor], recipe: VerifierRecipe
            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """BCE or BT (recipe.loss) on an LM head's scores (recipe.head), plus recipe.sft_weight x the mean
    token NLL of the batch's correct codes, summed over them and divided by the batch's items (rows for
    BCE, pairs for BT), so that the loss stays a mean over items. batch: lm_verifier.collate_rows's."""
    sums, counts = code_logprobs(model, batch)
    scores = head_scores(recipe.head, sums, counts, batch["reference"], recipe.beta)
    if recipe.loss is VerifierLoss.bce:
        loss, metrics = bce_loss(scores, batch["outcome"]), {}
        with torch.no_grad():
            metrics["accuracy"] = ((scores > 0) == batch["outcome"].bool()).float().mean()
        items = len(scores)
    else:
        chosen, rejected = scores.chunk(2)
        start = recipe.beta * batch["reference"] if recipe.head is VerifierHead.loglik else None
        loss = bt_loss(chosen, rejected, recipe.l2, start)
        with torch.no_grad():
            metrics = {"pair_accuracy": (chosen > rejected).float().mean()}
        items = len(chosen)
    if recipe.sft_weight:
        sft = (batch["outcome"] * sums / counts.clamp(min=1)).sum().neg() / items
        loss = loss + recipe.sft_weight * sft
        metrics["sft_nll"] = sft.detach()
    return loss, metrics


def validation_metrics(scorer: Scorer, examples: list[VerifierExample]) -> dict[str, float]:
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


# ---------------------------------------------------------------------------------------------
# Scoring


class Scorer:
    """A verifier as a function of (problem, code): each distinct pair is scored once (the cache lives
    as long as the Scorer), from the problem as the generator sees it at turn 1.

        scorer = load_scorer("runs/x/iter1/verifier/model", ModelConfig())
        scores = scorer.scores([(problem, code), ...])    # {(problem.id, code): logit}
        logits = scorer([(problem_text, code), ...])      # raw, uncached
    """

    def __init__(self, score: Callable[[list[tuple[str, str]]], list[float]]) -> None:
        self.score = score
        self.cache: dict[tuple[str, str], float] = {}

    def __call__(self, pairs: list[tuple[str, str]]) -> list[float]:
        """Scores (the scalar head's logits, or an LM head's scores) for (problem text, code) pairs, in order."""
        return self.score(pairs)

    def scores(self, items: Iterable[tuple[Problem, str]]) -> dict[tuple[str, str], float]:
        """{(problem id, code): score} for the items; the pairs not seen yet are scored in one call, in
        the order they first appear."""
        items = list(items)
        missing = list(dict.fromkeys((p.id, code) for p, code in items if (p.id, code) not in self.cache))
        if missing:
            texts = {p.id: problem_text(p) for p, _ in items}
            self.cache.update(zip(missing, self.score([(texts[pid], code) for pid, code in missing])))
        return {(p.id, code): self.cache[(p.id, code)] for p, code in items}


def verifier_messages(prompt: str, code: str) -> list[Message]:
    """The verifier's input as chat messages: the generator's turn-1 message for the problem text `prompt`
    (prompts.first_turn_of), then the code as the answer. The LM heads score the code's likelihood given
    exactly the prompt the generator wrote it for (their ranking at initialisation is the generator's own)."""
    return [*first_turn_of(prompt), {"role": "assistant", "content": format_code(code)}]


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


def load_scorer(path: str | Path, model_config: ModelConfig, batch_size: int = 64, max_length: int | None = None
                ) -> Scorer:
    """A saved verifier as a Scorer (on the GPU when there is one), whichever its head (a folder with
    lm_verifier.HEAD_FILE is an LM head, and a ratio head loads its reference too); `model_config` gives
    the dtype and a chat template if the tokenizer lacks one. Inputs are cut from the left to `max_length`,
    by default the length the verifier was trained at (its tokenizer's model_max_length, saved by the
    training stage)."""
    path = artifacts.require(path, "verifier model", "pipelines/train_verifier.py")
    head = SavedHead.read(path)
    if head.head is VerifierHead.scalar:
        model, tokenizer = load_verifier(str(path), model_config)
        model.to(inference_device())
    else:
        model, tokenizer = load_generator(model_config, str(path), inference_device())
    saved = tokenizer.model_max_length
    max_length = max_length or (saved if saved < NO_LENGTH else TRAINED_LENGTH_UNKNOWN)
    if head.head is VerifierHead.scalar:
        return Scorer(functools.partial(score, model, tokenizer, batch_size=batch_size, max_length=max_length))
    reference = None
    if head.head is VerifierHead.ratio:
        ref_model, _ = load_generator(model_config, head.reference_path(path), inference_device())
        reference = ReferenceSums(ref_model, tokenizer, batch_size, max_length)
    return Scorer(functools.partial(lm_verifier.score, model, tokenizer, head, reference, batch_size=batch_size,
                                    max_length=max_length))


TRAINED_LENGTH_UNKNOWN = 1024
"""Scoring length of a verifier whose tokenizer has no model_max_length (transformers' placeholder for
none is a huge number, >= NO_LENGTH); a verifier not trained by mucode keeps its base model's context."""
NO_LENGTH = 10**9
