"""Relabeling with the local-search expert (SPEC §1 step 3), as pure functions.

For each problem, the candidates are the final codes of its K episodes, scored
    score(y) = beta_oracle * oracle(y) + beta_learned * R(x, y)
(defaults 1 and 0.1: correct codes first, the verifier breaks ties) and y* = argmax. Then
  - every successful episode keeps its own correct code as the target of each of its states;
  - the `relabel_failed` failed episodes that the verifier scores highest (default 3) get y* as the
    target of every prefix state s_1..s_T — the one-step-recoverability relabeling.
A problem none of whose candidates is correct gives no relabeled targets when the expert uses the
oracle (there is nothing correct to move towards); under `learned` the verifier alone decides.

Modes (the paper's ablation and baselines):
    both     beta_oracle and beta_learned as configured (default)
    oracle   beta_learned = 0 (ties broken by episode order)
    learned  beta_oracle = 0 (the expert is the learned verifier alone)
    rft      multi-turn RFT / Multi-STaR: successful episodes only, no relabeling
    star     single-turn RFT / STaR: first-turn successes only

    examples = relabel(episodes, scores, RelabelConfig())   # scores: {(problem_id, code): R}

The stage (`pipelines/relabel.py`) reads iteration i's rollouts and verifier R_i and writes
run_dir/iter{i}/relabel/examples (SFTExample dataset):

    python pipelines/relabel.py run_dir=runs/default iteration=1 relabel.mode=oracle
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from mucode import artifacts
from mucode.models import ModelConfig
from mucode.records import Episode, Message, Problem, SFTExample, read_records, write_records

log = logging.getLogger(__name__)


class RelabelMode(str, Enum):
    both = "both"
    oracle = "oracle"
    learned = "learned"
    rft = "rft"
    star = "star"


@dataclass
class RelabelConfig:
    """The local-search expert."""

    mode: RelabelMode = RelabelMode.both
    """both | oracle | learned | rft | star (see the module docstring)."""
    beta_oracle: float = 1.0
    """Weight of the oracle (passes all tests) in the expert's score."""
    beta_learned: float = 0.1
    """Weight of the learned verifier's score."""
    relabel_failed: int = 3
    """Failed episodes per problem relabeled with y* (the highest-scored by the verifier)."""

    def __post_init__(self) -> None:
        if self.relabel_failed < 0:
            raise ValueError(f"relabel.relabel_failed={self.relabel_failed} must be >= 0")
        if self.beta_oracle < 0 or self.beta_learned < 0:
            raise ValueError("relabel.beta_oracle and relabel.beta_learned must be >= 0")
        if self.mode is RelabelMode.learned and self.beta_learned == 0:
            raise ValueError("relabel.mode=learned needs relabel.beta_learned > 0")

    def betas(self) -> tuple[float, float]:
        """(beta_oracle, beta_learned) after the mode's overrides."""
        if self.mode is RelabelMode.oracle:
            return self.beta_oracle, 0.0
        if self.mode is RelabelMode.learned:
            return 0.0, self.beta_learned
        return self.beta_oracle, self.beta_learned


Scores = dict[tuple[str, str], float]


def expert_target(episodes: list[Episode], scores: Scores, beta_oracle: float, beta_learned: float) -> str | None:
    """y* for one problem's episodes: argmax of the expert score over the final codes (first on ties).

    None when the expert uses the oracle and no candidate is correct.
    """
    best, best_score = None, float("-inf")
    for e in episodes:
        last = e.turns[-1]
        s = beta_oracle * last.correct + beta_learned * scores.get((e.problem_id, last.code), 0.0)
        if s > best_score:
            best, best_score = e, s
    if best is None or (beta_oracle > 0 and not best.correct):
        return None
    return best.turns[-1].code


def _examples(episode: Episode, target: str, upto: int | None = None) -> list[SFTExample]:
    """One SFTExample per prefix state of `episode` (its first `upto` turns), all with `target`."""
    return [SFTExample(episode.problem_id, _copy(t.state), target, episode.iteration + 1)
            for t in episode.turns[:upto]]


def _copy(state: list[Message]) -> list[Message]:
    return [dict(m) for m in state]


def relabel_problem(episodes: list[Episode], scores: Scores, config: RelabelConfig) -> list[SFTExample]:
    """SFT examples from one problem's K episodes under `config.mode`."""
    successes = [e for e in episodes if e.correct]
    if config.mode is RelabelMode.star:
        return [ex for e in episodes if e.turns[0].correct for ex in _examples(e, e.turns[0].code, upto=1)]
    out = [ex for e in successes for ex in _examples(e, e.turns[-1].code)]
    if config.mode is RelabelMode.rft:
        return out
    target = expert_target(episodes, scores, *config.betas())
    if target is None:
        return out
    failed = [e for e in episodes if not e.correct]
    failed.sort(key=lambda e: -scores.get((e.problem_id, e.turns[-1].code), 0.0))  # stable: K order on ties
    return out + [ex for e in failed[:config.relabel_failed] for ex in _examples(e, target)]


