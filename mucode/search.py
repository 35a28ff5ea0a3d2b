"""Multi-turn Best-of-N search: how a trained generator and verifier are used, and how they are scored.

For each problem, S independent searches. At each turn a search samples N candidates from its state,
runs the public tests, and picks one with a selector:
    random   uniformly
    pt       uniformly among the candidates that pass the public tests (all, if none does)
    lv       the highest verifier score
    pt+lv    public pass first, then verifier score (the paper's best)
It stops at the first turn whose pick passes the public tests; it is correct iff that pick also
passes the private tests. Otherwise the pick and its public feedback extend the state. Greedy is
N = 1 at temperature 0 with the same stop rule. Private-test results never enter a prompt.

All selectors run together: at each turn, searches whose states are identical (same problem, search
index and history — e.g. every selector at turn 1) share one set of N samples, so selectors are
compared on common random numbers, and each (problem, code) is executed and scored once.

    results = run_search(problems, backend, sandbox, scorer, SearchConfig(...), selectors)
    results["pt+lv"]["by_turn"]   # accuracy if the search is cut after turn t, t = 1..T
    searches = run_searches(...)  # the same, keeping every search's picks (search.picks[-1]: its answer)
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from mucode.generation import SamplingConfig
from mucode.prompts import extract_code, first_turn, next_turn, problem_text, render
from mucode.records import Message, Problem
from mucode.sandbox import Job, Sandbox


class Selector(str, Enum):
    random = "random"
    pt = "pt"
    lv = "lv"
    pt_lv = "pt+lv"


def select(selector: Selector, public_pass: list[bool], scores: list[float], rng: random.Random) -> int:
    """Index of the candidate `selector` picks (first index on ties for lv and pt+lv)."""
    n = len(public_pass)
    if selector is Selector.random:
        return rng.randrange(n)
    if selector is Selector.pt:
        passing = [i for i in range(n) if public_pass[i]]
        return rng.choice(passing or list(range(n)))
    if selector is Selector.lv:
        return max(range(n), key=lambda i: (scores[i], -i))
    return max(range(n), key=lambda i: (public_pass[i], scores[i], -i))


@dataclass
class SearchConfig:
    """Best-of-N search."""

    searches: int = 10
    """S: independent searches per problem (accuracy is averaged over them)."""
    candidates: int = 5
    """N: samples per turn."""
    turns: int = 3
    """T: most turns."""
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.7))
    """Sampling of candidates (temperature 0 and candidates 1 = greedy)."""
    seed: int = 0
    """Seed of sampling and of the random selectors."""

    def __post_init__(self) -> None:
        if min(self.searches, self.candidates, self.turns) < 1:
            raise ValueError("search.searches, search.candidates and search.turns must be >= 1")


@dataclass
class Candidate:
    code: str
    public_pass: bool
    correct: bool
    feedback: str
    score: float


@dataclass
class SearchState:
    """One search of one selector: its current state and, once stopped, its outcome per turn."""

    problem: Problem
    index: int
    selector: Selector
    state: list[Message]
    picks: list[Candidate] = field(default_factory=list)
    stopped: bool = False


Scorer = Callable[[list[tuple[str, str]]], list[float]]  # (problem text, code) pairs -> verifier scores


def run_search(problems: list[Problem], backend, sandbox: Sandbox, scorer: Scorer | None,
               config: SearchConfig, selectors: list[Selector]) -> dict:
    """Run all selectors' searches turn by turn; return accuracy by turn per selector."""
    searches = run_searches(problems, backend, sandbox, scorer, config, selectors)
    return summarize(searches, selectors, config.turns)


