"""The batch plan and the learning-rate schedule: pure functions of the config and the lengths.

Each epoch is shuffled (seeded by seed and epoch) and packed greedily in that order so that a
micro-batch holds at most `batch_tokens` tokens after padding (and at most `batch_size` examples).
With `sort_window=k > 0` the shuffled epoch is first cut into windows of ~k micro-batches, each sorted
by length (length buckets: little padding), and the micro-batches are shuffled. Where length follows
the kind of example, bucketed batches of look-alike examples can learn less per step for more
tokens/s (measured: benchmarks/README.md); the recipes in mucode.recipes say which uses which.
An optimizer step takes `grad_accum x world_size` consecutive micro-batches of that plan, micro-batch
k going to rank k % world_size. Every rank computes the same plan, so the data position is just
(epoch, offset into the plan). Micro-batches left over at the end of an epoch (fewer
than one step) are skipped in that epoch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from mucode.training.config import Schedule, TrainConfig


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


def _token_counts(batches: list[list[int]], lengths: Sequence[int]) -> tuple[int, int]:
    """(real, padded) tokens of some micro-batches."""
    real = sum(lengths[i] for b in batches for i in b)
    return real, sum(len(b) * max(lengths[i] for i in b) for b in batches)
