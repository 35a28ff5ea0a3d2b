"""The verifier scored through the language-model head: code-token log-probabilities, the two LM
heads' scores, batches, scoring, and the small file that says which head a saved verifier has.

    rows = code_rows(model, tok, examples, VerifierHead.ratio, max_length=1024)   # + reference sums
    batch = collate_rows([r for r in rows[:8]], [True] * 8, tok.pad_token_id)
    sums, counts = code_logprobs(model, batch)                 # [B] sum of log p, [B] code tokens
    r = head_scores(VerifierHead.ratio, sums, counts, batch["reference"], beta=0.1)

The input is the verifier's chat text (mucode.verifier.verifier_text: user = the generator's turn-1 message,
assistant = the code block), tokenized exactly as a generator's SFT target (mucode.sft.tokenize): the
prompt is the template's rendering of the user turn with the generation prompt, and the scored tokens
are the assistant turn's, up to and including its first eos (the code block and its end-of-turn
token). Rows are right-padded, positions start at 0, as in SFT. With s = sum of log p_theta over those
n tokens:
    ratio       r = beta * (s - s_ref), s_ref the same sum under the frozen reference (the weights the
                verifier started from): the implicit reward of DPO-style verifiers (V-STaR)
    likelihood  r = s / n, the length-normalised log-likelihood (Codex's mean log-prob ranking)
    loglik      r = beta * s, the summed log-likelihood: at initialisation the generator's own ranking
                of the code (summed, it ranks near misses best on the embedded suite; benchmarks/README.md),
                which training then moves (= ratio + beta * s_ref, with the reference kept in the score)
The reference sums of training codes are computed once, before training, with the starting weights
(theta == reference there, so no second model is held while training); at scoring time a Scorer holds
the reference model and computes each (prompt, code)'s sum once (ReferenceSums).

A saved LM verifier is an AutoModelForCausalLM folder with HEAD_FILE ({"head", "beta", "reference"}):
`reference` is a folder relative to the verifier's (or its `reference/` subfolder, as export writes
it) or a Hub id. A folder without HEAD_FILE is a scalar-head verifier (mucode.verifier).

Limits: an input longer than max_length is cut from the left (the prompt first; a code longer than
max_length loses its start and is scored on what is left); the reference must share the verifier's
tokenizer (it is the model the verifier was initialised from).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch
import torch.nn.functional as F

from mucode import artifacts
from mucode.prompts import first_turn_of
from mucode.records import SFTExample, VerifierExample
from mucode.sft import IGNORE, Tokenized, collate, tokenize

HEAD_FILE = "mucode_verifier.json"
"""Written into a saved LM verifier's folder: which head it has, beta, and where its reference is."""
REFERENCE = "reference"
"""The subfolder an exported ratio verifier carries its reference model in."""


class VerifierHead(str, Enum):
    """How the verifier turns a model into a score (member names equal values: OmegaConf reads enums by name)."""

    scalar = "scalar"
    ratio = "ratio"
    likelihood = "likelihood"
    loglik = "loglik"


@dataclass
class SavedHead:
    """The contents of HEAD_FILE."""

    head: VerifierHead
    beta: float = 1.0
    """ratio: the scale of the log-likelihood ratio."""
    reference: str | None = None
    """ratio: the reference model, a folder relative to the verifier's folder or a Hub id."""

    @classmethod
    def read(cls, folder: str | Path) -> SavedHead:
        """The head of a saved verifier folder (scalar when it has no HEAD_FILE)."""
        path = Path(folder) / HEAD_FILE
        if not path.is_file():
            return cls(VerifierHead.scalar)
        saved = json.loads(path.read_text())
        return cls(VerifierHead(saved["head"]), float(saved.get("beta", 1.0)), saved.get("reference"))

    def write(self, folder: str | Path) -> None:
        artifacts.atomic_write_json(Path(folder) / HEAD_FILE,
                                    {"head": self.head.value, "beta": self.beta, "reference": self.reference})

    def reference_path(self, folder: str | Path) -> str:
        """The reference model to load: `reference` resolved against the folder when it is a path there
        (a saved folder, or one that starts with . or /), else `reference` as a Hub id."""
        assert self.head is VerifierHead.ratio and self.reference, f"{folder}: a ratio verifier names its reference"
        local = Path(folder) / self.reference
        return str(local) if (local / "config.json").is_file() or self.reference.startswith((".", "/")) \
            else self.reference


def reference_for(init: str, folder: str | Path) -> str:
    """How HEAD_FILE names the reference `init` (a model folder or a Hub id) from a verifier saved in `folder`."""
    if Path(init).expanduser().is_dir():
        return os.path.relpath(Path(init).expanduser().resolve(), Path(folder).resolve())
    return init


# ---------------------------------------------------------------------------------------------
# Tokens, log-probabilities, scores


def code_tokens(tokenizer, prompt: str, code: str, max_length: int) -> Tokenized:
    """The verifier text's tokens, `prompt_len` of them before the assistant turn (code + eos), cut from the left."""
    full = tokenize(tokenizer, SFTExample("verifier", first_turn_of(prompt), code), max_length=10**9)
    cut = max(0, len(full.input_ids) - max_length)
    return Tokenized(full.input_ids[cut:], max(1, full.prompt_len - cut))


