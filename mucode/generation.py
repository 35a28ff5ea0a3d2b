"""Batched sampling: many chat prompts at once with a KV cache, two backends behind one interface.

    generator = load_backend(model, tokenizer, SamplingConfig(temperature=0.7))
    backend = open_backend(ModelConfig(), "runs/x/iter1/sft/model", sampling)   # from a folder, as the stages do
    outs = generator.generate(prompts, SamplingConfig(...))   # list[Completion], in prompt order
    generator.stats.tokens_per_s

`transformers` (always available): prompts are tokenized, sorted by token length and cut into
batches of `batch_size`, left-padded, and sampled by a hand-written loop over the model's own layers
with a preallocated KV cache (`KVDecoder`): identical prompts in a batch (K samples of one problem,
N candidates of one state) are prefilled once; rows that reach the end-of-turn token stop and are
dropped from the batch; temperature, top-p and max new tokens as in `model.generate`; temperature
0 is greedy. Each batch samples from its own generator seeded from (seed, batch position): the same
prompts, config and seed give the same completions on the same machine. `bf16` samples from a
bfloat16 copy of the weights, at the same accuracy for about 2x the tokens/s where bf16 is fast
(benchmarks/README.md); by default (null) it is on there (`bf16_is_fast`: CUDA with bf16, CPUs with
AVX512-BF16 or AMX), off elsewhere.
The KV loop covers Llama-architecture models (the tiny default, SmolLM2); any other architecture is
sampled with `model.generate` on the same batches (same options, slower).
`vllm` (optional extra `[vllm]`, GPU): the same interface on a vLLM engine (paged attention,
continuous batching), mucode.vllm_engine.

Limits: each turn's whole prompt is prefilled again (no prefix cache across turns); sampling on
CPU is deterministic for a fixed batch composition, not across batch sizes; with bf16, greedy
batched decoding may differ from one-at-a-time decoding (rounding depends on the batch).
Throughput: benchmarks/bench_generation.py and benchmarks/README.md.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional, Protocol

import torch
import torch.nn.functional as F

from mucode.models import ModelConfig, inference_device, load_generator, load_tokenizer

log = logging.getLogger(__name__)

# Rotary variants whose frequencies do not depend on the sequence length: KVDecoder reads them once.
_STATIC_ROPE = ("default", "linear", "llama3", "yarn")


class Engine(str, Enum):
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
    backend: Engine = Engine.transformers
    """Sampling engine: transformers (always) or vllm (GPU, optional extra)."""
    seed: int = 0
    """Base seed; each batch (transformers) or request (vllm) is seeded from it and its position."""
    vllm_memory: float = 0.5
    """vllm: share of the GPU's memory its engine may hold (the engine is released before training)."""
    bf16: Optional[bool] = None
    """Sample from a bfloat16 copy of the model; null: where bf16 is fast (bf16_is_fast)."""

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"sampling.temperature={self.temperature} must be >= 0 (0 = greedy)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"sampling.top_p={self.top_p} must be in (0, 1]")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("sampling.max_new_tokens and sampling.batch_size must be >= 1")
        if not 0 < self.vllm_memory <= 1:
            raise ValueError(f"sampling.vllm_memory={self.vllm_memory} must be in (0, 1]")


@dataclass
class Completion:
    """One sampled answer."""

    text: str
    """Decoded new tokens, special tokens removed."""
    n_tokens: int
    """New tokens generated, up to and including the end-of-turn token."""
    finished: bool
    """Stopped at the end-of-turn token (False: cut at max_new_tokens)."""
    token_ids: list[int] = field(default_factory=list)
    """The new tokens themselves (what online RL scores under the policy and its reference)."""


@dataclass
class GenerationStats:
    """Throughput counters, accumulated over calls."""

    completions: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


class Backend(Protocol):
    """What rollouts, search and evaluation need from a sampling engine."""

    tokenizer: Any
    """The generator's tokenizer (its chat template renders the prompts)."""
    stats: GenerationStats
    """Throughput counters."""

    def generate(self, prompts: list[str], config: SamplingConfig,
                 on_batch: Callable[[list[int], list[Completion]], None] | None = None) -> list[Completion]:
        """Completions for `prompts` (rendered chat text), in prompt order; `on_batch` as batches finish."""
        ...


