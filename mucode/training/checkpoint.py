"""Checkpoints, resume and the final save: what makes a killed run end like an uninterrupted one.

A checkpoint (`out_dir/checkpoints/step-N`, the last `keep_checkpoints` kept) holds the model, the
optimizer, the scheduler, every rank's RNG states (accelerate's save_state; DeepSpeed shards under
ZeRO) and `trainer_state.json` (step, epoch, offset, a fingerprint of config and data), written
into `.tmp-step-N` and renamed, so a checkpoint exists whole or not at all. A rerun with the same
out_dir resumes from the newest one; a checkpoint (or a finished result) from a different config or
data fails with one line. The model is saved with `save_pretrained` (+ tokenizer) into
`out_dir/model` atomically (under ZeRO-3 the 16-bit weights are gathered first).

Limits: the fingerprint does not hash example contents, only their count and lengths.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mucode.artifacts import atomic_dir, atomic_write_json
from mucode.training.config import TrainConfig, TrainResult

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
RESULT_FILE = "train_result.json"
# Fields that do not change what is trained; a resumed run may change them.
_NOT_FINGERPRINTED = ("log_every", "checkpoint_every", "keep_checkpoints")


def fingerprint(config: TrainConfig, lengths: Sequence[int], world_size: int) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed: the recipe, the data's shape, the world size."""
    recipe = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_FINGERPRINTED}
    digest = hashlib.sha256(",".join(map(str, lengths)).encode()).hexdigest()[:16]
    recipe = json.loads(json.dumps(recipe, default=lambda v: v.value))
    return {**recipe, "examples": len(lengths), "lengths_sha": digest, "processes": world_size}


@dataclass
class Position:
    """Where training stands: optimizer steps done and the data consumed."""

    step: int = 0
    epoch: int = 0
    offset: int = 0
    """Micro-batches of this epoch's plan already consumed."""
    examples: int = 0
    tokens: int = 0


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint folder, if any."""
    done = [p for p in (out_dir / CHECKPOINTS).glob("step-*") if (p / STATE_FILE).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def save_checkpoint(accelerator, out_dir: Path, position: Position, keep: int, fp: dict) -> None:
    """Write `checkpoints/step-N` (every rank writes its part), atomically, and prune old ones."""
    root = out_dir / CHECKPOINTS
    tmp, final = root / f".tmp-step-{position.step}", root / f"step-{position.step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(tmp / STATE_FILE, {"position": position, "fingerprint": fp})
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        old = sorted(root.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[:-keep]
        for path in old:
            shutil.rmtree(path, ignore_errors=True)
    accelerator.wait_for_everyone()


def resume(accelerator, out_dir: Path, fp: dict) -> Position:
    """Load the newest checkpoint into the prepared objects (and RNGs); a fresh Position if none."""
    path = latest_checkpoint(out_dir)
    if path is None:
        return Position()
    state = json.loads((path / STATE_FILE).read_text())
    _check_fingerprint(state["fingerprint"], fp, path)
    accelerator.load_state(str(path))
    position = Position(**state["position"])
    log.info("resuming from %s (step %d, epoch %d)", path, position.step, position.epoch)
    return position


def _check_fingerprint(saved: dict, now: dict, path: Path) -> None:
    for key in sorted(set(saved) | set(now)):
        if saved.get(key) != now.get(key):
            raise ValueError(f"{path}: written with {key}={saved.get(key)!r}, now {key}={now.get(key)!r}; "
                             f"delete {path.parent} to start over or restore the setting")


def save_model(accelerator, model, tokenizer, path: Path) -> None:
    """save_pretrained the full weights (gathered under ZeRO-3) + tokenizer into `path`, atomically."""
    state_dict = accelerator.get_state_dict(model)  # collective under ZeRO-3: every rank calls it
    if accelerator.is_main_process:
        empty = [k for k, t in state_dict.items() if t.numel() == 0]
        if not state_dict or empty:  # the ZeRO-3 trap: sharded parameters saved as empty tensors
            raise RuntimeError(f"gathered weights are empty ({empty[:3]}); under ZeRO-3 set "
                               "stage3_gather_16bit_weights_on_model_save: true in the DeepSpeed config")
        with atomic_dir(path) as tmp:
            accelerator.unwrap_model(model).save_pretrained(tmp, state_dict=state_dict)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
    accelerator.wait_for_everyone()


def finished_result(out_dir: Path, fp: dict) -> TrainResult | None:
    """The result of a training run that already completed in `out_dir` with the same fingerprint."""
    path = out_dir / RESULT_FILE
    if not path.is_file() or not (out_dir / "model" / "config.json").is_file():
        return None
    saved = json.loads(path.read_text())
    _check_fingerprint(saved.pop("fingerprint"), fp, path)
    return TrainResult(**saved)
