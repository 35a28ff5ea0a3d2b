"""Metrics: one logger per stage, writing `metrics.jsonl` always and wandb (offline by default).

    logger = open_logger(TrackingConfig(), "runs/x/warmup", stage="warmup", params=cfg)
    logger.log({"loss": 0.7, "lr": 1e-3}, step=10)    # -> one JSON line + wandb.log
    logger.log(flat_metrics({"valid": {"auc": 0.8}}))  # -> "valid/auc": the stage's final metrics
    logger.close()

Every stage that goes through `artifacts.run_stage` (all but report, solve and export) opens one
logger, hands it to its body (the training loop logs each `log_every` steps with it) and logs its
final metrics, the ones its manifest holds, as one last row with step null, flattened to `a/b/c`
keys (list items by 1-based position: `correct_by_turn/2` is turn 2; strings, None and NaN left out).

Every line of `metrics.jsonl` is `{"stage": ..., "step": ..., "time": ..., <values>}`, appended and
flushed at once, so a killed run keeps what it logged and a resumed run appends after it. wandb runs
offline unless the user turns it on: `tracking.wandb=online` or `WANDB_MODE=online` (the environment
wins, as everywhere in wandb); `WANDB_MODE=disabled` or `tracking.wandb=disabled` turns it off. The
wandb run files go to `$WANDB_DIR` when set, else into the stage folder (`<out_dir>/wandb`);
`wandb sync <that folder>/offline-run-*` uploads them later. The first wandb run of a stage saves its
id in `<out_dir>/wandb_run_id`; a rerun of the stage (killed, then resumed) passes it with
`resume="allow"`, so its metrics go to the same run: online, wandb appends to it; offline (wandb
0.31), each process writes its own `offline-run-*-<id>` folder under the same run id, which is the
run `wandb sync` sends each of them to. Nothing is written (no file, no wandb run) before the first `log`, so a
stage that fails on a missing input leaves no folder behind.

Only the main process logs: on other ranks `open_logger(..., main_process=False)` returns a logger
that writes nothing, so callers never branch on rank or on wandb.

Limits: values must be JSON numbers (tensors are converted with `.item()`); no media. A resumed
offline run counts wandb's own step from 0 again, so only explicit steps (training's) continue.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import torch

from mucode.artifacts import atomic_write_text

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
WANDB_RUN_ID = "wandb_run_id"
"""The stage's wandb run id, saved by its first run so that a rerun continues that run."""
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
    """Appends metrics as JSON lines and forwards them to a wandb run (or a stand-in); both are opened
    by the first `log`, so a logger that logs nothing writes nothing."""

    def __init__(self, path: Path | None, stage: str, start_run: Callable[[], Any]) -> None:
        self.path, self.stage, self._start_run = path, stage, start_run
        self.run: Any = None
        self._file = None

    def log(self, values: dict[str, Any], step: int | None = None) -> None:
        """Record `values` (numbers or 0-d tensors) at `step` (None: the stage's final metrics)."""
        values = {k: _number(v) for k, v in values.items()}
        if self.run is None:
            self.run = self._start_run()
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
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
        if self.run is not None:
            self.run.finish()
            self.run = None

    def __enter__(self) -> MetricLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def flat_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float | int]:
    """A stage's nested metrics as `a/b/c` keys: dict keys, and list items by 1-based position (a
    by-turn list gives `by_turn/1`, `by_turn/2`, ...); only finite numbers are kept (strings, None,
    NaN and infinities are left out)."""
    items = metrics.items() if isinstance(metrics, dict) else enumerate(metrics, start=1)
    out: dict[str, float | int] = {}
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, (dict, list, tuple)):
            out |= flat_metrics(value, f"{name}/")
        elif isinstance(value, numbers.Real) and math.isfinite(value):
            out[name] = _number(value)
    return out


def _number(value: Any) -> float | int:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if not isinstance(value, numbers.Real):
        raise TypeError(f"metric value {value!r} is not a number")
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def open_logger(config: TrackingConfig, out_dir: str | Path, stage: str,
                params: dict[str, Any] | None = None, main_process: bool = True) -> MetricLogger:
    """A logger for one stage writing `<out_dir>/metrics.jsonl` (+ wandb); a silent one off rank 0.

    The wandb mode is checked here; the file and the wandb run are opened by the first `log`."""
    if not main_process:
        return MetricLogger(None, stage, _NoWandb)
    out_dir = Path(out_dir)
    mode = os.environ.get("WANDB_MODE") or config.wandb.value
    if mode not in WANDB_MODES:  # wandb's own error would say only "1 validation error for Settings"
        raise ValueError(f"WANDB_MODE={mode!r} is not a wandb mode; set it to offline, online or disabled")
    if mode == WandbMode.disabled.value:
        return MetricLogger(out_dir / METRICS_FILE, stage, _NoWandb)
    return MetricLogger(out_dir / METRICS_FILE, stage, lambda: _wandb_run(config, mode, out_dir, stage, params))


def _wandb_run(config: TrackingConfig, mode: str, out_dir: Path, stage: str, params: dict[str, Any] | None) -> Any:
    """Start the stage's wandb run, or continue it when an earlier process saved its id in out_dir."""
    import wandb

    folder = Path(os.environ.get("WANDB_DIR") or out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    id_file = out_dir / WANDB_RUN_ID
    resumed = id_file.is_file()
    # wandb draws its ids from the `random` module, which training seeds: two stages of one process would
    # get the same id. Ours come from the OS.
    run_id = id_file.read_text().strip() if resumed else uuid.uuid4().hex[:12]
    run = wandb.init(project=config.project, group=config.group, name=stage, job_type=stage, id=run_id,
                     resume="allow", dir=str(folder), mode=mode, config=params or {}, reinit="create_new")
    if not resumed:
        atomic_write_text(id_file, run.id + "\n")
    log.info("wandb %s run %s in %s%s", mode, run.id, folder, " (resumed)" if resumed else "")
    return run