def run_searches(problems: list[Problem], backend, sandbox: Sandbox, scorer: Scorer | None,
                 config: SearchConfig, selectors: list[Selector]) -> list[SearchState]:
    """Run all selectors' searches turn by turn; return every search with its picks (one per turn)."""
    rng = random.Random(config.seed)
    searches = [SearchState(p, s, sel, first_turn(p)) for p in problems for s in range(config.searches)
                for sel in selectors]
    cache: dict[tuple[str, str], tuple[bool, bool, str]] = {}
    score_cache: dict[tuple[str, str], float] = {}
    for turn in range(config.turns):
        live = [s for s in searches if not s.stopped]
        if not live:
            break
        groups = _group_by_state(live)
        candidates = _sample(groups, backend, sandbox, scorer, config, turn, cache, score_cache)
        for key, members in groups.items():
            cands = candidates[key]
            for s in members:
                pick = cands[select(s.selector, [c.public_pass for c in cands], [c.score for c in cands], rng)]
                s.picks.append(pick)
                s.stopped = pick.public_pass
                if not s.stopped:
                    s.state = next_turn(s.state, pick.code, pick.feedback)
    return searches


def _group_by_state(live: list[SearchState]) -> dict[tuple, list[SearchState]]:
    groups: dict[tuple, list[SearchState]] = {}
    for s in live:
        key = (s.problem.id, s.index, tuple((m["role"], m["content"]) for m in s.state))
        groups.setdefault(key, []).append(s)
    return groups


def _sample(groups: dict[tuple, list[SearchState]], backend, sandbox: Sandbox, scorer: Scorer | None,
            config: SearchConfig, turn: int, cache: dict, score_cache: dict) -> dict[tuple, list[Candidate]]:
    """N candidates per unique state, executed (public + private) and scored, each code once."""
    keys = list(groups)
    prompts = [render(backend.tokenizer, groups[k][0].state) for k in keys for _ in range(config.candidates)]
    sampling = _turn_sampling(config, turn)
    completions = backend.generate(prompts, sampling)
    codes = [extract_code(c.text, groups[keys[i // config.candidates]][0].problem.entry_point)
             for i, c in enumerate(completions)]
    problems = [groups[keys[i // config.candidates]][0].problem for i in range(len(codes))]
    todo = {(p.id, c): (p, c) for p, c in zip(problems, codes) if (p.id, c) not in cache}
    jobs = [Job(c, p.tests, n_public=len(p.public_tests)) for p, c in todo.values()]
    for (key, (p, _)), r in zip(todo.items(), sandbox.run_batch(jobs)):
        n_pub = len(p.public_tests)
        public = all(r.tests_passed[:n_pub])
        cache[key] = (public, public and all(r.tests_passed[n_pub:]), "" if public else r.feedback)
    _score_missing(problems, codes, scorer, score_cache)
    out: dict[tuple, list[Candidate]] = {}
    for i, (p, c) in enumerate(zip(problems, codes)):
        public, correct, feedback = cache[(p.id, c)]
        out.setdefault(keys[i // config.candidates], []).append(
            Candidate(c, public, correct, feedback, score_cache.get((p.id, c), 0.0)))
    return out


def _score_missing(problems: list[Problem], codes: list[str], scorer: Scorer | None, score_cache: dict) -> None:
    if scorer is None:
        return
    missing = list(dict.fromkeys((p.id, c) for p, c in zip(problems, codes) if (p.id, c) not in score_cache))
    texts = {p.id: problem_text(p) for p in problems}
    for key, s in zip(missing, scorer([(texts[pid], code) for pid, code in missing])):
        score_cache[key] = s


def _turn_sampling(config: SearchConfig, turn: int) -> SamplingConfig:
    return dataclasses.replace(config.sampling, seed=config.seed * 1_000_003 + turn)


def summarize(searches: list[SearchState], selectors: list[Selector], turns: int) -> dict:
    """Per selector: accuracy (after all turns) and by_turn[t] = accuracy if cut after turn t+1."""
    out = {}
    for sel in selectors:
        mine = [s for s in searches if s.selector is sel]
        by_turn = [sum(correct_by(s, t) for s in mine) / len(mine) for t in range(1, turns + 1)]
        out[sel.value] = {"accuracy": by_turn[-1], "by_turn": by_turn, "searches": len(mine)}
    return out


def correct_by(search: SearchState, t: int) -> bool:
    """The search's pick at turn min(t, its last turn) is correct."""
    picks = search.picks[:t]
    return bool(picks) and picks[-1].correct
