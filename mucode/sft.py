"""Generator SFT: chat states -> target code, loss only on the final assistant turn.

    python pipelines/train_generator.py run_dir=runs/x                       # the warm start (CPU)
    python pipelines/train_generator.py run_dir=runs/x out_dir=runs/x/iter1/generator \
        inputs=[runs/x/iter1/relabeled] warmup=true train.max_steps=170 train.lr=5e-4
    torchrun --nproc_per_node 4 pipelines/train_generator.py ... train.deepspeed=conf/deepspeed/zero2.json

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
the same whatever its target's length, and accumulation/data parallelism are exact; training.py).

The warm start is this stage on the task's `warmup` split, single-turn: (first_turn(problem),
problem.reference). Each SFT run starts from the base model (`init=base`) or a given folder.

Limits: the tokenizer must have a chat template whose prompt rendering is a prefix of the full
rendering (true of the tiny model, ChatML/SmolLM2, Llama 3); no sequence packing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from mucode import artifacts
from mucode.models import TINY, ModelConfig, load_generator, resolve_path
from mucode.prompts import first_turn, format_code, render
from mucode.records import Problem, SFTExample, read_records
from mucode.tasks import TaskConfig, load_problems
from mucode.tracking import TrackingConfig, open_logger
from mucode.training import TrainConfig, TrainResult, process_state, train

log = logging.getLogger(__name__)

IGNORE = -100
BASE = "base"


@dataclass
class TrainGeneratorConfig:
    """The SFT stage: train the generator on SFTExamples (the warm start by default)."""

    run_dir: str = "runs/default"
    """The run directory; the base model lives in run_dir/base/model."""
    out_dir: str = "${run_dir}/warmup"
    """Where the stage writes model/, metrics.jsonl, config.yaml and manifest.json."""
    inputs: list[str] = field(default_factory=list)
    """SFTExample dataset folders (write_records), concatenated."""
    warmup: bool = True
    """Add the task's warmup-split references (single-turn): the warm start, or replay next to inputs."""
    replay: float | None = None
    """With inputs and warmup: mix in replay x len(inputs' examples) warmup references (a seeded
    sample; 1.0 = 1:1, which keeps turn-1 skill from eroding); None = all of them."""
    init: str = BASE
    """Starting weights: "base" (the run's base model) or a saved model folder."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """The task suite (its warmup split feeds `warmup`)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The optimization recipe (defaults: the embedded warm start of the tiny model)."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """metrics.jsonl + wandb."""

    def __post_init__(self) -> None:
        if not self.inputs and not self.warmup:
            raise ValueError("train_generator has no data: set inputs=[<SFTExample folder>, ...] or warmup=true")
        if not self.init:
            raise ValueError('init is empty; use "base" or a saved model folder')
        if self.replay is not None and self.replay < 0:
            raise ValueError(f"replay={self.replay} must be >= 0 (a multiple of the input examples) or null")


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


def load_examples(config: TrainGeneratorConfig) -> list[SFTExample]:
    """The stage's data: every input folder, plus the warmup split's references when asked."""
    examples = []
    for path in config.inputs:
        examples += read_records(artifacts.require(path, "SFT examples", "pipelines/relabel.py"), SFTExample)
    if config.warmup:
        replay = warmup_examples(load_problems(config.task, "warmup"))
        if config.inputs and config.replay is not None:
            n = min(len(replay), round(config.replay * len(examples)))
            replay = random.Random(config.train.seed).sample(replay, n)
        examples += replay
    if not examples:
        raise ValueError(f"train_generator: no examples in inputs={config.inputs} (relabeling yields none when "
                         "no rollout has a correct code: warm start longer or collect more rollouts)")
    return examples


def init_path(config: TrainGeneratorConfig) -> str:
    """The folder (or Hub id) the generator starts from."""
    if config.init != BASE:
        return str(artifacts.require(config.init, "init model", "a training stage"))
    if config.model.name_or_path != TINY:
        return resolve_path(config.model)  # a Hub id, a folder, or the offline SmolLM2 copy
    base = Path(config.run_dir) / "base" / "model"
    return str(artifacts.require(base, "base model", "pipelines/expert_iteration.py (stage base)"))


def train_generator(config: TrainGeneratorConfig, examples: list[SFTExample] | None = None) -> TrainResult:
    """Run the SFT stage into config.out_dir (skipped when its manifest is complete)."""
    out_dir = Path(config.out_dir)
    if (manifest := artifacts.read_manifest(out_dir)) is not None:
        log.info("%s complete; skipping", out_dir)
        return TrainResult(**manifest["metrics"]["train"])
    start = time.perf_counter()
    init = init_path(config)
    examples = load_examples(config) if examples is None else examples
    model, tokenizer = load_generator(config.model, init)
    items, dropped = tokenize_all(tokenizer, examples, config.train.max_length)
    main = process_state(config.train).is_main_process
    params = artifacts.write_config(out_dir, config, main)
    with open_logger(config.tracking, out_dir, _label(config), params, main_process=main) as logger:
        result = train(model, items, [len(t.input_ids) for t in items],
                       lambda batch: collate(batch, tokenizer.pad_token_id), sft_loss, config.train,
                       out_dir, logger, tokenizer)
    if main:
        inputs = {f"input{i}": p for i, p in enumerate(config.inputs)}
        if os.path.isdir(init):
            inputs["init"] = init
        metrics = {"train": dataclasses.asdict(result), "examples": len(examples), "dropped": dropped}
        artifacts.write_manifest(out_dir, inputs, ["model"], metrics, time.perf_counter() - start)
    log.info("generator SFT: %d steps, final loss %.4f, %.0f s -> %s", result.steps, result.final_loss,
             result.seconds, result.model_dir)
    return result


def _label(config: TrainGeneratorConfig) -> str:
    """Stage name in metrics: out_dir relative to run_dir ("warmup", "iter1/generator")."""
    out, run = Path(config.out_dir).resolve(), Path(config.run_dir).resolve()
    return str(out.relative_to(run)) if out.is_relative_to(run) else out.name
