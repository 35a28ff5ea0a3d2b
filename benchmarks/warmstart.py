"""Warm start of the tiny model on the embedded default: wall time, steps, greedy turn-1 pass rate.

    python benchmarks/warmstart.py                         # defaults: the stage's recipe, 300 test problems
    python benchmarks/warmstart.py --precision fp32 --run-dir /tmp/ws-fp32
    python benchmarks/warmstart.py --steps 60 --n-test 100   # quicker look

Builds the run's problems and tiny base (the prepare stage, as the main job does), runs the warm_start
stage with its recipe (mucode.recipes.warm_start), then decodes greedily the turn-1 prompt of the first
N test problems (mucode.generation, bf16 autocast where training used it) and runs each extracted
program against all of the problem's tests in mucode.sandbox. Prints one JSON object; the target is a pass rate in
[0.25, 0.60] with the training stage in <= 240 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace

from mucode import recipes
from mucode.artifacts import RunLayout
from mucode.generation import SamplingConfig, TransformersBackend
from mucode.models import ModelConfig, load_generator
from mucode.prompts import extract_code, first_turn, render
from mucode.records import Problem, read_records
from mucode.sandbox import Job, Sandbox, SandboxConfig
from mucode.stages import prepare, warm_start
from mucode.tracking import TrackingConfig, WandbMode
from mucode.training import Precision, TrainResult


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="/tmp/mucode-warmstart")
    recipe = recipes.warm_start()
    parser.add_argument("--steps", type=int, default=recipe.max_steps)
    parser.add_argument("--precision", default="auto", choices=[p.value for p in Precision])
    parser.add_argument("--seed", type=int, default=recipe.seed, help="data order of the warm start")
    parser.add_argument("--n-test", type=int, default=300)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    t0 = time.perf_counter()
    prepare.run(prepare.PrepareConfig(run_dir=args.run_dir))
    prepare_s = time.perf_counter() - t0

    config = warm_start.WarmStartConfig(
        run_dir=args.run_dir, out_dir=f"{args.run_dir}/warmup-{args.precision}-{args.steps}-seed{args.seed}",
        warmup=replace(recipe, max_steps=args.steps, precision=Precision(args.precision), seed=args.seed),
        tracking=TrackingConfig(wandb=WandbMode.disabled),
    )
    t0 = time.perf_counter()
    result = TrainResult(**warm_start.run(config)["train"])
    stage_s = time.perf_counter() - t0

    model, tokenizer = load_generator(ModelConfig(), result.model_dir)
    test = read_records(RunLayout(args.run_dir).problems("test"), Problem)[:args.n_test]
    backend = TransformersBackend(model, tokenizer)
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=96, batch_size=64, bf16=result.precision == "bf16")
    t0 = time.perf_counter()
    completions = backend.generate([render(tokenizer, first_turn(p)) for p in test], sampling)
    generate_s = time.perf_counter() - t0
    jobs = [Job.for_problem(p, extract_code(c.text, p.entry_point)) for p, c in zip(test, completions)]
    with Sandbox(SandboxConfig()) as sandbox:
        passed = [r.passed for r in sandbox.run_batch(jobs)]
    print(json.dumps({
        "steps": result.steps, "seed": args.seed, "train_seconds": round(result.seconds, 1),
        "stage_seconds": round(stage_s, 1),
        "prepare_seconds": round(prepare_s, 1), "precision": result.precision,
        "tokens_per_s": round(result.tokens_per_s), "padding_waste": round(result.padding_waste, 4),
        "examples_seen": result.examples, "final_loss": round(result.final_loss, 4),
        "test_problems": len(test), "greedy_turn1_pass_rate": round(sum(passed) / len(test), 4),
        "generate_seconds": round(generate_s, 1), "generate_tokens_per_s": round(backend.stats.tokens_per_s),
    }, indent=2))


if __name__ == "__main__":
    main()
