"""Sampling on a vLLM engine (GPU; `pip install mucode[vllm]`): the generation Backend protocol.

    backend = load_backend(None, tokenizer, SamplingConfig(backend="vllm"), "runs/x/iter1/sft/model")
    release_engines()          # before training in the same process (the training stages call it)

What matters for the loop, and how it is done:
  - every request gets its own seed (base seed and the request's position), so the K rollouts and
    the N candidates of one prompt are distinct samples, reproducible for the same request list;
  - prompts go to the engine as token ids of the rendered chat text without added special tokens
    (the chat template writes the bos itself: a string prompt would get a second bos from vLLM);
  - one engine per model folder and process, holding `sampling.vllm_memory` of the GPU, reused by
    every stage that samples from that model and dropped by `release_engines` before a training
    stage of the same process needs the memory.

Limits: one engine at a time (a new model folder releases the old engine); the engine's own
scheduling decides batching, so on_batch is called once with every request.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mucode.generation import Completion, GenerationStats, SamplingConfig

log = logging.getLogger(__name__)

_ENGINES: dict[str, Any] = {}


def requests(tokenizer, prompts: list[str], config: SamplingConfig) -> tuple[list[dict], list[dict]]:
    """(token-id prompts, sampling parameters) for each request, in order (pure; no vLLM needed)."""
    ids = tokenizer(prompts, add_special_tokens=False)["input_ids"] if prompts else []
    params = [dict(temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_new_tokens,
                   stop_token_ids=[tokenizer.eos_token_id], skip_special_tokens=True,
                   seed=config.seed * 1_000_003 + i) for i in range(len(prompts))]
    return [{"prompt_token_ids": row} for row in ids], params


def engine(model_path: str, config: SamplingConfig) -> Any:
    """The process's vLLM engine for `model_path` (made once; another model's engine is released first)."""
    if model_path in _ENGINES:
        return _ENGINES[model_path]
    try:
        from vllm import LLM
    except ImportError:
        raise ModuleNotFoundError("sampling.backend=vllm needs `pip install mucode[vllm]` on a GPU machine") from None
    release_engines()
    log.info("vLLM engine on %s (%.0f%% of GPU memory)", model_path, 100 * config.vllm_memory)
    _ENGINES[model_path] = LLM(model=model_path, seed=config.seed, gpu_memory_utilization=config.vllm_memory)
    return _ENGINES[model_path]


def release_engines() -> None:
    """Drop every vLLM engine of this process and empty the CUDA cache (no-op without one). How much
    memory vLLM really hands back depends on its version; not measured here (no GPU in CI)."""
    if not _ENGINES:
        return
    _ENGINES.clear()
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    log.info("vLLM engines released")


@dataclass
class VLLMBackend:
    """The Backend protocol on a vLLM engine."""

    llm: Any
    tokenizer: Any
    stats: GenerationStats = field(default_factory=GenerationStats)

    def generate(self, prompts: list[str], config: SamplingConfig,
                 on_batch: Callable[[list[int], list[Completion]], None] | None = None) -> list[Completion]:
        """Completions for `prompts` (rendered chat text), in prompt order."""
        from vllm import SamplingParams

        token_prompts, params = requests(self.tokenizer, prompts, config)
        start = time.perf_counter()
        results = self.llm.generate(token_prompts, [SamplingParams(**p) for p in params], use_tqdm=False)
        out = [Completion(text=r.outputs[0].text, n_tokens=len(r.outputs[0].token_ids),
                          finished=r.outputs[0].finish_reason == "stop",
                          token_ids=list(r.outputs[0].token_ids)) for r in results]
        self.stats.completions += len(out)
        self.stats.tokens += sum(c.n_tokens for c in out)
        self.stats.seconds += time.perf_counter() - start
        if on_batch is not None:
            on_batch(list(range(len(prompts))), out)
        return out
