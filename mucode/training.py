"""One training loop for the generator (SFT) and the verifier: CPU, one GPU, DDP, DeepSpeed ZeRO-2/3.

    result = train(model, examples, lengths, collate, loss_fn, TrainConfig(), out_dir, logger, tokenizer)

The caller supplies the data and the loss; the loop does batching, the optimizer, the schedule,
precision, gradient accumulation, distribution, checkpoints, resume, metrics and the final save:
    examples     any sequence (token ids, pairs, ...); `lengths[i]` is example i's length in tokens
    collate      list of examples -> dict of tensors (padding happens here)
    loss_fn      (model, batch) -> (loss, metrics): the loss is the MEAN over the micro-batch's
                 examples (a pure function of the model's outputs; sft.sft_loss, the verifier's
                 BCE / Bradley-Terry). metrics: name -> scalar, averaged like the loss.

How to run (the stage pipelines call `train`; rank and world size come from the environment):
    1 CPU or 1 GPU     python pipelines/train_generator.py run_dir=runs/x
    DDP, 1 node        torchrun --nproc_per_node 4 pipelines/train_generator.py run_dir=runs/x
    multi-node         srun torchrun --nnodes $SLURM_NNODES --nproc_per_node 4 --rdzv_backend c10d \
                           --rdzv_endpoint $HEAD:29500 pipelines/train_generator.py run_dir=runs/x
    DeepSpeed          the same torchrun line + train.deepspeed=conf/deepspeed/zero2.json (or zero3.json)
    CPU, 2 processes   torchrun --nproc_per_node 2 ... (gloo; plain DDP, and DeepSpeed ZeRO-2/3 too: both
                       ran here on CPU; set TORCH_EXTENSIONS_DIR so DeepSpeed's one-time C++ build, ~35 s,
                       is cached)

Batches: each epoch is shuffled (seeded by seed and epoch) and packed greedily in that order so that a
micro-batch holds at most `batch_tokens` tokens after padding (and at most `batch_size` examples).
With `sort_window=k > 0` the shuffled epoch is first cut into windows of ~k micro-batches, each sorted
by length (length buckets: little padding), and the micro-batches are shuffled. Where length follows
the kind of example (the embedded suite: number of operations), bucketed batches of look-alike
examples learn less per step (held-out loss 0.61 vs 0.43 after 60 SFT steps, benchmarks/README.md)
for ~20% more tokens/s: the warm start keeps sort_window=50 (its step budget was calibrated with it;
without, 550 steps gave 63% or 22% greedy by seed), the iteration SFT and verifier recipes use 0.
An optimizer step takes `grad_accum x world_size` consecutive micro-batches of that plan, micro-batch
k going to rank k % world_size. Every rank computes the same plan, so the data position is just
(epoch, offset into the plan). Micro-batches left over at the end of an epoch (fewer
than one step) are skipped in that epoch. The gradient of a step is the example-weighted mean of the
micro-batches' mean losses, so accumulation and data parallelism reproduce one large batch exactly.

Checkpoints (`out_dir/checkpoints/step-N`, the last `keep_checkpoints` kept) hold the model, the
optimizer, the scheduler, every rank's RNG states (accelerate's save_state; DeepSpeed shards under
ZeRO) and `trainer_state.json` (step, epoch, offset, a fingerprint of config and data), written
into `.tmp-step-N` and renamed, so a checkpoint exists whole or not at all. A rerun with the same
out_dir resumes from the newest one and ends at the same step with the same weights as a run never
interrupted (bitwise on CPU with the same seed and thread count); a checkpoint from a different config
or data fails with one line. At the end the model is saved with `save_pretrained` (+ tokenizer) into
`out_dir/model` atomically (under ZeRO-3 the 16-bit weights are gathered first), then
`train_result.json`, then the checkpoints are removed.

Limits: one model and one optimizer (AdamW); no sequence packing (sort_window > 0 keeps padding small); the
fingerprint does not hash example contents, only their count and lengths.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import torch

from mucode.artifacts import atomic_dir, atomic_write_json
from mucode.generation import bf16_is_fast
from mucode.tracking import MetricLogger

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
RESULT_FILE = "train_result.json"
# Fields that do not change what is trained; a resumed run may change them.
_NOT_FINGERPRINTED = ("log_every", "checkpoint_every", "keep_checkpoints")

LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, Any]]]


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
    """The optimization recipe; defaults are the embedded suite's warm start of the ~2M tiny model.

    Measured on 2 CPU cores (greedy turn-1 pass rate, 300 test problems): the warm start is bound by
    optimizer steps, not examples; 450 steps reached 19% at 2048 or 4096 tokens per step (lr 2e-3),
    and at lr 2e-3 whether 600-650 steps crossed the "copy the constants" transition depended on the
    seed (22% or 56-60%); at lr 4e-3, 550 x 2048 tokens gave 41-57% (seeds 0-2) with one torch thread
    but 17.7% with two (other float rounding, same seed); 700 steps give 48.0% / 48.7% (seeds 0 / 1,
    two threads, ~145 s) and 800 steps 64.3%.
    """

    lr: float = 4e-3
    """Peak learning rate."""
    schedule: Schedule = Schedule.cosine
    """cosine, linear or constant after warmup."""
    warmup_steps: int = 20
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
    max_steps: int = 700
    """Optimizer steps; 0 = set by `epochs`. With both set, the smaller wins."""
    epochs: float = 0.0
    """Passes over the data (may be fractional); 0 = set by `max_steps`."""
    batch_size: int = 0
    """Most examples per micro-batch; 0 = no cap (then batch_tokens decides)."""
    batch_tokens: int = 2048
    """Most tokens per micro-batch counting padding (examples x longest); 0 = use batch_size."""
    grad_accum: int = 1
    """Micro-batches per optimizer step and process."""
    sort_window: int = 50
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
    """A DeepSpeed JSON config (conf/deepspeed/zero2.json, zero3.json); None = plain DDP/single process."""

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
        if self.deepspeed is not None and not Path(self.deepspeed).is_file():
            raise ValueError(f"train.deepspeed={self.deepspeed}: no such file (see conf/deepspeed/)")


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


# ---------------------------------------------------------------------------------------------
# Pure pieces: schedule and batch plan


def lr_factor(step: int, total: int, config: TrainConfig) -> float:
    """Multiplier of the peak lr for optimizer step `step` (0-based) of `total`."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule is Schedule.constant:
        return 1.0
    progress = min(1.0, (step - config.warmup_steps) / max(1, total - config.warmup_steps))
    shape = 1.0 - progress if config.schedule is Schedule.linear else 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * shape


