"""The training recipe and its result: TrainConfig (with its choices Schedule and Precision) and
TrainResult, the record of a finished run (also written to out_dir/train_result.json)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any


class Schedule(str, Enum):
    """Learning-rate shape after the linear warmup."""

    cosine = "cosine"
    linear = "linear"
    constant = "constant"


class Precision(str, Enum):
    """Compute precision; weights and optimizer states stay fp32 (bf16 is autocast)."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


@dataclass
class TrainConfig:
    """The optimization recipe. The defaults are neutral (one epoch at lr 1e-4, random batches); each
    stage's tuned recipe is named in mucode.recipes."""

    lr: float = 1e-4
    """Peak learning rate."""
    schedule: Schedule = Schedule.cosine
    """cosine, linear or constant after warmup."""
    warmup_steps: int = 0
    """Linear warmup from lr/warmup_steps to lr."""
    min_lr_ratio: float = 0.1
    """Final lr as a fraction of the peak (cosine and linear)."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.95
    """AdamW beta2."""
    eps: float = 1e-8
    """AdamW epsilon."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay, on matrices only (not norms, biases)."""
    max_steps: int = 0
    """Optimizer steps; 0 = set by `epochs`. With both set, the smaller wins."""
    epochs: float = 1.0
    """Passes over the data (may be fractional); 0 = set by `max_steps`."""
    batch_size: int = 0
    """Most examples per micro-batch; 0 = no cap (then batch_tokens decides)."""
    batch_tokens: int = 2048
    """Most tokens per micro-batch counting padding (examples x longest); 0 = use batch_size."""
    grad_accum: int = 1
    """Micro-batches per optimizer step and process."""
    sort_window: int = 0
    """Length buckets: sort windows of about this many micro-batches by length (0 = random batches)."""
    max_length: int = 1024
    """Longest example in tokens (the data side truncates or drops longer ones); <= batch_tokens."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this; 0 = no clipping (the norm is still logged)."""
    precision: Precision = Precision.auto
    """auto (bf16 where the hardware has fast bf16: recent GPUs, CPUs with AVX512-BF16/AMX), fp32 or bf16."""
    checkpoint_every: int = 100
    """Save a resumable checkpoint every this many steps; 0 = never."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep."""
    log_every: int = 10
    """Log metrics every this many steps."""
    seed: int = 0
    """Seed of the data order and of any randomness in the model."""
    deepspeed: str | None = None
    """A DeepSpeed JSON config (conf/deepspeed/zero2.json, zero3.json; a relative path is looked up from the
    working directory, then from the checkout: deepspeed_file); None = plain DDP/single process."""

    def __post_init__(self) -> None:
        self.schedule = _choice(Schedule, self.schedule, "train.schedule")
        self.precision = _choice(Precision, self.precision, "train.precision")
        positive = {"lr": self.lr, "grad_accum": self.grad_accum, "max_length": self.max_length,
                    "log_every": self.log_every, "keep_checkpoints": self.keep_checkpoints}
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"train.{name}={value} must be > 0")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ValueError("train.max_steps and train.epochs are both 0; set one of them > 0")
        if self.batch_size <= 0 and self.batch_tokens <= 0:
            raise ValueError("train.batch_size and train.batch_tokens are both 0; set one of them > 0")
        if 0 < self.batch_tokens < self.max_length:
            raise ValueError(f"train.batch_tokens={self.batch_tokens} must be >= train.max_length={self.max_length}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"train.min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise ValueError(f"train.beta1={self.beta1}, train.beta2={self.beta2} must be in [0, 1)")
        if min(self.warmup_steps, self.checkpoint_every, self.weight_decay, self.grad_clip, self.sort_window) < 0:
            raise ValueError("train.warmup_steps, checkpoint_every, weight_decay, grad_clip and sort_window "
                             "must be >= 0")
        if self.deepspeed is not None and not deepspeed_file(self.deepspeed).is_file():
            raise ValueError(f"train.deepspeed={self.deepspeed}: no such file (see conf/deepspeed/)")


ROOT = Path(__file__).resolve().parents[2]
"""The checkout (mucode runs from one, installed editable): where the shipped conf/ lives."""


def deepspeed_file(path: str) -> Path:
    """The DeepSpeed JSON that `path` names: as given when it is absolute or found from the working
    directory, else relative to the checkout, so `conf/deepspeed/zero3.json` works from any directory."""
    given = Path(path)
    return given if given.is_absolute() or given.is_file() else ROOT / given


def _choice(enum: type[Enum], value: Any, name: str) -> Any:
    """`value` as a member of `enum`, or a one-line error listing the choices."""
    choices = [m.value for m in enum]
    if value not in choices:
        raise ValueError(f"{name}={value!r}; choose one of {', '.join(choices)}")
    return enum(value)


@dataclass
class TrainResult:
    """What a finished training run did (also written to out_dir/train_result.json)."""

    steps: int
    epochs: float
    examples: int
    tokens: int
    padding_waste: float
    seconds: float
    tokens_per_s: float
    final_loss: float
    resumed_from: int
    precision: str
    model_dir: str

