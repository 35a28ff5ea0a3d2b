"""Batched generation (mucode's transformers backend) vs per-sample `model.generate`, same prompts.

    python benchmarks/bench_generation.py [--prompts 64] [--new-tokens 64] [--reps 5] [--model DIR]

Both sides sample the same turn-1 prompts of the embedded suite's test split with the same model
(the default tiny Llama, ~2M parameters, randomly initialised unless --model names a trained one;
an untrained model never stops early, so both sides generate exactly --new-tokens per prompt and
tokens/s compare like for like). Runs are interleaved; medians over --reps.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mucode.generation import SamplingConfig, TransformersBackend  # noqa: E402
from mucode.iterate import tokenizer_corpus  # noqa: E402
from mucode.models import TinyModelConfig, build_tiny_model, build_tokenizer, load_generator, ModelConfig  # noqa: E402
from mucode.prompts import first_turn, render  # noqa: E402
from mucode.tasks import TaskConfig, load_problems  # noqa: E402


def per_sample(model, tok, prompts, config):
    tokens = 0
    for p in prompts:
        enc = tok(p, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, do_sample=True, temperature=config.temperature, top_p=config.top_p,
                                 max_new_tokens=config.max_new_tokens, eos_token_id=tok.eos_token_id,
                                 pad_token_id=tok.pad_token_id)
        tokens += out.shape[1] - enc["input_ids"].shape[1]
    return tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--model", default=None, help="a saved generator folder (default: untrained tiny model)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    problems = load_problems(TaskConfig(), "test")[: args.prompts]
    if args.model:
        model, tok = load_generator(ModelConfig(), args.model)
    else:
        tok = build_tokenizer(tokenizer_corpus(load_problems(TaskConfig(), "warmup")))
        model = build_tiny_model(TinyModelConfig(), tok)
    model.eval()
    prompts = [render(tok, first_turn(p)) for p in problems]
    config = SamplingConfig(temperature=0.8, max_new_tokens=args.new_tokens, batch_size=args.prompts)
    backend = TransformersBackend(model, tok)
    rates = {"batched": [], "per_sample": []}
    for rep in range(args.reps):
        start = time.perf_counter()
        tokens = sum(c.n_tokens for c in backend.generate(prompts, config))
        rates["batched"].append(tokens / (time.perf_counter() - start))
        start = time.perf_counter()
        tokens = per_sample(model, tok, prompts, config)
        rates["per_sample"].append(tokens / (time.perf_counter() - start))
        print(f"rep {rep}: batched {rates['batched'][-1]:.0f} tok/s, per-sample {rates['per_sample'][-1]:.0f} tok/s",
              flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"median tokens/s: batched {med['batched']:.0f}, per-sample {med['per_sample']:.0f}, "
          f"ratio {med['batched'] / med['per_sample']:.1f}x  ({args.prompts} prompts x {args.new_tokens} new tokens, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, torch {torch.__version__})")


if __name__ == "__main__":
    main()
