"""The expert-iteration driver (the main job): stages, each in its own folder of the run directory.

    python pipelines/expert_iteration.py                      # embedded default, tiny model, CPU
    python pipelines/expert_iteration.py run_dir=runs/mbpp task=mbpp task.path=data/mbpp.jsonl \
        model.name_or_path=meta-llama/Llama-3.2-1B-Instruct

Stages so far:
    problems/<split>   the task's splits as Problem datasets
    base/              the base generator: the tiny model built offline (tokenizer trained on the
                       warm-up split's text) or a copy of the configured model's name
Each stage writes `manifest.json` last; a stage with a complete manifest is skipped on rerun, so a
killed run resumes where it stopped.

Limits (this landing): the loop itself (warm start, rollouts, verifier, relabel, SFT, evaluation)
arrives with the generator-side and verifier issues; today the main job prepares the run and checks
that the base model renders a chat prompt and samples from it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mucode import artifacts
from mucode.models import TINY, ModelConfig, build_tiny_model, build_tokenizer, load_generator
from mucode.prompts import first_turn, render
from mucode.records import Problem, read_records, write_records
from mucode.tasks import TaskConfig, load_problems, split_names

log = logging.getLogger(__name__)


@dataclass
class ExpertIterationConfig:
    """The main job: the whole muCode loop on one task with one base model."""

    run_dir: str = "runs/default"
    """Where every stage writes its folder; rerunning with the same run_dir resumes."""
    seed: int = 0
    """Seed for model init, sampling and data order."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """The task suite and its splits."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model of the generator and the verifier."""


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


def sample_once(config: ExpertIterationConfig, model_path: str, problem: Problem) -> str:
    """Render the turn-1 chat prompt of `problem` and sample a short answer (a smoke check)."""
    model, tokenizer = load_generator(config.model, model_path)
    prompt = render(tokenizer, first_turn(problem))
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=24, do_sample=True, top_p=1.0,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def run(config: ExpertIterationConfig) -> None:
    """Run every stage that is not complete yet."""
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    problems = prepare_problems(config)
    base = prepare_base(config, problems)
    first = next(p for split in ("test", "valid", "train") for p in problems.get(split, []))
    log.info("sample from the base on %s: %r", first.id, sample_once(config, base, first))
    log.info("run %s ready in %.1f s: base model %s", config.run_dir, time.perf_counter() - start, base)
