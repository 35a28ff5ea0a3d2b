"""Stage prepare: the run's problems (every split of the task, and of the other tasks it is evaluated
on) and, for the tiny default, its base model.

    python pipelines/prepare.py run_dir=runs/default                    # embedded suite + tiny base
    python pipelines/prepare.py run_dir=runs/mbpp task=mbpp task.path=data/mbpp.jsonl model=hub \
        eval_tasks=[mbpp,humaneval]

Writes run_dir/problems/<split> (Problem datasets), run_dir/problems-<task>/<split> for every other task
in `eval_tasks` and, when model.name_or_path is "tiny", run_dir/base/model: the tiny Llama and its
byte-level BPE tokenizer, trained on the task's own text (warm-up split, else train) in about a second,
offline. A pretrained model needs no base stage: it is used as it is. Each folder is skipped when complete.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from mucode import artifacts
from mucode.models import TINY, ModelConfig, build_tiny_model, build_tokenizer
from mucode.records import Problem, read_records, write_records
from mucode.tasks import TaskConfig, evaluation_tasks, load_problems, split_names
from mucode.tracking import TrackingConfig

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
    eval_tasks: list[str] = field(default_factory=list)
    """The tasks the generators are evaluated on (the main job's eval.tasks): every one but the run's own
    task gets its problems in problems-<task>/."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """metrics.jsonl + wandb (the split sizes, the base model's size)."""

    def __post_init__(self) -> None:
        evaluation_tasks(self.task, self.eval_tasks)  # fails with one line on a task it cannot load


def tokenizer_corpus(problems: list[Problem]) -> list[str]:
    """Text the tiny tokenizer is trained on: statements, tests, references and feedback phrases."""
    texts = [p.prompt + "\n" + "\n".join(p.tests) + "\n" + (p.reference or "") for p in problems]
    feedback = [
        "Failed: assert f(1) == 2\nf(1) returned 3", "raised TypeError: unsupported operand",
        "Error: SyntaxError: invalid syntax (line 2)", "Timed out after 3 s", "Memory limit exceeded",
        "```python\ndef f(x):\n    return x\n```", "Tests:\nassert f([1, 2]) == [2, 4]",
    ]
    return texts + feedback * 50


def write_problems(config: PrepareConfig, other: str | None = None) -> artifacts.StageOutput:
    """Every split of the run's task (or of the `other` task in config.task) as a Problem dataset."""
    stage = artifacts.RunLayout(config.run_dir).problems(task=other)
    splits = {name: load_problems(config.task, name) for name in split_names(config.task)}
    for name, problems in splits.items():
        write_records(problems, stage / name, Problem)
    sizes = {name: len(p) for name, p in splits.items()}
    log.info("problems%s: %s", f" of {other}" if other else "", sizes)
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


def folders(config: PrepareConfig) -> dict[str, artifacts.StageFolder]:
    """The stage's folders by name. The problems do not depend on the model, and no folder on the list
    of evaluation tasks (adding one later leaves the others complete); another task's problems record
    that task as their `task`; base/ only for the tiny default."""
    layout = artifacts.RunLayout(config.run_dir)
    unchecked = ("model", "eval_tasks")
    out = {"problems": artifacts.StageFolder(layout.problems(), config, unchecked, lambda: write_problems(config))}
    for name, task in evaluation_tasks(config.task, config.eval_tasks).items():
        if task is not config.task:
            other = dataclasses.replace(config, task=task, eval_tasks=[])
            out[f"problems-{name}"] = artifacts.StageFolder(layout.problems(task=name), other, unchecked,
                                                            lambda c=other, t=name: write_problems(c, t))
    if config.model.name_or_path == TINY:
        out["base"] = artifacts.StageFolder(layout.base, config, ("eval_tasks",), lambda: build_base(config))
    return out


def run(config: PrepareConfig) -> dict[str, Any]:
    """Write the problems and (tiny default) the base; returns {folder name: metrics}."""
    return {name: f.run() for name, f in folders(config).items()}