def plan_batches(lengths: Sequence[int], config: TrainConfig, epoch: int) -> list[list[int]]:
    """Micro-batches (lists of example indices) of one epoch, deterministic (see the module docstring)."""
    rng = random.Random(f"{config.seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if not config.sort_window:
        return _pack(order, lengths, config)
    mean = max(1.0, sum(lengths) / max(1, len(lengths)))
    per_batch = config.batch_size or max(1, int(config.batch_tokens // mean))
    window = per_batch * config.sort_window
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batches += _pack(chunk, lengths, config)
    rng.shuffle(batches)
    return batches


def _pack(indices: list[int], lengths: Sequence[int], config: TrainConfig) -> list[list[int]]:
    """Greedy, in the given order: add examples until the next would break a budget."""
    batches, current, longest = [], [], 0
    for i in indices:
        too_many = config.batch_size and len(current) >= config.batch_size
        too_long = config.batch_tokens and (len(current) + 1) * max(longest, lengths[i]) > config.batch_tokens
        if current and (too_many or too_long):
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, lengths[i])
    if current:
        batches.append(current)
    return batches


def padding_waste(batches: list[list[int]], lengths: Sequence[int]) -> float:
    """Share of padded positions among all positions of `batches` (0 = no padding)."""
    real, padded = _token_counts(batches, lengths)
    return 1.0 - real / padded if padded else 0.0


def total_steps(lengths: Sequence[int], config: TrainConfig, world_size: int) -> int:
    """Optimizer steps of the run: max_steps, or epochs x steps per epoch, the smaller when both."""
    per_epoch = len(plan_batches(lengths, config, 0)) // (config.grad_accum * world_size)
    if per_epoch == 0:
        raise ValueError(f"{len(lengths)} examples make fewer micro-batches than one step needs "
                         f"(grad_accum x processes = {config.grad_accum * world_size}); add data or shrink the batch")
    by_epochs = math.ceil(config.epochs * per_epoch) if config.epochs > 0 else None
    return min(s for s in (config.max_steps or None, by_epochs) if s is not None)


def resolve_precision(precision: Precision) -> Precision:
    """auto -> bf16 where bf16 is fast (CUDA with bf16, CPUs with AVX512-BF16 or AMX), else fp32."""
    if precision is not Precision.auto:
        return precision
    return Precision.bf16 if bf16_is_fast() else Precision.fp32


def fingerprint(config: TrainConfig, lengths: Sequence[int], world_size: int) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed: the recipe, the data's shape, the world size."""
    recipe = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_FINGERPRINTED}
    digest = hashlib.sha256(",".join(map(str, lengths)).encode()).hexdigest()[:16]
    recipe = json.loads(json.dumps(recipe, default=lambda v: v.value))
    return {**recipe, "examples": len(lengths), "lengths_sha": digest, "processes": world_size}


# ---------------------------------------------------------------------------------------------
# Setup: accelerator, optimizer, DeepSpeed config


def process_state(config: TrainConfig):
    """accelerate's per-process state (rank, world size from the launcher's environment).

    The first call in a process fixes the backend, so stages call this (not PartialState()) before
    training: gloo on CPU, NCCL on GPUs, DeepSpeed's own init when `config.deepspeed` is set (a lone
    process without a launcher gets a one-process world).
    """
    from accelerate import PartialState

    if config.deepspeed:
        os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
        if "LOCAL_RANK" not in os.environ:
            single = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
            os.environ.update({**single, "MASTER_PORT": os.environ.get("MASTER_PORT", "29517")})
        return PartialState(backend=None if torch.cuda.is_available() else "gloo")
    return PartialState(cpu=not torch.cuda.is_available())


def make_accelerator(config: TrainConfig):
    """An Accelerator for this run (DDP/DeepSpeed from the environment and the config)."""
    from accelerate import Accelerator, DeepSpeedPlugin
    from accelerate.state import AcceleratorState, GradientState

    process_state(config)

    # accelerate keeps process-wide singletons; one process may train several stages (SFT, then the
    # verifier) with other precision or accumulation, so forget the previous run's settings.
    AcceleratorState._reset_state()
    GradientState._reset_state()
    precision = resolve_precision(config.precision)
    plugin = None
    if config.deepspeed:
        plugin = DeepSpeedPlugin(hf_ds_config=deepspeed_config(config, precision),
                                 gradient_accumulation_steps=config.grad_accum)
    return Accelerator(cpu=not torch.cuda.is_available() and not config.deepspeed,
                       mixed_precision="bf16" if precision is Precision.bf16 else "no",
                       gradient_accumulation_steps=config.grad_accum, deepspeed_plugin=plugin,
                       step_scheduler_with_optimizer=False)


def deepspeed_config(config: TrainConfig, precision: Precision) -> dict[str, Any]:
    """The JSON config with this run's values filled in where it says "auto"."""
    ds = json.loads(Path(config.deepspeed).read_text())
    filled = {
        "gradient_accumulation_steps": config.grad_accum,
        "gradient_clipping": config.grad_clip,
        "train_micro_batch_size_per_gpu": 1,  # nominal: micro-batches vary in size (token budget)
    }
    for key, value in filled.items():
        if ds.get(key, "auto") == "auto":
            ds[key] = value
    ds.pop("train_batch_size", None)  # derived by DeepSpeed from the three above and the world size
    ds.setdefault("bf16", {})["enabled"] = precision is Precision.bf16
    ds.setdefault("zero_allow_untested_optimizer", True)  # torch AdamW as the client optimizer
    return ds


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices (ndim >= 2) only."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr,
                             betas=(config.beta1, config.beta2), eps=config.eps)


