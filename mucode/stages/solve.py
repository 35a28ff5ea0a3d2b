"""Stage solve: a user's own problems, multi-turn Best-of-N with one selector, one answer each.

    python pipelines/solve.py problems=my_problems.jsonl                       # the default run's models
    python pipelines/solve.py problems=my.jsonl generator=runs/x/iter2/sft/model \
        verifier=runs/x/iter2/verifier/model out=answers.jsonl search.candidates=8
    python pipelines/solve.py problems=my.jsonl generator=path/to/model verifier=null   # selector pt

Reads a JSONL of Problem rows (mucode.tasks.jsonl; private_tests may be empty and are never run:
they are dropped before the search) and writes `out`: one JSON line per problem with id, code, turn,
public_pass, score (null without a verifier) and the public feedback of the chosen code. With S > 1
searches the selector also picks among their answers. The search defaults to the one the main job
evaluates with (mucode.recipes.evaluation).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from mucode import artifacts, recipes
from mucode.generation import open_backend
from mucode.models import ModelConfig, resolve_path
from mucode.records import write_jsonl
from mucode.sandbox import Sandbox, SandboxConfig
from mucode.search import SearchConfig, Selector, answers, run_searches
from mucode.stages.evaluate import FINAL, verifier_path
from mucode.verifier import Scorer, load_scorer

log = logging.getLogger(__name__)


@dataclass
class SolveConfig:
    """Solve a user's own problems with multi-turn BoN: one answer per problem, private tests unused."""

    run_dir: str = "runs/default"
    """A finished run whose generator and verifier are the defaults below."""
    problems: str = "problems.jsonl"
    """A JSONL of Problem rows (mucode.tasks.jsonl); private_tests may be empty and are never run."""
    generator: str = FINAL
    """The generator model folder or Hub id; "final" = the run's last complete generator."""
    verifier: Optional[str] = FINAL
    """The verifier model folder; "final" = the run's final verifier; null = none (selector pt)."""
    out: str = "solutions.jsonl"
    """Output JSONL: per problem id, code, turn, public_pass, score."""
    selector: Optional[Selector] = None
    """random, pt, lv, pt_lv (= pt+lv) or pt_cluster (= pt+cluster: by outputs on the public inputs; the
    verifier weighs the clusters when there is one); null = pt_lv with a verifier, pt without."""
    verifier_batch_size: int = 64
    """Candidates per verifier forward batch."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model (dtype and chat template)."""
    search: SearchConfig = field(default_factory=lambda: recipes.evaluation().search)
    """S searches, N candidates, T turns, sampling."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """Limits for running the generated code."""

    def __post_init__(self) -> None:
        if self.selector is None:
            self.selector = Selector.pt if self.verifier is None else Selector.pt_lv
        if self.verifier is None and self.selector in (Selector.lv, Selector.pt_lv):
            raise ValueError(f"selector={self.selector.name} needs a verifier; set verifier=PATH or selector=pt")


def run(config: SolveConfig, scorer: Scorer | None = None) -> Path:
    """Search every problem of config.problems and write config.out; returns its path."""
    from mucode.tasks.jsonl import load

    if not Path(config.problems).is_file():
        raise FileNotFoundError(f"{config.problems}: problems file not found; set problems=PATH to a JSONL of "
                                "Problem rows (see mucode.tasks.jsonl)")
    layout = artifacts.RunLayout(config.run_dir)
    generator = config.generator
    if generator == FINAL:
        generator = layout.generator(layout.last_generator(), config.model.name_or_path)
    generator = resolve_path(generator)
    verifier = verifier_path(layout, config.verifier) if scorer is None else None
    problems = [dataclasses.replace(p, private_tests=[]) for p in load(config.problems, "test")]
    backend = open_backend(config.model, generator, config.search.sampling)
    if scorer is None and verifier is not None:
        scorer = load_scorer(verifier, config.model, batch_size=config.verifier_batch_size)
    with Sandbox(config.sandbox) as sandbox:
        searches = run_searches(problems, backend, sandbox, scorer, config.search, [config.selector])
    rows = answers(searches, config.selector, random.Random(config.search.seed), config.search.aggregate)
    if scorer is None:
        for r in rows:
            r["score"] = None
    out = write_jsonl(rows, config.out)
    log.info("solve: %d problems, %d pass their public tests -> %s", len(rows),
             sum(r["public_pass"] for r in rows), out)
    return out
