"""Metrics: one logger per stage, writing `metrics.jsonl` always and wandb (offline by default).

    logger = open_logger(TrackingConfig(), "runs/x/warmup", stage="warmup", config=cfg)
    logger.log({"loss": 0.7, "lr": 1e-3}, step=10)    # -> one JSON line + wandb.log
    logger.close()

Every line of `metrics.jsonl` is `{"stage": ..., "step": ..., "time": ..., <values>}`, appended and
flushed at once, so a killed run keeps what it logged and a resumed run appends after it. wandb runs
offline unless the user turns it on: `tracking.wandb=online` or `WANDB_MODE=online` (the environment
wins, as everywhere in wandb); `WANDB_MODE=disabled` or `tracking.wandb=disabled` turns it off. The
wandb run files go to `$WANDB_DIR` when set, else into the stage folder (`<out_dir>/wandb`);
`wandb sync <that folder>/offline-run-*` uploads them later.

Only the main process logs: on other ranks `open_logger(..., main_process=False)` returns a logger
that writes nothing, so callers never branch on rank or on wandb.

Limits: values must be JSON numbers (tensors are converted with `.item()`); no media.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
WANDB_MODES = ("offline", "online", "disabled", "shared", "dryrun", "run")  # what wandb.init accepts


class WandbMode(str, Enum):
    """Where wandb sends a run."""

    offline = "offline"
    online = "online"
    disabled = "disabled"


@dataclass
class TrackingConfig:
    """Experiment tracking: metrics.jsonl always, wandb behind the same logger."""

    wandb: WandbMode = WandbMode.offline
    """offline (default; `wandb sync` later), online, or disabled; $WANDB_MODE overrides it."""
    project: str = "mucode"
    """wandb project name."""
    group: str | None = None
    """wandb group (the driver sets it to the run directory's name so all stages of a run group)."""

    def __post_init__(self) -> None:
        if self.wandb not in {m.value for m in WandbMode}:
            raise ValueError(f"tracking.wandb={self.wandb!r}; choose offline, online or disabled")
        self.wandb = WandbMode(self.wandb)
        if not self.project:
            raise ValueError("tracking.project is empty; give a wandb project name")


class _NoWandb:
    """Stands in for a wandb run when wandb is disabled or on non-main ranks."""

    def log(self, values: dict[str, Any], step: int | None = None) -> None:
        pass

    def finish(self) -> None:
        pass


class MetricLogger:
    """Appends metrics as JSON lines and forwards them to a wandb run (or a stand-in)."""

    def __init__(self, path: Path | None, stage: str, run: Any) -> None:
        self.path, self.stage, self.run = path, stage, run
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")

    def log(self, values: dict[str, Any], step: int | None = None) -> None:
        """Record `values` (numbers or 0-d tensors) at `step`."""
        values = {k: _number(v) for k, v in values.items()}
        if self._file is not None:
            row = {"stage": self.stage, "step": step, "time": round(time.time(), 3), **values}
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()
        self.run.log({f"{self.stage}/{k}": v for k, v in values.items()}, step=step)

    def close(self) -> None:
        """Flush and close the file; finish the wandb run."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self.run.finish()

    def __enter__(self) -> MetricLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _number(value: Any) -> float | int:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if not isinstance(value, numbers.Real):
        raise TypeError(f"metric value {value!r} is not a number")
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def open_logger(config: TrackingConfig, out_dir: str | Path, stage: str,
                params: dict[str, Any] | None = None, main_process: bool = True) -> MetricLogger:
    """A logger for one stage writing `<out_dir>/metrics.jsonl` (+ wandb); a silent one off rank 0."""
    if not main_process:
        return MetricLogger(None, stage, _NoWandb())
    out_dir = Path(out_dir)
    return MetricLogger(out_dir / METRICS_FILE, stage, _wandb_run(config, out_dir, stage, params))


def _wandb_run(config: TrackingConfig, out_dir: Path, stage: str, params: dict[str, Any] | None) -> Any:
    mode = os.environ.get("WANDB_MODE") or config.wandb.value
    if mode not in WANDB_MODES:  # wandb's own error would say only "1 validation error for Settings"
        raise ValueError(f"WANDB_MODE={mode!r} is not a wandb mode; set it to offline, online or disabled")
    if mode == WandbMode.disabled.value:
        return _NoWandb()
    import wandb

    folder = Path(os.environ.get("WANDB_DIR") or out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=config.project, group=config.group, name=stage, job_type=stage,
                     dir=str(folder), mode=mode, config=params or {}, reinit="create_new")
    log.info("wandb %s run %s in %s", mode, run.id, folder)
    return run
