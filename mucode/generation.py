"""Batched sampling: many chat prompts at once with a KV cache, two backends behind one interface.

    generator = load_backend(model_path, ModelConfig(), SamplingConfig(temperature=0.7))
    outs = generator.generate(prompts, SamplingConfig(...))   # list[Completion], in prompt order
    generator.stats.tokens_per_s

`transformers` (always available): prompts sorted by length and cut into batches of `batch_size`,
left-padded, sampled with `model.generate` (KV cache, temperature, top-p, stop at the end-of-turn
token, max new tokens); temperature 0 is greedy. Seeded: the same prompts, config and seed give the
same completions on the same machine. `vllm` (optional extra `[vllm]`, GPU): the same interface on a
vLLM engine (paged attention, continuous batching).

Limits: the transformers backend recomputes each turn's whole prompt (no prefix cache across turns);
sampling on CPU is deterministic for a fixed batch composition, not across batch sizes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import torch

log = logging.getLogger(__name__)


class Backend(str, Enum):
    """Sampling engine."""

    transformers = "transformers"
    vllm = "vllm"


@dataclass
class SamplingConfig:
    """How completions are sampled."""

    temperature: float = 0.7
    """Softmax temperature; 0 means greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling mass in (0, 1]."""
    max_new_tokens: int = 128
    """Longest completion per turn, in tokens."""
    batch_size: int = 64
    """Prompts per forward batch (transformers backend)."""
    backend: Backend = Backend.transformers
    """Sampling engine: transformers (always) or vllm (GPU, optional extra)."""
    seed: int = 0
    """Base seed; each batch is seeded from it and the batch's position."""
    bf16: bool = False
    """Autocast the forward pass to bfloat16 (faster on CPUs with AVX512-BF16 and on GPUs)."""

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"sampling.temperature={self.temperature} must be >= 0 (0 = greedy)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"sampling.top_p={self.top_p} must be in (0, 1]")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("sampling.max_new_tokens and sampling.batch_size must be >= 1")


@dataclass
class Completion:
    """One sampled answer."""

    text: str
    """Decoded new tokens, special tokens removed."""
    n_tokens: int
    """New tokens generated, up to and including the end-of-turn token."""
    finished: bool
    """Stopped at the end-of-turn token (False: cut at max_new_tokens)."""


@dataclass
class GenerationStats:
    """Throughput counters, accumulated over calls."""

    completions: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


@dataclass
class TransformersBackend:
    """Batched `model.generate` with left padding and a KV cache."""

    model: torch.nn.Module
    tokenizer: object
    stats: GenerationStats = field(default_factory=GenerationStats)

    def generate(self, prompts: list[str], config: SamplingConfig,
                 on_batch: Callable[[list[int], list[Completion]], None] | None = None) -> list[Completion]:
        """Completions for `prompts` (rendered chat text), in prompt order.

        `on_batch(indices, completions)` is called as each batch finishes, so callers can start
        executing code while the next batch is generated.
        """
        self.model.eval()
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[Completion | None] = [None] * len(prompts)
        for b, start in enumerate(range(0, len(order), config.batch_size)):
            idx = order[start:start + config.batch_size]
            done = self._batch([prompts[i] for i in idx], config, seed=config.seed * 100_003 + b)
            for i, c in zip(idx, done):
                out[i] = c
            if on_batch is not None:
                on_batch(idx, done)
        return out  # type: ignore[return-value]

    def _batch(self, prompts: list[str], config: SamplingConfig, seed: int) -> list[Completion]:
        tok, start = self.tokenizer, time.perf_counter()
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
        sample = config.temperature > 0
        kwargs = dict(do_sample=True, temperature=config.temperature, top_p=config.top_p) if sample else \
            dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        torch.manual_seed(seed)
        with torch.inference_mode(), torch.autocast(self.model.device.type, torch.bfloat16, enabled=config.bf16):
            ids = self.model.generate(**enc, max_new_tokens=config.max_new_tokens, eos_token_id=tok.eos_token_id,
                                      pad_token_id=tok.pad_token_id, **kwargs)
        new = ids[:, enc["input_ids"].shape[1]:].tolist()
        completions = [self._completion(row) for row in new]
        self.stats.completions += len(completions)
        self.stats.tokens += sum(c.n_tokens for c in completions)
        self.stats.seconds += time.perf_counter() - start
        return completions

    def _completion(self, row: list[int]) -> Completion:
        eos = self.tokenizer.eos_token_id
        finished = eos in row
        row = row[: row.index(eos) + 1] if finished else row
        text = self.tokenizer.decode(row, skip_special_tokens=True)
        return Completion(text=text, n_tokens=len(row), finished=finished)


@dataclass
class VLLMBackend:
    """The same interface on a vLLM engine (GPU; `pip install mucode[vllm]`)."""

    llm: object
    tokenizer: object
    stats: GenerationStats = field(default_factory=GenerationStats)

    def generate(self, prompts: list[str], config: SamplingConfig,
                 on_batch: Callable[[list[int], list[Completion]], None] | None = None) -> list[Completion]:
        from vllm import SamplingParams

        params = SamplingParams(
            temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_new_tokens,
            stop_token_ids=[self.tokenizer.eos_token_id], seed=config.seed, skip_special_tokens=True,
        )
        start = time.perf_counter()
        results = self.llm.generate(prompts, params, use_tqdm=False)
        out = []
        for r in results:
            o = r.outputs[0]
            out.append(Completion(text=o.text, n_tokens=len(o.token_ids), finished=o.finish_reason == "stop"))
        self.stats.completions += len(out)
        self.stats.tokens += sum(c.n_tokens for c in out)
        self.stats.seconds += time.perf_counter() - start
        if on_batch is not None:
            on_batch(list(range(len(prompts))), out)
        return out


def load_backend(model, tokenizer, config: SamplingConfig, model_path: str | None = None):
    """A backend for an already-loaded model (transformers) or a model folder (vllm)."""
    if config.backend is Backend.transformers:
        return TransformersBackend(model, tokenizer)
    try:
        from vllm import LLM
    except ImportError:
        raise ModuleNotFoundError("sampling.backend=vllm needs `pip install mucode[vllm]` on a GPU machine") from None
    if model_path is None:
        raise ValueError("sampling.backend=vllm needs the model folder (it loads its own copy)")
    return VLLMBackend(LLM(model=model_path, seed=config.seed), tokenizer)