@dataclass
class TransformersBackend:
    """Batched sampling on a transformers causal LM: the KV-cache loop, or `model.generate`."""

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
        use_bf16 = bf16_is_fast() if config.bf16 is None else config.bf16
        model = bf16_copy(self.model) if use_bf16 else self.model
        ids = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        # by length (little padding); equal prompts side by side, so they share a batch and a prefill
        order = sorted(range(len(prompts)), key=lambda i: (len(ids[i]), ids[i]))
        out: list[Completion | None] = [None] * len(prompts)
        for b, start in enumerate(range(0, len(order), config.batch_size)):
            idx = order[start:start + config.batch_size]
            done = self._batch(model, [ids[i] for i in idx], config, seed=config.seed * 100_003 + b)
            for i, c in zip(idx, done):
                out[i] = c
            if on_batch is not None:
                on_batch(idx, done)
        return out  # type: ignore[return-value]

    def _batch(self, model, prompts: list[list[int]], config: SamplingConfig, seed: int) -> list[Completion]:
        start, eos = time.perf_counter(), self.tokenizer.eos_token_id
        with torch.inference_mode():
            if kv_loop_supports(model):
                generator = torch.Generator(model.device).manual_seed(seed)
                rows = sample_kv(model, prompts, config, eos, generator)
            else:
                rows = sample_generate(model, prompts, config, eos, self.tokenizer.pad_token_id, seed)
        completions = [self._completion(row) for row in rows]
        self.stats.completions += len(completions)
        self.stats.tokens += sum(c.n_tokens for c in completions)
        self.stats.seconds += time.perf_counter() - start
        return completions

    def _completion(self, row: list[int]) -> Completion:
        eos = self.tokenizer.eos_token_id
        finished = eos in row
        row = row[: row.index(eos) + 1] if finished else row
        text = self.tokenizer.decode(row, skip_special_tokens=True)
        return Completion(text=text, n_tokens=len(row), finished=finished, token_ids=list(row))


def bf16_is_fast() -> bool:
    """Whether bfloat16 compute is fast here: a CUDA device with bf16, or a CPU with AVX512-BF16 or AMX."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def bf16_copy(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with bfloat16 weights: itself if it has them, else a copy (the caller's model is untouched).

    Buffers stay as they are: rotary frequencies rounded to bfloat16 (up to 0.4% off) would turn
    position 300 by up to 0.5 radian more or less than in training.
    """
    if model.dtype == torch.bfloat16:
        return model
    model = copy.deepcopy(model)
    for p in model.parameters():
        p.data = p.data.to(torch.bfloat16)
    return model


def kv_loop_supports(model: torch.nn.Module) -> bool:
    """Whether KVDecoder reproduces `model`: Llama architecture, rotary frequencies fixed in length."""
    return model.config.model_type == "llama" and model.model.rotary_emb.rope_type in _STATIC_ROPE


def sample_kv(model, prompts: list[list[int]], config: SamplingConfig, eos: int,
              generator: torch.Generator) -> list[list[int]]:
    """For each prompt (token ids), its new token ids up to and including `eos`, by the KV-cache loop.

    Equal prompts are prefilled once. A row stops at `eos`; finished rows keep their cache slot until
    a quarter of the live rows have finished, then the batch is compacted (a copy of the cache), so
    the cost of a step follows the rows still sampling.
    """
    unique = list(dict.fromkeys(map(tuple, prompts)))
    slot = {p: i for i, p in enumerate(unique)}
    decoder = KVDecoder(model, unique, config.max_new_tokens)
    logits = decoder.prefill()
    if len(unique) < len(prompts):
        copies = torch.tensor([slot[tuple(p)] for p in prompts], device=logits.device)
        decoder.keep(copies)
        logits = logits[copies]
    out = torch.full((len(prompts), config.max_new_tokens), -1, dtype=torch.long)
    rows = torch.arange(len(prompts))  # each live row's prompt index
    alive = torch.ones(len(prompts), dtype=torch.bool)
    for t in range(config.max_new_tokens):
        tokens = sample_next(logits, config.temperature, config.top_p, generator).cpu()
        out[rows[alive], t] = tokens[alive]
        alive &= tokens != eos
        n_alive = int(alive.sum())
        if n_alive == 0 or t == config.max_new_tokens - 1:
            break
        if 4 * n_alive <= 3 * len(alive):
            keep = alive.nonzero().squeeze(1)
            decoder.keep(keep.to(logits.device))
            rows, tokens, alive = rows[keep], tokens[keep], alive[keep]
        logits = decoder.step(tokens.to(logits.device))
    return [[t for t in row if t >= 0] for row in out.tolist()]