# ---------------------------------------------------------------------------------------------
# Checkpoints and the final save


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


# ---------------------------------------------------------------------------------------------
# The loop


class _Window:
    """Metrics summed over the steps since the last log line."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps, self.examples, self.tokens, self.grad_norm = 0, 0, 0, 0.0
        self.loss, self.metrics = 0.0, {}
        self.start = time.perf_counter()

    def add_micro(self, loss: torch.Tensor, metrics: dict[str, Any], share: float) -> None:
        """One micro-batch of this rank; `share` = its examples / the step's examples (all ranks)."""
        self.loss += loss.item() * share
        for name, value in metrics.items():
            self.metrics[name] = self.metrics.get(name, 0.0) + float(value) * share

    def add_step(self, examples: int, tokens: int, grad_norm: float) -> None:
        self.steps, self.examples, self.tokens = self.steps + 1, self.examples + examples, self.tokens + tokens
        self.grad_norm += grad_norm

    def flush(self, accelerator) -> dict[str, float]:
        """Per-step means over the window (loss and metrics summed over ranks), then reset."""
        local = torch.tensor([self.loss, *self.metrics.values()], dtype=torch.float64)
        sums = accelerator.reduce(local.to(accelerator.device), reduction="sum").cpu().tolist()
        elapsed = max(1e-9, time.perf_counter() - self.start)
        values = {"loss": sums[0] / self.steps, "grad_norm": self.grad_norm / self.steps,
                  "tokens_per_s": self.tokens / elapsed, "examples_per_s": self.examples / elapsed,
                  **{k: v / self.steps for k, v in zip(self.metrics, sums[1:])}}
        self.reset()
        return values


