"""Batched generation (mucode's transformers backend) vs per-sample `model.generate`, same prompts.

    python benchmarks/bench_generation.py [--prompts 64] [--new-tokens 96] [--reps 5] [--threads 1]
                                          [--turn 1] [--model DIR] [--json OUT]

Sides, run interleaved in every repetition (order rotating, so outside load hits all of them):
    per_sample      `model.generate` once per prompt (batch 1, DynamicCache): the baseline
    batched         `TransformersBackend.generate`, batch = --prompts (the KV-cache loop), fp32
    batched_bf16    the same with `SamplingConfig(bf16=True)`
    generate_batch  `model.generate` on the same left-padded batch (what the backend did before)
All sample at temperature 0.8, top-p 1. Prompts: the embedded suite's test split rendered with the
chat template, at turn 1 (or the turn-`--turn` state: earlier turns answered with the reference code
and a failing-test message, as rollouts build them). Model: the default tiny Llama (~2M parameters,
random unless --model names a trained one). A random model almost never emits the end-of-turn token;
the generate sides get `min_new_tokens` so they make exactly --new-tokens per prompt, the backend
stops a row at the end-of-turn token, and every side is scored by the tokens it made (tokens/s).
Prints each repetition and the medians of tokens/s (wall clock) and of tokens per CPU-second of
this process (with one thread, what outside load changes least); --json writes them.

Limits: CPU timings on a shared machine; --threads sets torch's intra-op threads for every side.
"""

import argparse
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from mucode.generation import SamplingConfig, TransformersBackend
from mucode.models import ModelConfig, TinyModelConfig, build_tiny_model, build_tokenizer, load_generator
from mucode.prompts import first_turn, next_turn, render
from mucode.stages.prepare import tokenizer_corpus
from mucode.tasks import TaskConfig, load_problems

TEMPERATURE = 0.8


def per_sample(model, tok, prompts: list[str], new_tokens: int) -> int:
    """`model.generate` one prompt at a time; returns the tokens generated."""
    tokens = 0
    for p in prompts:
        enc = tok(p, return_tensors="pt", add_special_tokens=False)
        out = model.generate(**enc, do_sample=True, temperature=TEMPERATURE, top_p=1.0, max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        tokens += out.shape[1] - enc["input_ids"].shape[1]
    return tokens


def generate_batch(model, tok, prompts: list[str], new_tokens: int) -> int:
    """`model.generate` on all prompts as one left-padded batch; returns the tokens generated."""
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**enc, do_sample=True, temperature=TEMPERATURE, top_p=1.0, max_new_tokens=new_tokens,
                         min_new_tokens=new_tokens, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return (out.shape[1] - enc["input_ids"].shape[1]) * len(prompts)


def state(problem, turn: int) -> list[dict]:
    """The chat state at `turn`: earlier turns answered with the reference and a failing-test message."""
    messages = first_turn(problem)
    for _ in range(turn - 1):
        test = problem.public_tests[0]
        messages = next_turn(messages, problem.reference, f"Failed: {test}\nreturned None")
    return messages


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=64, help="prompts, = the backend's batch size")
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (every side)")
    ap.add_argument("--turn", type=int, default=1, help="prompt = the chat state at this turn")
    ap.add_argument("--model", default=None, help="a saved generator folder (default: untrained tiny model)")
    ap.add_argument("--json", default=None, help="write per-repetition rates and medians here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    problems = load_problems(TaskConfig(), "test")[: args.prompts]
    if args.model:
        model, tok = load_generator(ModelConfig(), args.model)
    else:
        tok = build_tokenizer(tokenizer_corpus(load_problems(TaskConfig(), "warmup")))
        model = build_tiny_model(TinyModelConfig(), tok)
    model.eval()
    prompts = [render(tok, state(p, args.turn)) for p in problems]
    lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    backend = TransformersBackend(model, tok)
    config = SamplingConfig(temperature=TEMPERATURE, max_new_tokens=args.new_tokens, batch_size=args.prompts,
                            bf16=False)
    sides = {
        "per_sample": lambda: per_sample(model, tok, prompts, args.new_tokens),
        "batched": lambda: sum(c.n_tokens for c in backend.generate(prompts, config)),
        "batched_bf16": lambda: sum(c.n_tokens for c in backend.generate(prompts, replace(config, bf16=True))),
        "generate_batch": lambda: generate_batch(model, tok, prompts, args.new_tokens),
    }
    names = list(sides)
    rates: dict[str, list[float]] = {k: [] for k in names}
    cpu_rates: dict[str, list[float]] = {k: [] for k in names}  # per CPU-second: what outside load changes least
    tokens: dict[str, list[int]] = {k: [] for k in names}
    load = [os.getloadavg()[0]]
    print(f"{len(prompts)} prompts (turn {args.turn}, {min(lengths)}-{max(lengths)} tokens, mean "
          f"{statistics.mean(lengths):.0f}) x {args.new_tokens} new tokens, {args.threads} thread(s), "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, torch {torch.__version__}", flush=True)
    for rep in range(args.reps):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            torch.manual_seed(rep)
            start, cpu = time.perf_counter(), time.process_time()
            with torch.inference_mode():
                n = sides[name]()
            rates[name].append(n / (time.perf_counter() - start))
            cpu_rates[name].append(n / (time.process_time() - cpu))
            tokens[name].append(n)
        load.append(os.getloadavg()[0])
        print(f"rep {rep}: " + ", ".join(f"{k} {rates[k][-1]:.0f}" for k in names) + f" tok/s (load {load[-1]:.1f})",
              flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu_rates.items()}
    print("median tokens/s: " + ", ".join(f"{k} {v:.0f}" for k, v in med.items()))
    print("median tokens per CPU-second: " + ", ".join(f"{k} {v:.0f}" for k, v in cpu_med.items()))
    print(f"ratio batched / per_sample {med['batched'] / med['per_sample']:.1f}x, "
          f"batched_bf16 / per_sample {med['batched_bf16'] / med['per_sample']:.1f}x, "
          f"batched / generate_batch {med['batched'] / med['generate_batch']:.1f}x; "
          f"tokens per run: " + ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in tokens.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "args": vars(args), "rates": rates, "cpu_rates": cpu_rates, "tokens": tokens, "median": med,
            "cpu_median": cpu_med, "load": load, "torch": torch.__version__}, indent=1))


if __name__ == "__main__":
    main()
