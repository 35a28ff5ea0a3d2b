"""Stage evaluate: one generator with greedy and multi-turn Best-of-N, every selector, by turn.

    python pipelines/evaluate.py run_dir=runs/default name=iter2          # generator 2, the run's final verifier
    python pipelines/evaluate.py run_dir=runs/default name=base eval.limit=200 eval.search.searches=10
    python pipelines/evaluate.py run_dir=runs/default name=other generator=path/to/model verifier=null
    python pipelines/evaluate.py run_dir=runs/mbpp name=iter2 model=hub eval.search.sampling.backend=vllm  # GPU

Reads run_dir/problems/<split>, the generator (named by `name`, or `generator=`) and the verifier;
writes run_dir/eval/<name>/ (config.yaml, results.jsonl, manifest.json). The metrics are
mucode.search.search_metrics. A complete stage is skipped.

Without a verifier (verifier=null) every score is 0: lv takes the first candidate and pt+lv equals pt
with first-index ties. Private-test results never enter a prompt (mucode.search). The four selectors
share turn 1 but usually part ways after it, so BoN makes up to S*N*(1 + 4*(T-1)) generations per
problem when nothing passes; on a small CPU budget, cut `eval.limit` or S before N
(benchmarks/README.md has the measured costs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from mucode import artifacts, recipes
from mucode.generation import Backend, SamplingConfig, load_backend
from mucode.models import ModelConfig, inference_device, load_generator
from mucode.records import Problem, read_records, write_jsonl
from mucode.sandbox import Sandbox, SandboxConfig
from mucode.search import EvalRecipe, search_metrics
from mucode.verifier import Scorer, load_scorer

log = logging.getLogger(__name__)

FINAL = "final"
RESULTS = "results.jsonl"


@dataclass
class EvaluateConfig:
    """Stage: evaluate one generator on a split of the run's problems (greedy + BoN, all selectors)."""

    run_dir: str = "runs/default"
    """The run directory (see artifacts.RunLayout)."""
    name: str = "base"
    """The generator's name in the run: "base" (generator 0) or "iter{i}"; names the output folder."""
    generator: Optional[str] = None
    """A model folder or Hub id to evaluate instead of the run's generator named by `name`."""
    verifier: Optional[str] = FINAL
    """The verifier model folder that scores candidates (lv, pt+lv); "final" = the run's final verifier
    (final_verifier/, else the last iteration's); null = no verifier (scores 0)."""
    out_dir: Optional[str] = None
    """Where config.yaml, results.jsonl and manifest.json go; null = run_dir/eval/<name>."""
    verifier_batch_size: int = 64
    """Candidates per verifier forward batch."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model (dtype and chat template; the path of generator 0)."""
    eval: EvalRecipe = field(default_factory=recipes.evaluation)
    """Split, problem limit, the BoN search and an optional N sweep."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """Limits for running the generated code."""

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"name='{self.name}' must be a plain folder name such as base or iter2")
        if self.generator is None and artifacts.RunLayout.generator_index(self.name) is None:
            raise ValueError(f"name='{self.name}' is not a run generator (base, iter1, ...); set generator=PATH")


def verifier_path(layout: artifacts.RunLayout, verifier: str | None) -> str | None:
    """The verifier model folder to load: "final" resolved in the run, a folder as given, or None."""
    if verifier != FINAL:
        return verifier
    stage = layout.final_verifier_stage()
    if stage is None:
        raise FileNotFoundError(f"{layout.root}: no complete verifier in this run (verifier=final); train one "
                                "with pipelines/train_verifier.py, or set verifier=PATH or verifier=null")
    return str(layout.model(stage))


def open_backend(model: ModelConfig, path: str, sampling: SamplingConfig) -> Backend:
    """A generation backend on the generator at `path` (on the GPU when there is one)."""
    generator, tokenizer = load_generator(model, path, inference_device())
    return load_backend(generator, tokenizer, sampling, path)


def run(config: EvaluateConfig, scorer: Scorer | None = None) -> dict[str, Any]:
    """Run the stage into its folder and return its metrics (read back when already complete).

    `scorer` replaces the verifier loaded from `config.verifier` (tests, or a scorer already in memory).
    """
    layout = artifacts.RunLayout(config.run_dir)
    out_dir = Path(config.out_dir or layout.eval(config.name))
    return artifacts.run_stage(out_dir, config, lambda: _evaluate(config, layout, out_dir, scorer))


def _evaluate(config: EvaluateConfig, layout: artifacts.RunLayout, out_dir: Path, scorer: Scorer | None
              ) -> artifacts.StageOutput:
    recipe = config.eval
    split = artifacts.require(layout.problems(recipe.split), f"problem split '{recipe.split}'", "pipelines/prepare.py")
    problems = read_records(split, Problem)[:recipe.limit]
    generator = config.generator or layout.generator(layout.generator_index(config.name), config.model.name_or_path)
    verifier = verifier_path(layout, config.verifier)
    backend = open_backend(config.model, generator, recipe.search.sampling)
    if scorer is None and verifier is not None:
        scorer = load_scorer(verifier, config.model, batch_size=config.verifier_batch_size)
    with Sandbox(config.sandbox) as sandbox:
        metrics, rows = search_metrics(problems, backend, sandbox, scorer, recipe.search, recipe.candidates_sweep)
    metrics |= {"problems": len(problems), "split": recipe.split, "generator": generator,
                "verifier": verifier if scorer is not None else None,
                "searches": recipe.search.searches, "candidates": recipe.search.candidates,
                "turns": recipe.search.turns, "tokens_per_s": backend.stats.tokens_per_s,
                "generations": backend.stats.completions, "tokens": backend.stats.tokens}
    write_jsonl(rows, out_dir / RESULTS)
    inputs = {"problems": split, **{k: p for k, p in (("generator", generator), ("verifier", verifier))
                                    if p is not None and Path(p).is_dir()}}
    log.info("eval %s: greedy %.3f, BoN pt+lv %.3f (%.0f tokens/s)", config.name, metrics["greedy"]["accuracy"],
             metrics["bon"]["pt+lv"]["accuracy"], metrics["tokens_per_s"])
    return artifacts.StageOutput(inputs, [RESULTS], metrics)