def train(model: torch.nn.Module, examples: Sequence[Any], lengths: Sequence[int],
          collate: Callable[[list[Any]], dict[str, torch.Tensor]], loss_fn: LossFn, config: TrainConfig,
          out_dir: str | Path, logger: MetricLogger, tokenizer: Any = None) -> TrainResult:
    """Train `model` in place and save it to `out_dir/model`; resumes from `out_dir/checkpoints`.

    See the module docstring for the contracts of `examples`, `lengths`, `collate` and `loss_fn`.
    """
    from accelerate.utils import set_seed

    assert len(examples) == len(lengths), f"{len(examples)} examples but {len(lengths)} lengths"
    out_dir = Path(out_dir)
    accelerator = make_accelerator(config)
    world, rank = accelerator.num_processes, accelerator.process_index
    fp = fingerprint(config, lengths, world)
    if (done := finished_result(out_dir, fp)) is not None:
        log.info("%s: training already finished (%d steps); nothing to do", out_dir, done.steps)
        return done
    set_seed(config.seed)
    total = total_steps(lengths, config, world)
    optimizer = make_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, config))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    pos = resume(accelerator, out_dir, fp)
    resumed_from, group = pos.step, config.grad_accum * world
    plan = plan_batches(lengths, config, pos.epoch)
    window, final_loss, real_tokens, padded_tokens = _Window(), math.nan, 0, 0
    start = time.perf_counter()
    log.info("training %d steps (from %d) on %d examples, %d process(es), precision %s",
             total, pos.step, len(examples), world, accelerator.mixed_precision)
    model.train()
    while pos.step < total:
        if pos.offset + group > len(plan):  # epoch exhausted: the next one, reshuffled
            pos.epoch, pos.offset = pos.epoch + 1, 0
            plan = plan_batches(lengths, config, pos.epoch)
            continue
        step_batches = plan[pos.offset:pos.offset + group]  # the same on every rank
        n_step = sum(len(b) for b in step_batches)
        lr, grad_norm = scheduler.get_last_lr()[0], None
        for micro in step_batches[rank::world]:
            with accelerator.accumulate(model):
                batch = collate([examples[i] for i in micro])
                loss, metrics = loss_fn(model, {k: v.to(accelerator.device) for k, v in batch.items()})
                # the micro-batch's mean loss weighted by its share of the step's examples; accelerate
                # divides by grad_accum and DDP/DeepSpeed average over ranks, which the factor undoes
                accelerator.backward(loss * (len(micro) * group / n_step))
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.grad_clip or math.inf)
                optimizer.step()
                optimizer.zero_grad()
            window.add_micro(loss, metrics, len(micro) / n_step)
        assert grad_norm is not None, "the last micro-batch of a step must sync gradients"
        scheduler.step()
        real, padded = _token_counts(step_batches, lengths)
        real_tokens, padded_tokens = real_tokens + real, padded_tokens + padded
        window.add_step(n_step, real, float(grad_norm))
        pos = Position(pos.step + 1, pos.epoch, pos.offset + group, pos.examples + n_step, pos.tokens + real)
        if pos.step % config.log_every == 0 or pos.step == total:
            values = {**window.flush(accelerator), "lr": lr, "epoch": pos.epoch + pos.offset / len(plan)}
            logger.log(values, step=pos.step)
            log.info("step %d/%d loss %.4f lr %.2e %.0f tok/s", pos.step, total, values["loss"], lr,
                     values["tokens_per_s"])
            final_loss = values["loss"]
        if config.checkpoint_every and pos.step % config.checkpoint_every == 0 and pos.step < total:
            save_checkpoint(accelerator, out_dir, pos, config.keep_checkpoints, fp)
    seconds = time.perf_counter() - start
    save_model(accelerator, model, tokenizer, out_dir / "model")
    accelerator.unwrap_model(model, keep_fp32_wrapper=False)  # restores the caller's model.forward
    result = TrainResult(
        steps=pos.step, epochs=pos.epoch + pos.offset / len(plan), examples=pos.examples, tokens=pos.tokens,
        padding_waste=1.0 - real_tokens / max(1, padded_tokens), seconds=seconds,
        tokens_per_s=real_tokens / seconds, final_loss=final_loss, resumed_from=resumed_from,
        precision=accelerator.mixed_precision, model_dir=str(out_dir / "model"),
    )
    if accelerator.is_main_process:
        atomic_write_json(out_dir / RESULT_FILE, {**dataclasses.asdict(result), "fingerprint": fp})
        shutil.rmtree(out_dir / CHECKPOINTS, ignore_errors=True)
    accelerator.wait_for_everyone()
    return result


def _token_counts(batches: list[list[int]], lengths: Sequence[int]) -> tuple[int, int]:
    """(real, padded) tokens of some micro-batches."""
    real = sum(lengths[i] for b in batches for i in b)
    return real, sum(len(b) * max(lengths[i] for i in b) for b in batches)