@dataclass
class CodeRow:
    """One verifier input for the LM heads: its tokens and its code's log-prob sum under the reference."""

    tokens: Tokenized
    reference: float = 0.0


def collate_rows(rows: Sequence[CodeRow], outcomes: Sequence[bool], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: input_ids, attention_mask, labels [B, L] (the code tokens' ids, -100 elsewhere),
    reference [B] (reference log-prob sums) and outcome [B] (float 0/1: the code is correct)."""
    batch = collate([r.tokens for r in rows], pad_id)
    batch["reference"] = torch.tensor([r.reference for r in rows], dtype=torch.float32)
    batch["outcome"] = torch.tensor([float(y) for y in outcomes])
    return batch


def collate_pointwise(items: list[tuple[CodeRow, bool]], pad_id: int) -> dict[str, torch.Tensor]:
    """BCE batch of (row, label) items."""
    return collate_rows([r for r, _ in items], [y for _, y in items], pad_id)


def collate_pairs(items: list[tuple[CodeRow, CodeRow]], pad_id: int) -> dict[str, torch.Tensor]:
    """BT batch of P (chosen, rejected) pairs: 2P rows, the chosen first (outcome 1), then the rejected (0)."""
    rows = [c for c, _ in items] + [r for _, r in items]
    return collate_rows(rows, [True] * len(items) + [False] * len(items), pad_id)


def code_logprobs(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(sums, counts), each [B]: the sum of log p(token | prefix) over each row's labelled (code) tokens,
    and how many there are. batch: input_ids, attention_mask, labels [B, L]."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits, labels = logits[:, :-1].float(), batch["labels"][:, 1:]
    nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")  # 0 where ignored
    return -nll.sum(dim=1), (labels != IGNORE).sum(dim=1)


def head_scores(head: VerifierHead, sums: torch.Tensor, counts: torch.Tensor, reference: torch.Tensor,
                beta: float) -> torch.Tensor:
    """[B] verifier scores from code log-prob sums [B]: beta * (sums - reference) for ratio, sums / counts
    for likelihood, beta * sums for loglik."""
    if head is VerifierHead.ratio:
        return beta * (sums - reference)
    if head is VerifierHead.loglik:
        return beta * sums
    assert head is VerifierHead.likelihood, f"head {head} is not scored through the LM head"
    return sums / counts.clamp(min=1)


@torch.inference_mode()
def logprob_sums(model, rows: Sequence[Tokenized], pad_id: int, batch_size: int = 64) -> list[tuple[float, int]]:
    """(sum of code-token log-probs, code tokens) per row, in order; batches sorted by length to cut padding."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].input_ids))
    out: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = collate([rows[i] for i in idx], pad_id)
        sums, counts = code_logprobs(model, {k: v.to(device) for k, v in batch.items()})
        for i, s, n in zip(idx, sums.tolist(), counts.tolist()):
            out[i] = (s, n)
    model.train(was_training)
    return out


def code_rows(model, tokenizer, examples: Sequence[VerifierExample], head: VerifierHead, max_length: int,
              batch_size: int = 64) -> list[CodeRow]:
    """Training rows of `examples`; for ratio and loglik, each with its code's log-prob sum under `model` (the
    starting weights, i.e. the reference), computed here once, on the inference device."""
    from mucode.models import inference_device

    tokens = [code_tokens(tokenizer, ex.prompt, ex.code, max_length) for ex in examples]
    if head not in (VerifierHead.ratio, VerifierHead.loglik):
        return [CodeRow(t) for t in tokens]
    home = next(model.parameters()).device
    sums = logprob_sums(model.to(inference_device()), tokens, tokenizer.pad_token_id, batch_size)
    model.to(home)
    return [CodeRow(t, s) for t, (s, _) in zip(tokens, sums)]


class ReferenceSums:
    """The frozen reference model's code log-prob sums, each (prompt, code) computed once."""

    def __init__(self, model, tokenizer, batch_size: int, max_length: int) -> None:
        self.model, self.tokenizer, self.batch_size, self.max_length = model, tokenizer, batch_size, max_length
        self.cache: dict[tuple[str, str], float] = {}

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        missing = list(dict.fromkeys(p for p in pairs if p not in self.cache))
        if missing:
            tokens = [code_tokens(self.tokenizer, p, c, self.max_length) for p, c in missing]
            sums = logprob_sums(self.model, tokens, self.tokenizer.pad_token_id, self.batch_size)
            self.cache.update(zip(missing, (s for s, _ in sums)))
        return [self.cache[p] for p in pairs]


def score(model, tokenizer, head: SavedHead, reference: ReferenceSums | None, pairs: list[tuple[str, str]],
          batch_size: int = 64, max_length: int = 1024) -> list[float]:
    """LM-head verifier scores of (prompt, code) pairs, in order."""
    tokens = [code_tokens(tokenizer, p, c, max_length) for p, c in pairs]
    sums = logprob_sums(model, tokens, tokenizer.pad_token_id, batch_size)
    s = torch.tensor([v for v, _ in sums], dtype=torch.float64)
    n = torch.tensor([k for _, k in sums])
    ref = torch.tensor(reference(pairs) if reference is not None else [0.0] * len(pairs), dtype=torch.float64)
    return head_scores(head.head, s, n, ref, head.beta).tolist()
