"""Generator SFT: chat states -> target code, loss only on the final assistant turn.

    items, dropped = tokenize_all(tokenizer, examples, max_length=1024)
    loss, metrics = sft_loss(model, collate(items[:8], tokenizer.pad_token_id))

The stages that train a generator in a run are mucode.stages.warm_start (generator 0) and
mucode.stages.train_generator (generators 1..M).

An SFTExample is a state s_t (chat messages ending with a user turn) and the code y* the next
assistant turn should hold. The training sequence is the chat template's rendering of
`messages + [assistant: format_code(target)]`. The loss mask comes from the chat structure, not
from a text marker: the prompt is the template's rendering of `messages` with the generation prompt
(what the generator sees at inference, `prompts.render`); its tokens must be a prefix of the whole
conversation's tokens (checked for every example; a template that breaks this fails loudly, naming
the example), and every token after it up to and including the first eos (the template's end of the
assistant turn: `<|end|>` for the tiny model, `<|im_end|>` for ChatML) is a target; anything the
template adds after that eos is cut. Targets carry their ids as labels, everything else -100.

Too long: the prompt is cut from the left (keeping a leading bos), the target never; an example whose
target alone does not fit max_length is dropped and counted.

The loss is each example's mean token cross-entropy, averaged over examples (so every state weighs
the same whatever its target's length, and accumulation/data parallelism are exact; mucode.training).

The warm start trains on the task's `warmup` split, single-turn: (first_turn(problem), problem.reference).

Limits: the tokenizer must have a chat template whose prompt rendering is a prefix of the full
rendering (true of the tiny model, ChatML/SmolLM2, Llama 3); no sequence packing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from mucode.prompts import first_turn, format_code, render
from mucode.records import Problem, SFTExample
from mucode.training import TrainConfig

log = logging.getLogger(__name__)

IGNORE = -100
GENERATOR0 = "generator0"
"""Start from generator 0: the warm start (tiny default) or the pretrained model."""
PREVIOUS = "previous"
"""Start from generator i-1."""


@dataclass
class GeneratorRecipe:
    """How generators 1..M are trained (where they read and write is the stage's)."""

    init: str = GENERATOR0
    """generator0 (the warm start, or the pretrained model), previous (generator i-1) or a saved model folder."""
    replay: float | None = 1.0
    """Warm-up references mixed in per relabeled example, where the task has a warmup split (a
    seeded sample; 1.0 = 1:1, which keeps turn-1 skill from eroding; 0 = none; null = all of them)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The optimization recipe."""

    def __post_init__(self) -> None:
        if not self.init:
            raise ValueError(f"sft.init is empty; use {GENERATOR0}, {PREVIOUS} or a saved model folder")
        if self.replay is not None and self.replay < 0:
            raise ValueError(f"sft.replay={self.replay} must be >= 0 (a multiple of the relabeled examples) or null")


def warmup_examples(problems: Sequence[Problem]) -> list[SFTExample]:
    """Single-turn examples from reference solutions: (first_turn(problem), problem.reference)."""
    out = []
    for p in problems:
        if not p.reference:
            raise ValueError(f"problem {p.id}: no reference solution; the warm start needs references")
        out.append(SFTExample(problem_id=p.id, messages=first_turn(p), target=p.reference, iteration=0))
    return out


@dataclass
class Tokenized:
    """One training sequence: the prompt's tokens, then the target's (ending with eos)."""

    input_ids: list[int]
    prompt_len: int
    """Tokens before the target; labels are -100 there."""


def tokenize(tokenizer, example: SFTExample, max_length: int) -> Tokenized | None:
    """Token ids and the prompt/target split of one example; None if the target alone is too long."""
    prompt = _ids(tokenizer, render(tokenizer, example.messages))
    answer = {"role": "assistant", "content": format_code(example.target)}
    full = _ids(tokenizer, tokenizer.apply_chat_template([*example.messages, answer], tokenize=False))
    if full[:len(prompt)] != prompt:
        raise ValueError(f"example {example.problem_id}: the chat template's prompt tokens are not a prefix "
                         "of the conversation's tokens; this template cannot mask by turn structure")
    target = full[len(prompt):]
    if tokenizer.eos_token_id not in target:
        raise ValueError(f"example {example.problem_id}: the chat template does not end the assistant turn "
                         f"with eos {tokenizer.eos_token!r}; set model.chat_template")
    target = target[:target.index(tokenizer.eos_token_id) + 1]
    room = max_length - len(target)
    if room < 1:
        return None
    if len(prompt) > room:
        keep_bos = prompt[0] == tokenizer.bos_token_id and room > 1
        prompt = prompt[:1] + prompt[len(prompt) - room + 1:] if keep_bos else prompt[len(prompt) - room:]
    return Tokenized(prompt + target, len(prompt))


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]  # the template writes bos itself


def tokenize_all(tokenizer, examples: Sequence[SFTExample], max_length: int) -> tuple[list[Tokenized], int]:
    """Tokenize every example; returns the kept ones and how many were dropped as too long."""
    kept = [t for ex in examples if (t := tokenize(tokenizer, ex, max_length)) is not None]
    dropped = len(examples) - len(kept)
    if dropped:
        log.warning("dropped %d of %d examples whose target alone exceeds max_length=%d",
                    dropped, len(examples), max_length)
    return kept, dropped


def labels_of(item: Tokenized) -> list[int]:
    """-100 on the prompt, the token ids on the target (its eos included)."""
    return [IGNORE] * item.prompt_len + item.input_ids[item.prompt_len:]


def collate(items: list[Tokenized], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch (positions start at 0 for every row): input_ids, attention_mask, labels."""
    width = max(len(t.input_ids) for t in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, t in enumerate(items):
        n = len(t.input_ids)
        ids[row, :n] = torch.tensor(t.input_ids)
        labels[row, :n] = torch.tensor(labels_of(t))
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def sft_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean over examples of each example's mean next-token cross-entropy on its target tokens.

    batch: input_ids, attention_mask, labels, each [B, L]. Metrics: target-token accuracy.
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits, labels = logits[:, :-1].float(), batch["labels"][:, 1:]
    token_loss = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
    mask = labels != IGNORE
    count = mask.sum(dim=1).clamp(min=1)
    loss = ((token_loss * mask).sum(dim=1) / count).mean()
    with torch.no_grad():
        correct = ((logits.argmax(-1) == labels) & mask).sum(dim=1) / count
    return loss, {"accuracy": correct.mean()}
