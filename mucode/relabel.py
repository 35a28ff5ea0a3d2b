"""Relabeling with the local-search expert (the muCode paper, step 3), as pure functions.

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

The stage that relabels a run's iteration is mucode.stages.relabel.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from enum import Enum

from mucode.records import Episode, Message, SFTExample


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
