"""Stage prepare: the run's problems (every split of the task) and, for the tiny default, its base model.

    python pipelines/prepare.py run_dir=runs/default                    # embedded suite + tiny base
    python pipelines/prepare.py run_dir=runs/mbpp task=mbpp task.path=data/mbpp.jsonl model=hub

Writes run_dir/problems/<split> (Problem datasets) and, when model.name_or_path is "tiny",
run_dir/base/model: the tiny Llama and its byte-level BPE tokenizer, trained on the task's own text
(warm-up split, else train) in about a second, offline. A pretrained model needs no base stage: it
is used as it is. Each of the two folders is skipped when complete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mucode import artifacts
from mucode.models import TINY, ModelConfig, build_tiny_model, build_tokenizer
from mucode.records import Problem, read_records, write_records
from mucode.tasks import TaskConfig, load_problems, split_names

log = logging.getLogger(__name__)


@dataclass
class PrepareConfig:
    """Stage: the task's problems and the tiny base model of a run."""

    run_dir: str = "runs/default"
    """The run directory (see artifacts.RunLayout)."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """The task suite and its splits."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model; only the tiny default is built here."""


def tokenizer_corpus(problems: list[Problem]) -> list[str]:
    """Text the tiny tokenizer is trained on: statements, tests, references and feedback phrases."""
    texts = [p.prompt + "\n" + "\n".join(p.tests) + "\n" + (p.reference or "") for p in problems]
    feedback = [
        "Failed: assert f(1) == 2\nf(1) returned 3", "raised TypeError: unsupported operand",
        "Error: SyntaxError: invalid syntax (line 2)", "Timed out after 3 s", "Memory limit exceeded",
        "```python\ndef f(x):\n    return x\n```", "Tests:\nassert f([1, 2]) == [2, 4]",
    ]
    return texts + feedback * 50


def write_problems(config: PrepareConfig) -> artifacts.StageOutput:
    """Every split of the task as a Problem dataset."""
    stage = artifacts.RunLayout(config.run_dir).problems()
    splits = {name: load_problems(config.task, name) for name in split_names(config.task)}
    for name, problems in splits.items():
        write_records(problems, stage / name, Problem)
    sizes = {name: len(p) for name, p in splits.items()}
    log.info("problems: %s", sizes)
    return artifacts.StageOutput({}, list(splits), {"sizes": sizes})


def build_base(config: PrepareConfig) -> artifacts.StageOutput:
    """The tiny model and its tokenizer, trained on the warm-up (else train) split's text."""
    layout = artifacts.RunLayout(config.run_dir)
    names = split_names(config.task)
    source = "warmup" if "warmup" in names else "train" if "train" in names else None
    problems = read_records(layout.problems(source), Problem) if source else []
    tokenizer = build_tokenizer(tokenizer_corpus(problems), config.model.tiny.vocab_size)
    model = build_tiny_model(config.model.tiny, tokenizer)
    with artifacts.atomic_dir(layout.model(layout.base)) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("base: tiny model with %d parameters, vocabulary %d", n_params, len(tokenizer))
    return artifacts.StageOutput({}, [artifacts.MODEL], {"parameters": n_params, "vocab_size": len(tokenizer)})


def folders(config: PrepareConfig) -> dict[str, tuple[Path, tuple[str, ...]]]:
    """The stage's folders and the config fields each leaves out: the problems do not depend on the
    model, so its fields are not in their config.yaml nor checked on a rerun; base/ only for tiny."""
    layout = artifacts.RunLayout(config.run_dir)
    out = {"problems": (layout.problems(), ("model",))}
    if config.model.name_or_path == TINY:
        out["base"] = (layout.base, ())
    return out


def run(config: PrepareConfig) -> dict[str, Any]:
    """Write the problems and (tiny default) the base; returns {"problems": metrics, "base": metrics}."""
    bodies = {"problems": write_problems, "base": build_base}
    return {name: artifacts.run_stage(folder, config, lambda body=bodies[name]: body(config), exclude=exclude)
            for name, (folder, exclude) in folders(config).items()}
