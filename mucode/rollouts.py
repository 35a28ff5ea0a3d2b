"""Multi-turn rollouts: K episodes per problem, up to T turns, stop at the first public pass.

    episodes = run_episodes(problems, backend, sandbox, RolloutRecipe(), iteration=1)

Every turn is recorded (state, response, code, public feedback, public pass, private pass). Code runs
in the sandbox while the next batch is generated: each finished generation batch is submitted to the
sandbox pool at once. Only public feedback ever enters a prompt. The stage that collects them into
a run (chunks, shards, resume) is mucode.stages.collect_rollouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mucode.generation import Backend, SamplingConfig
from mucode.prompts import extract_code, first_turn, next_turn, render
from mucode.records import Episode, Problem, Turn
from mucode.sandbox import Job, Sandbox


@dataclass
class RolloutRecipe:
    """How rollouts are collected: episodes per problem, turns, which problems, sampling."""

    samples: int = 15
    """K: independent episodes per problem (the paper's 15)."""
    turns: int = 3
    """T: most turns per episode."""
    problems_per_iteration: int | None = None
    """Fresh problems per iteration taken in order from the split (iteration i uses slice i-1,
    wrapping around); None = the whole split every iteration."""
    chunk_size: int = 50
    """Problems per resumable chunk (each chunk is seeded on its own, so this shapes the samples)."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """Sampling of each turn."""

    def __post_init__(self) -> None:
        if self.samples < 1 or self.turns < 1 or self.chunk_size < 1:
            raise ValueError("rollout.samples, rollout.turns and rollout.chunk_size must be >= 1")
        if self.problems_per_iteration is not None and self.problems_per_iteration < 1:
            raise ValueError(f"rollout.problems_per_iteration={self.problems_per_iteration} must be >= 1 or null")


def iteration_problems(problems: list[Problem], config: RolloutRecipe, iteration: int) -> list[Problem]:
    """The fresh slice of the split that iteration i rolls out on."""
    n = config.problems_per_iteration
    if n is None or n >= len(problems):
        return problems
    start = ((iteration - 1) * n) % len(problems)
    return (problems + problems)[start:start + n]


def run_episodes(problems: list[Problem], backend: Backend, sandbox: Sandbox, recipe: RolloutRecipe,
                 sampling: SamplingConfig, iteration: int) -> list[Episode]:
    """K episodes for each problem, turn by turn over all still-open episodes at once.

    `sampling` is `recipe.sampling` with the caller's seed (stages seed each chunk on its own).
    """
    tok = backend.tokenizer
    slots = [(p, k) for p in problems for k in range(recipe.samples)]
    states = [first_turn(p) for p, _ in slots]
    turns: list[list[Turn]] = [[] for _ in slots]
    open_ = list(range(len(slots)))
    for _ in range(recipe.turns):
        if not open_:
            break
        futures: dict[int, object] = {}
        codes: dict[int, str] = {}

        def execute(batch: list[int], completions) -> None:
            for j, c in zip(batch, completions):
                problem = slots[open_[j]][0]
                codes[j] = extract_code(c.text, problem.entry_point)
                futures[j] = sandbox.submit(Job.for_problem(problem, codes[j]))

        completions = backend.generate([render(tok, states[e]) for e in open_], sampling, on_batch=execute)
        still_open = []
        for j, e in enumerate(open_):
            result = futures[j].result()
            public = result.public_passed
            feedback = "" if public else result.feedback
            turns[e].append(Turn(states[e], completions[j].text, codes[j], feedback, public, result.private_passed))
            if not public:
                states[e] = next_turn(states[e], codes[j], feedback)
                still_open.append(e)
        open_ = still_open
    return [Episode(p.id, k, iteration - 1, t) for (p, k), t in zip(slots, turns)]


def episode_metrics(episodes: list[Episode]) -> dict:
    """Success by turn (share of episodes correct by turn t) and the share of turn-1 failures fixed later."""
    if not episodes:
        return {"episodes": 0}
    turns = max(len(e.turns) for e in episodes)
    by_turn = [sum(any(t.correct for t in e.turns[:k + 1]) for e in episodes) / len(episodes) for k in range(turns)]
    failed_first = [e for e in episodes if not e.turns[0].correct]
    fixed = sum(e.correct for e in failed_first)
    return {
        "episodes": len(episodes),
        "generations": sum(len(e.turns) for e in episodes),
        "correct_by_turn": by_turn,
        "turn1_failures": len(failed_first),
        "turn1_failures_fixed": fixed,
        "fix_share": fixed / len(failed_first) if failed_first else 0.0,
    }
