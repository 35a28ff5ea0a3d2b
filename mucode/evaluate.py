"""Evaluate one generator: greedy and multi-turn Best-of-N with every selector; solve a user's problems.

    python pipelines/evaluate.py run_dir=runs/default name=iter2        # generator 2 on the test split
    python pipelines/evaluate.py run_dir=runs/default name=base verifier=null search.searches=10 \
        search.candidates=5                                            # paper-sized BoN (S=10, N=5)
    python pipelines/solve.py problems=my_problems.jsonl generator=runs/default/iter2/sft/model

`evaluate` (SPEC §1 "Inference", "Metrics") reads run_dir/problems/<split> and the generator named by
`name` ("base" = generator 0, "iter{i}" = generator i, or any folder given as `generator`), runs
    greedy  N = 1 at temperature 0, one search, the same stop rule (turns up to T)
    BoN     S searches x N candidates x T turns for all four selectors at once (random, pt, lv,
            pt+lv share their samples: mucode.search), the verifier scoring the candidates
and writes out_dir (default run_dir/eval/<name>): config.yaml, results.jsonl (per problem: greedy
correct, share of each selector's searches correct) and manifest.json, whose metrics are
    {"greedy": {"accuracy", "by_turn"}, "bon": {"random" | "pt" | "lv" | "pt+lv": {"accuracy", "by_turn"}},
     "pass_at_k": {"k": [1..S], "by_turn": [[pass@k for k] for turn]}, "tokens_per_s", "seconds", ...}
`pass_at_k` is over the S searches of the random selector: a uniform pick among N samples is one
sample, so those searches are S independent multi-turn episodes at the sampling temperature.
`candidates_sweep=[1,2,4,8]` adds a pt+lv BoN per N ("bon_by_n", for the report's accuracy-vs-N plot).
A complete manifest is skipped on rerun.

`solve` runs the same search with one selector (pt+lv, or pt without a verifier) on a JSONL of the
user's problems (mucode.tasks.jsonl) and writes one row per problem: id, code, turn, public_pass,
score. It never runs private tests (they are dropped before the search); with S > 1 searches the
selector also picks among their answers.

Without a verifier (verifier=null) every score is 0: lv takes the first candidate and pt+lv equals pt
with first-index ties. Private-test results never enter a prompt (mucode.search).

Cost: generation dominates (about 17-26 ms of CPU per tiny-model generation, turn 1 to 3). The four
selectors share turn 1 but usually part ways after it, so BoN makes up to S*N*(1 + 4*(T-1))
generations per problem when nothing passes: measured with a tiny model that solves nothing, 100
problems at the defaults took 5132 generations, 135 CPU-s on one thread (greedy 28 s, BoN 273 s of
wall time on a loaded 2-core machine); a model that solves problems stops searches earlier. On a
small CPU budget, cut `limit` or S before N.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from mucode import artifacts
from mucode.generation import SamplingConfig, load_backend
from mucode.metrics import pass_at_k
from mucode.models import ModelConfig, load_generator
from mucode.records import Problem, read_records
from mucode.sandbox import Sandbox, SandboxConfig
from mucode.search import Scorer, SearchConfig, SearchState, Selector, correct_by, run_searches, select, summarize
from mucode.verifier import load_scorer

log = logging.getLogger(__name__)


def _eval_search() -> SearchConfig:
    return SearchConfig(searches=2, candidates=4, turns=3,
                        sampling=SamplingConfig(temperature=0.7, max_new_tokens=96))


@dataclass
class EvaluateConfig:
    """Stage: evaluate one generator on a split of the run's problems (greedy + BoN, all selectors)."""

    run_dir: str = "runs/default"
    """The run directory (see artifacts.RunLayout)."""
    name: str = "base"
    """The generator's name in the run: "base" (generator 0) or "iter{i}"; names the output folder."""
    generator: Optional[str] = None
    """A model folder or Hub id to evaluate instead of the run's generator named by `name`."""
    verifier: Optional[str] = "${run_dir}/final_verifier/model"
    """The verifier model folder that scores candidates (lv, pt+lv); null = no verifier (scores 0)."""
    split: str = "test"
    """Problem split (run_dir/problems/<split>)."""
    limit: Optional[int] = None
    """Evaluate only the first N problems of the split (None = all)."""
    out_dir: str = "${run_dir}/eval/${name}"
    """Where config.yaml, results.jsonl and manifest.json go."""
    candidates_sweep: list[int] = field(default_factory=list)
    """Extra pt+lv BoN runs, one per N listed (accuracy vs N); empty = none."""
    verifier_batch_size: int = 64
    """Candidates per verifier forward batch."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model (dtype and chat template; the path of generator 0)."""
    search: SearchConfig = field(default_factory=_eval_search)
    """BoN shape: S searches, N candidates, T turns, sampling; greedy uses T and max_new_tokens."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """Limits for running the generated code."""

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"name='{self.name}' must be a plain folder name such as base or iter2")
        if self.generator is None and not re.fullmatch(r"base|iter\d+", self.name):
            raise ValueError(f"name='{self.name}' is not a run generator (base, iter1, ...); set generator=PATH")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit={self.limit} must be a positive number of problems or null")
        if any(n < 1 for n in self.candidates_sweep):
            raise ValueError(f"candidates_sweep={self.candidates_sweep}: every N must be >= 1")


def generator_path(config: EvaluateConfig) -> str:
    """The folder or Hub id of the generator to evaluate."""
    if config.generator is not None:
        return config.generator
    index = 0 if config.name == "base" else int(config.name[len("iter"):])
    return artifacts.RunLayout(Path(config.run_dir)).generator(index, config.model.name_or_path)


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def open_backend(model: ModelConfig, path: str, sampling: SamplingConfig):
    """A generation backend on the generator at `path` (on the GPU when there is one)."""
    generator, tokenizer = load_generator(model, path)
    return load_backend(generator.to(_device()), tokenizer, sampling, path)


def pass_at_k_by_turn(searches: list[SearchState], turns: int) -> dict:
    """Mean over problems of unbiased pass@k of the searches (k = 1..searches per problem), by turn."""
    by_problem: dict[str, list[SearchState]] = defaultdict(list)
    for s in searches:
        by_problem[s.problem.id].append(s)
    ks = list(range(1, min(len(v) for v in by_problem.values()) + 1))
    table = [[sum(pass_at_k(len(v), sum(correct_by(s, t) for s in v), k) for v in by_problem.values())
              / len(by_problem) for k in ks] for t in range(1, turns + 1)]
    return {"k": ks, "by_turn": table}


def greedy_config(search: SearchConfig) -> SearchConfig:
    """One search, one candidate at temperature 0, the same turns and token limit."""
    return dataclasses.replace(search, searches=1, candidates=1,
                               sampling=dataclasses.replace(search.sampling, temperature=0.0))


def search_metrics(problems: list[Problem], backend, sandbox: Sandbox, scorer: Scorer | None,
                   search: SearchConfig, candidates_sweep: list[int]) -> tuple[dict, list[dict]]:
    """(metrics, per-problem rows) of greedy, BoN with every selector and the optional N sweep."""
    selectors, turns = list(Selector), search.turns
    start = time.perf_counter()
    greedy = run_searches(problems, backend, sandbox, None, greedy_config(search), [Selector.pt])
    after_greedy = time.perf_counter()
    bon = run_searches(problems, backend, sandbox, scorer, search, selectors)
    seconds = {"greedy": after_greedy - start, "bon": time.perf_counter() - after_greedy}
    metrics = {
        "greedy": summarize(greedy, [Selector.pt], turns)[Selector.pt.value],
        "bon": summarize(bon, selectors, turns),
        "pass_at_k": pass_at_k_by_turn([s for s in bon if s.selector is Selector.random], turns),
    }
    if candidates_sweep:
        sweep_start = time.perf_counter()
        accuracy = [run_best_of(problems, backend, sandbox, scorer, dataclasses.replace(search, candidates=n))
                    for n in candidates_sweep]
        metrics["bon_by_n"] = {"selector": Selector.pt_lv.value, "n": candidates_sweep, "accuracy": accuracy}
        seconds["sweep"] = time.perf_counter() - sweep_start
    metrics["seconds"] = seconds
    return metrics, problem_rows(problems, greedy, bon, turns)


def run_best_of(problems: list[Problem], backend, sandbox: Sandbox, scorer: Scorer | None,
                search: SearchConfig) -> float:
    """Final-turn accuracy of a pt+lv BoN search."""
    searches = run_searches(problems, backend, sandbox, scorer, search, [Selector.pt_lv])
    return summarize(searches, [Selector.pt_lv], search.turns)[Selector.pt_lv.value]["accuracy"]


def problem_rows(problems: list[Problem], greedy: list[SearchState], bon: list[SearchState], turns: int
                 ) -> list[dict]:
    """Per problem: greedy correct and its turns, and the share of each selector's searches correct."""
    greedy_by = {s.problem.id: s for s in greedy}
    shares: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for s in bon:
        shares[s.problem.id][s.selector.value].append(correct_by(s, turns))
    return [{"id": p.id, "greedy": correct_by(greedy_by[p.id], turns), "greedy_turns": len(greedy_by[p.id].picks),
             "bon": {sel: sum(v) / len(v) for sel, v in shares[p.id].items()}} for p in problems]


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def resolved(config):
    """The config with its ${...} defaults filled in, as Hydra would (for configs built in Python)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_object(OmegaConf.structured(config))


def evaluate(config: EvaluateConfig, scorer: Scorer | None = None) -> dict:
    """Run the stage into config.out_dir and return its metrics (read back when already complete).

    `scorer` replaces the verifier loaded from `config.verifier` (tests, or a scorer already in memory).
    """
    config = resolved(config)
    out_dir = Path(config.out_dir)
    if (manifest := artifacts.read_manifest(out_dir)) is not None:
        log.info("%s complete; skipping", out_dir)
        return manifest["metrics"]
    start = time.perf_counter()
    layout = artifacts.RunLayout(Path(config.run_dir))
    split = artifacts.require(layout.problems(config.split), f"problem split '{config.split}'",
                              "the main job's problems stage (pipelines/expert_iteration.py)")
    problems = read_records(split, Problem)[:config.limit]
    generator = generator_path(config)
    backend = open_backend(config.model, generator, config.search.sampling)
    if scorer is None and config.verifier is not None:
        scorer = load_scorer(config.verifier, config.model, batch_size=config.verifier_batch_size)
    with Sandbox(config.sandbox) as sandbox:
        metrics, rows = search_metrics(problems, backend, sandbox, scorer, config.search, config.candidates_sweep)
    metrics |= {"problems": len(problems), "split": config.split, "generator": generator,
                "verifier": config.verifier if scorer is not None else None,
                "searches": config.search.searches, "candidates": config.search.candidates,
                "turns": config.search.turns, "tokens_per_s": backend.stats.tokens_per_s,
                "generations": backend.stats.completions, "tokens": backend.stats.tokens}
    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts.write_config(out_dir, config)
    artifacts.atomic_write_text(out_dir / "results.jsonl", _jsonl(rows))
    inputs = {"problems": split, **{k: p for k, p in (("generator", generator), ("verifier", config.verifier))
                                    if p is not None and Path(p).is_dir()}}
    artifacts.write_manifest(out_dir, inputs, ["config.yaml", "results.jsonl"], metrics, time.perf_counter() - start)
    log.info("eval %s: greedy %.3f, BoN pt+lv %.3f (%.0f s, %.0f tokens/s)", config.name,
             metrics["greedy"]["accuracy"], metrics["bon"]["pt+lv"]["accuracy"], time.perf_counter() - start,
             metrics["tokens_per_s"])
    return metrics


def _solve_search() -> SearchConfig:
    return SearchConfig(searches=1, candidates=5, turns=3, sampling=SamplingConfig(temperature=0.7, max_new_tokens=256))


@dataclass
class SolveConfig:
    """Solve a user's own problems with multi-turn BoN: one answer per problem, private tests unused."""

    run_dir: str = "runs/default"
    """A finished run whose generator and verifier are the defaults below."""
    problems: str = "problems.jsonl"
    """A JSONL of Problem rows (mucode.tasks.jsonl); private_tests may be empty and are never run."""
    generator: str = "${run_dir}/iter2/sft/model"
    """The generator model folder or Hub id (default: the main job's final generator at M = 2)."""
    verifier: Optional[str] = "${run_dir}/final_verifier/model"
    """The verifier model folder; null = none (then the selector defaults to pt)."""
    out: str = "solutions.jsonl"
    """Output JSONL: per problem id, code, turn, public_pass, score."""
    selector: Optional[Selector] = None
    """random, pt, lv or pt_lv (= pt+lv); null = pt_lv with a verifier, pt without."""
    verifier_batch_size: int = 64
    """Candidates per verifier forward batch."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model (dtype and chat template)."""
    search: SearchConfig = field(default_factory=_solve_search)
    """S searches, N candidates, T turns, sampling."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """Limits for running the generated code."""

    def __post_init__(self) -> None:
        if self.selector is None:
            self.selector = Selector.pt if self.verifier is None else Selector.pt_lv
        if self.verifier is None and self.selector in (Selector.lv, Selector.pt_lv):
            raise ValueError(f"selector={self.selector.name} needs a verifier; set verifier=PATH or selector=pt")


def answers(searches: list[SearchState], selector: Selector, rng: random.Random) -> list[dict]:
    """One row per problem: the selector's choice among its searches' final picks (pure but for rng)."""
    by_problem: dict[str, list[SearchState]] = defaultdict(list)
    for s in searches:
        by_problem[s.problem.id].append(s)
    rows = []
    for pid, mine in by_problem.items():
        finals = [s.picks[-1] for s in mine]
        best = mine[select(selector, [c.public_pass for c in finals], [c.score for c in finals], rng)]
        pick = best.picks[-1]
        rows.append({"id": pid, "code": pick.code, "turn": len(best.picks), "public_pass": pick.public_pass,
                     "score": pick.score, "feedback": pick.feedback})
    return rows


def solve(config: SolveConfig, scorer: Scorer | None = None) -> Path:
    """Search every problem of config.problems and write config.out; returns its path."""
    from mucode.tasks.jsonl import load

    config = resolved(config)
    if not Path(config.problems).is_file():
        raise FileNotFoundError(f"{config.problems}: problems file not found; set problems=PATH to a JSONL of "
                                "Problem rows (see mucode.tasks.jsonl)")
    problems = [dataclasses.replace(p, private_tests=[]) for p in load(config.problems, "test")]
    backend = open_backend(config.model, config.generator, config.search.sampling)
    if scorer is None and config.verifier is not None:
        scorer = load_scorer(config.verifier, config.model, batch_size=config.verifier_batch_size)
    with Sandbox(config.sandbox) as sandbox:
        searches = run_searches(problems, backend, sandbox, scorer, config.search, [config.selector])
    rows = answers(searches, config.selector, random.Random(config.search.seed))
    if scorer is None:
        for r in rows:
            r["score"] = None
    out = artifacts.atomic_write_text(config.out, _jsonl(rows))
    log.info("solve: %d problems, %d pass their public tests -> %s", len(rows),
             sum(r["public_pass"] for r in rows), out)
    return out