def relabel(episodes: list[Episode], scores: Scores, config: RelabelConfig) -> list[SFTExample]:
    """SFT examples for all problems, deduplicated on (state, target), in problem order."""
    by_problem: dict[str, list[Episode]] = defaultdict(list)
    for e in episodes:
        by_problem[e.problem_id].append(e)
    seen, out = set(), []
    for pid in sorted(by_problem):
        eps = sorted(by_problem[pid], key=lambda e: (e.iteration, e.sample))
        for ex in relabel_problem(eps, scores, config):
            key = (ex.problem_id, tuple((m["role"], m["content"]) for m in ex.messages), ex.target)
            if key not in seen:
                seen.add(key)
                out.append(ex)
    return out


def relabel_stats(episodes: list[Episode], examples: list[SFTExample]) -> dict:
    """How much data relabeling produced: examples, multi-turn share, problems covered."""
    return {
        "episodes": len(episodes),
        "problems": len({e.problem_id for e in episodes}),
        "examples": len(examples),
        "multi_turn_examples": sum(len(ex.messages) > 1 for ex in examples),
        "problems_with_examples": len({ex.problem_id for ex in examples}),
    }


@dataclass
class RelabelStageConfig:
    """The relabel stage: iteration i's episodes + verifier R_i -> SFT examples for generator i."""

    run_dir: str = "runs/default"
    """The run directory (reads iter{i}/rollouts and iter{i}/verifier, writes iter{i}/relabel)."""
    iteration: int = 1
    """Which iteration's rollouts to relabel."""
    split: str = "train"
    """The problem split the rollouts were collected on (for the verifier's problem text)."""
    verifier: str | None = None
    """Verifier folder; default run_dir/iter{i}/verifier/model. Not read by oracle, rft and star."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model config (how the verifier is loaded)."""
    relabel: RelabelConfig = field(default_factory=RelabelConfig)
    """The expert."""

    def __post_init__(self) -> None:
        if self.iteration < 1:
            raise ValueError(f"iteration={self.iteration} must be >= 1")

    def needs_verifier(self) -> bool:
        return self.relabel.mode in (RelabelMode.both, RelabelMode.learned) and self.relabel.betas()[1] > 0


def final_code_scores(episodes: list[Episode], problems: dict[str, Problem], scorer) -> Scores:
    """R(x, y) for every distinct (problem, final code) of the episodes, scored in one batch."""
    from mucode.prompts import problem_text

    keys = list(dict.fromkeys((e.problem_id, e.turns[-1].code) for e in episodes))
    missing = sorted({pid for pid, _ in keys if pid not in problems})
    if missing:
        raise ValueError(f"episodes name problems not in the split: {', '.join(missing[:3])}; check split=")
    values = scorer([(problem_text(problems[pid]), code) for pid, code in keys]) if keys else []
    return dict(zip(keys, values))


def relabel_stage(config: RelabelStageConfig, scorer=None) -> Path:
    """Run the stage unless complete; return the SFTExample folder. `scorer` overrides the verifier."""
    layout = artifacts.RunLayout(Path(config.run_dir))
    out = layout.relabel(config.iteration)
    if artifacts.read_manifest(out) is not None:
        log.info("%s complete; skipping", out)
        return out / "examples"
    start = time.perf_counter()
    rollouts = layout.rollouts(config.iteration)
    if artifacts.read_manifest(rollouts) is None:
        raise FileNotFoundError(f"{rollouts}: rollouts of iteration {config.iteration} not complete; "
                                "run pipelines/collect_rollouts.py first")
    episodes = read_records(rollouts / "episodes", Episode)
    inputs: dict[str, str | Path] = {"episodes": rollouts / "episodes"}
    scores: Scores = {}
    if config.needs_verifier():
        from mucode.verifier import load_scorer

        if scorer is None:
            path = Path(config.verifier or layout.verifier(config.iteration) / "model")
            artifacts.require(path, "verifier", "pipelines/train_verifier.py")
            scorer = load_scorer(str(path), config.model)
            inputs["verifier"] = path
        split = artifacts.require(layout.problems(config.split), f"problem split '{config.split}'",
                                  "the main job's problems stage (pipelines/expert_iteration.py)")
        problems = {p.id: p for p in read_records(split, Problem)}
        scores = final_code_scores(episodes, problems, scorer)
    examples = relabel(episodes, scores, config.relabel)
    write_records(examples, out / "examples", SFTExample)
    metrics = relabel_stats(episodes, examples)
    artifacts.write_manifest(out, inputs, ["examples"], metrics, time.perf_counter() - start)
    log.info("relabel (%s): %s", config.relabel.mode.value, metrics)
    return out / "examples"
