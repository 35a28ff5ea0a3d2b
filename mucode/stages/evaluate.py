"""Stage evaluate: one generator with greedy and multi-turn Best-of-N, every selector, by turn.

    python pipelines/evaluate.py run_dir=runs/default name=iter2          # generator 2, the run's final verifier
    python pipelines/evaluate.py run_dir=runs/default name=base eval.limit=200 eval.search.searches=10 \
        out_dir=runs/default/eval/base-s10            # another search, beside the main job's
    python pipelines/evaluate.py run_dir=runs/default name=other generator=path/to/model verifier=null
    python pipelines/evaluate.py run_dir=runs/mbpp name=iter2 model=hub eval.search.sampling.backend=vllm  # GPU
    python pipelines/evaluate.py run_dir=runs/mbpp name=iter2 task=mbpp eval.tasks=[mbpp,humaneval]

Reads run_dir/problems/<split>, the generator (named by `name`, or `generator=`) and the verifier;
writes run_dir/eval/<name>/ (config.yaml, results.jsonl, manifest.json). With `eval.tasks`, one such
folder per task: the run's own task (`task`) in eval/<name>, another task in eval-<task>/<name> from
its problems in problems-<task>/ (written by the prepare stage). The metrics are
mucode.search.search_metrics. A complete folder is skipped.

Selectors (mucode.search): random, pt, lv, pt+lv (the paper's four) and pt+cluster. lv and pt+lv score
each distinct code by log sum exp(score) over its identical copies (`eval.search.aggregate=false`: the
paper's argmax over the candidates); pt+cluster groups the public passers (all candidates, if none) by
their outputs on calls made from the public tests (mucode.probes), so each distinct code it sees runs
once more in the sandbox, on those calls only. Without a verifier (verifier=null) every score is 0: lv
is a majority vote over identical codes (with aggregate=false: the first candidate), pt+lv the same
among the public passers, pt+cluster picks the largest output cluster. The metrics record `aggregate`
and `probes`. Private tests only score a pick: their results never enter a prompt or a selection
(mucode.search). The five selectors share turn 1 but usually part ways after it, so BoN makes up to
S*N*(1 + 5*(T-1)) generations per problem when nothing passes; on a small CPU budget, cut `eval.limit`
or S before N (benchmarks/README.md has the measured costs, taken with the four selectors).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from mucode import artifacts, recipes
from mucode.generation import Backend, GenerationStats, open_backend
from mucode.models import ModelConfig, resolve_path
from mucode.records import Problem, read_records, write_jsonl
from mucode.sandbox import Sandbox, SandboxConfig
from mucode.search import EvalRecipe, search_metrics
from mucode.tasks import TaskConfig, evaluation_tasks
from mucode.tracking import TrackingConfig
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
    """The verifier model folder that scores candidates (lv, pt+lv, pt+cluster); "final" = the run's final verifier
    (final_verifier/, else the last iteration's); null = no verifier (scores 0)."""
    out_dir: Optional[str] = None
    """Where config.yaml, results.jsonl and manifest.json go; null = run_dir/eval/<name> (another task
    of eval.tasks: <out_dir>-<task>, else run_dir/eval-<task>/<name>)."""
    verifier_batch_size: int = 64
    """Candidates per verifier forward batch."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model (dtype and chat template; the path of generator 0)."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """The run's own task (its problems are run_dir/problems/); eval.tasks names the tasks evaluated."""
    eval: EvalRecipe = field(default_factory=recipes.evaluation)
    """Split, problem limit, the tasks, the BoN search and an optional N sweep."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """Limits for running the generated code."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """metrics.jsonl + wandb (accuracy by selector and by turn)."""

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"name='{self.name}' must be a plain folder name such as base or iter2")
        if self.generator is None and artifacts.RunLayout.generator_index(self.name) is None:
            raise ValueError(f"name='{self.name}' is not a run generator (base, iter1, ...); set generator=PATH")
        evaluation_tasks(self.task, self.eval.tasks)  # fails with one line on a task it cannot load


def verifier_path(layout: artifacts.RunLayout, verifier: str | None) -> str | None:
    """The verifier model folder to load: "final" resolved in the run, a folder as given, or None."""
    if verifier != FINAL:
        return verifier
    stage = layout.final_verifier_stage()
    if stage is None:
        raise FileNotFoundError(f"{layout.root}: no complete verifier in this run (verifier=final); train one "
                                "with pipelines/train_verifier.py, or set verifier=PATH or verifier=null")
    return str(layout.model(stage))


def folders(config: EvaluateConfig) -> dict[str, artifacts.StageFolder]:
    """One folder per evaluated task, by task name. Each records the config with eval.tasks narrowed to
    its own task (when the list is not empty), so adding a task leaves the others complete."""
    layout = artifacts.RunLayout(config.run_dir)
    if config.verifier == FINAL:  # recorded as the folder it names now, as the main job passes it: the same
        # command then finds the main job's evaluation complete, and reruns it once a newer verifier is final
        config = dataclasses.replace(config, verifier=verifier_path(layout, FINAL))
    @functools.cache
    def models() -> Models:  # loaded once, by the first task that is not complete yet
        generator = resolve_path(config.generator
                                 or layout.generator(layout.generator_index(config.name), config.model.name_or_path))
        verifier = verifier_path(layout, config.verifier)
        scorer = None if verifier is None else load_scorer(verifier, config.model,
                                                           batch_size=config.verifier_batch_size)
        return Models(generator, verifier, open_backend(config.model, generator, config.eval.search.sampling), scorer)

    out = {}
    for name, task in evaluation_tasks(config.task, config.eval.tasks).items():
        other = None if task is config.task else name
        one = config if not config.eval.tasks else dataclasses.replace(
            config, eval=dataclasses.replace(config.eval, tasks=[name]))
        if other is None:
            path = Path(config.out_dir or layout.eval(config.name))
        else:
            path = Path(f"{config.out_dir}-{other}" if config.out_dir else layout.eval(config.name, other))
        out[name] = artifacts.StageFolder(path, one, (),
                                          lambda c=one, p=path, t=other: _evaluate(c, layout, p, t, models()))
    return out


def run(config: EvaluateConfig) -> dict[str, dict[str, Any]]:
    """Evaluate on every task of eval.tasks (the run's own task when empty), each into its folder;
    returns {task name: metrics} (read back where a folder was already complete)."""
    return {name: folder.run() for name, folder in folders(config).items()}


@dataclass
class Models:
    """What every task of one evaluate stage shares: the generator's and the verifier's paths, the
    sampling backend and the verifier's scorer."""

    generator: str
    verifier: str | None
    backend: Backend
    scorer: Scorer | None


def _evaluate(config: EvaluateConfig, layout: artifacts.RunLayout, out_dir: Path, task: str | None,
              models: Models) -> artifacts.StageOutput:
    recipe = config.eval
    what = f"problem split '{recipe.split}'" + (f" of task {task}" if task else "")
    split = artifacts.require(layout.problems(recipe.split, task), what,
                              f"pipelines/prepare.py{f' eval_tasks=[{task}]' if task else ''}")
    problems = read_records(split, Problem)[:recipe.limit]
    generator, verifier, backend, scorer = models.generator, models.verifier, models.backend, models.scorer
    backend.stats = GenerationStats()  # this task's tokens and speed only
    with Sandbox(config.sandbox) as sandbox:
        metrics, rows = search_metrics(problems, backend, sandbox, scorer, recipe.search, recipe.candidates_sweep)
    metrics |= {"problems": len(problems), "task": task or config.task.name.value, "split": recipe.split,
                "generator": generator, "verifier": verifier if scorer is not None else None,
                "searches": recipe.search.searches, "candidates": recipe.search.candidates,
                "turns": recipe.search.turns, "tokens_per_s": backend.stats.tokens_per_s,
                "generations": backend.stats.completions, "tokens": backend.stats.tokens}
    write_jsonl(rows, out_dir / RESULTS)
    inputs = {"problems": split, **{k: p for k, p in (("generator", generator), ("verifier", verifier))
                                    if p is not None and Path(p).is_dir()}}
    log.info("eval %s on %s: greedy %.3f, BoN pt+lv %.3f (%.0f tokens/s)", config.name, metrics["task"],
             metrics["greedy"]["accuracy"], metrics["bon"]["pt+lv"]["accuracy"], metrics["tokens_per_s"])
    return artifacts.StageOutput(inputs, [RESULTS], metrics)