def sample_next(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> torch.Tensor:
    """Next token per row: argmax at temperature 0, else temperature then nucleus (top-p) sampling.

    logits: (rows, vocab) float32 -> (rows,) token ids. Top-p keeps, from the likeliest down, every
    token whose better-ranked tokens hold less than `top_p` of the mass (`model.generate`'s rule).
    """
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_p < 1:
        ranked, order = logits.sort(-1, descending=True)
        probs = ranked.softmax(-1)
        ranked[probs.cumsum(-1) - probs >= top_p] = float("-inf")
        logits = torch.empty_like(logits).scatter_(-1, order, ranked)
    # inverse CDF: one uniform per row (torch.multinomial draws one per vocabulary entry)
    cdf = logits.softmax(-1).cumsum(-1)
    u = torch.rand(len(cdf), 1, generator=generator, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp(max=cdf.shape[-1] - 1)


class KVDecoder:
    """A Llama-architecture forward pass over a preallocated KV cache, for one batch of prompts.

    The model's own modules do the embedding, norms, projections, MLP and head; this class does the
    rotary embedding and attention, reading and writing keys/values in place in one tensor
    (layers, 2, rows, kv_heads, length, head_dim) allocated once per batch. (`model.generate`'s
    DynamicCache concatenates every layer's keys and values at every step, a copy of the whole
    cache, and goes through the generic mask and cache layers: a large part of a step on a small model.)
    Prompts are left-padded; all rows write the same cache column at a step, a per-row mask hides
    the padding, and each row's positions count its own tokens only.

        decoder = KVDecoder(model, [[ids...], ...], max_new_tokens)
        logits = decoder.prefill()             # (rows, vocab), after each prompt's last token
        logits = decoder.step(tokens)          # feed one token per row (at most max_new_tokens - 1 times)
        decoder.keep(rows)                     # keep, reorder or repeat rows of the batch
    """

    def __init__(self, model, prompts: list[list[int]] | list[tuple[int, ...]], max_new_tokens: int):
        attn, device = model.model.layers[0].self_attn, model.device
        self.model = model
        self.kv_heads = model.config.num_key_value_heads
        self.groups = model.config.num_attention_heads // self.kv_heads
        self.head_dim = attn.head_dim
        width = max(map(len, prompts))
        length = width + max_new_tokens - 1
        self.ids = torch.zeros(len(prompts), width, dtype=torch.long)
        self.valid = torch.zeros(len(prompts), length, dtype=torch.bool)  # cache columns a row may attend to
        for i, p in enumerate(prompts):
            self.ids[i, width - len(p):] = torch.tensor(p)
            self.valid[i, width - len(p):] = True
        self.ids, self.valid = self.ids.to(device), self.valid.to(device)
        self.position = torch.tensor([len(p) for p in prompts], device=device)  # of each row's next token
        self.kv = torch.zeros(len(model.model.layers), 2, len(prompts), self.kv_heads, length, self.head_dim,
                              dtype=model.dtype, device=device)
        self.filled = 0  # cache columns written

    def prefill(self) -> torch.Tensor:
        """Run the prompts; logits (rows, vocab) float32 for the token after each one."""
        valid = self.valid[:, : self.ids.shape[1]]
        positions = (valid.cumsum(1) - 1).clamp(min=0)
        n = valid.shape[1]
        causal = torch.ones(n, n, dtype=torch.bool, device=valid.device).tril()
        # padding positions attend to themselves only, so no softmax row is empty (NaN)
        mask = causal & valid[:, None, :] | torch.eye(n, dtype=torch.bool, device=valid.device)
        return self._forward(self.ids, positions, mask[:, None])

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed `tokens` (rows,) as every row's next token; logits (rows, vocab) float32 for the one after."""
        mask = self.valid[:, None, None, : self.filled + 1]
        logits = self._forward(tokens[:, None], self.position[:, None], mask)
        self.position = self.position + 1
        return logits

    def keep(self, rows: torch.Tensor) -> None:
        """Continue with `rows` of the batch only (indices; repeated indices copy a row)."""
        self.kv, self.valid, self.position = self.kv[:, :, rows], self.valid[rows], self.position[rows]

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, positions: (rows, T); mask: (rows, 1, T, filled + T) bool, True = may attend."""
        base, (rows, n) = self.model.model, ids.shape
        start, end = self.filled, self.filled + n
        cos, sin = self._rotary(positions)
        if self.groups > 1:  # the query heads sharing a kv head are laid out as one longer query
            mask = mask.repeat(1, 1, self.groups, 1)
        # additive form once per call: attention would convert a boolean mask in every layer
        bias = torch.zeros(mask.shape, dtype=self.kv.dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
        x = base.embed_tokens(ids)
        for i, layer in enumerate(base.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = _rotate(attn.q_proj(h).view(rows, n, -1, self.head_dim).transpose(1, 2), cos, sin)
            self.kv[i, 0, :, :, start:end] = _rotate(attn.k_proj(h).view(rows, n, -1, self.head_dim).transpose(1, 2),
                                                     cos, sin)
            self.kv[i, 1, :, :, start:end] = attn.v_proj(h).view(rows, n, -1, self.head_dim).transpose(1, 2)
            o = F.scaled_dot_product_attention(
                q.reshape(rows, self.kv_heads, self.groups * n, self.head_dim),
                self.kv[i, 0, :, :, :end], self.kv[i, 1, :, :, :end], attn_mask=bias, scale=attn.scaling)
            x = x + attn.o_proj(o.view(rows, -1, n, self.head_dim).transpose(1, 2).reshape(rows, n, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        self.filled = end
        return self.model.lm_head(base.norm(x[:, -1])).float()

    def _rotary(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin (rows, 1, T, head_dim) as the model's rotary embedding computes them."""
        rotary = self.model.model.rotary_emb
        freqs = positions[..., None].float() * rotary.inv_freq.float()
        angles = torch.cat((freqs, freqs), -1)[:, None]
        scale, dtype = rotary.attention_scaling, self.kv.dtype
        return (angles.cos() * scale).to(dtype), (angles.sin() * scale).to(dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x (rows, heads, T, head_dim), halves convention (as in transformers' Llama)."""
    x1, x2 = x.chunk(2, -1)
    return x * cos + torch.cat((-x2, x1), -1) * sin


def sample_generate(model, prompts: list[list[int]], config: SamplingConfig, eos: int, pad: int,
                    seed: int) -> list[list[int]]:
    """New token ids for each prompt with `model.generate` (architectures the KV loop does not cover)."""
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], device=model.device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.device)
    sample = config.temperature > 0
    kwargs = dict(do_sample=True, temperature=config.temperature, top_p=config.top_p) if sample else \
        dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    torch.manual_seed(seed)
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=config.max_new_tokens,
                         eos_token_id=eos, pad_token_id=pad, **kwargs)
    return out[:, width:].tolist()


def load_backend(model, tokenizer, config: SamplingConfig, model_path: str | None = None) -> Backend:
    """A backend for an already-loaded model (transformers) or a model folder (vllm, mucode.vllm_engine)."""
    if config.backend is Engine.transformers:
        return TransformersBackend(model, tokenizer)
    from mucode.vllm_engine import VLLMBackend, engine

    if model_path is None:
        raise ValueError("sampling.backend=vllm needs the model folder (it loads its own copy)")
    return VLLMBackend(engine(model_path, config), tokenizer)


def open_backend(model: ModelConfig, path: str, sampling: SamplingConfig) -> Backend:
    """A backend sampling from the generator folder `path`: what the rollouts, evaluate and solve stages
    sample with. transformers: the model on inference_device() (the GPU when there is one). vllm: only
    the tokenizer is loaded here; the engine reads the weights itself, so loading the Hugging Face model
    too would hold them twice on the GPU and load them twice."""
    if sampling.backend is Engine.vllm:
        return load_backend(None, load_tokenizer(path, model.chat_template), sampling, path)
    generator, tokenizer = load_generator(model, path, inference_device())
    return load_backend(generator, tokenizer, sampling, path)
