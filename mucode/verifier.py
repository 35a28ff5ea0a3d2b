"""The learned verifier: data from episodes, BCE and Bradley-Terry losses (pure), scoring.

The verifier R(x, y) is the base LM with a fresh scalar head (AutoModelForSequenceClassification,
num_labels=1); its input is the problem as the generator sees it at turn 1 (statement + public
tests) and the candidate code, rendered with the chat template as a user turn and an assistant turn;
the score is read at the last non-pad token (the assistant turn's end token).

Labels come from the oracle: a code is positive iff it passes public and private tests. Every turn
of every episode is a candidate (intermediate failed turns are negatives); candidates are unique per
(problem, code) and aggregated over iterations.

Losses (SPEC §1 step 2):
    BCE   pointwise binary cross-entropy on (x, y, label)
    BT    per problem with both kinds, P sampled (positive, negative) pairs;
          -log sigmoid(r+ - r-) + lambda * mean(r^2)   (lambda default 1e-3)
"""

from __future__ import annotations

import random
from collections import defaultdict

import torch
import torch.nn.functional as F

from mucode.prompts import format_code, problem_text
from mucode.records import Episode, Message, Problem, VerifierExample


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
