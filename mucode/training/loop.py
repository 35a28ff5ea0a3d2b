"""The loop itself: process state, accelerator (DDP / DeepSpeed / CPU), precision, optimizer, the
metrics window and `train`, which drives the batch plan (batching.py) and the checkpoints
(checkpoint.py). The contracts of `train`'s arguments are in the package docstring (mucode.training).

The gradient of a step is the example-weighted mean of the micro-batches' mean losses, so
accumulation and data parallelism reproduce one large batch exactly. At the end the model is saved
into `out_dir/model`, then `train_result.json` is written, then the checkpoints are removed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from mucode.artifacts import atomic_write_json
from mucode.generation import bf16_is_fast
from mucode.tracking import MetricLogger
from mucode.training.batching import _token_counts, lr_factor, plan_batches, total_steps
from mucode.training.checkpoint import (
    CHECKPOINTS, RESULT_FILE, Position, fingerprint, finished_result, resume, save_checkpoint, save_model,
)
from mucode.training.config import Precision, TrainConfig, TrainResult, deepspeed_file

log = logging.getLogger(__name__)

LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, Any]]]


def resolve_precision(precision: Precision) -> Precision:
    """auto -> bf16 where bf16 is fast (CUDA with bf16, CPUs with AVX512-BF16 or AMX), else fp32."""
    if precision is not Precision.auto:
        return precision
    return Precision.bf16 if bf16_is_fast() else Precision.fp32


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
    ds = json.loads(deepspeed_file(config.deepspeed).read_text())
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

    See the package docstring (mucode.training) for the contracts of `examples`, `lengths`, `collate`
    and `loss_fn`.
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
