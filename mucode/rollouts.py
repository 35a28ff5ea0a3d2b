"""Multi-turn rollout collection: K episodes per problem, up to T turns, stop at the first public pass.

    python pipelines/collect_rollouts.py run_dir=runs/default iteration=1             # all shards here
    python pipelines/collect_rollouts.py run_dir=runs/default iteration=1 shard=2/4   # one array task
    python pipelines/collect_rollouts.py run_dir=runs/default iteration=1 merge=true  # after the array

Every turn is recorded (state, response, code, public feedback, public pass, private pass). Code runs
in the sandbox while the next batch is generated: each finished generation batch is submitted to the
sandbox pool at once. Only public feedback ever enters a prompt.

Work is cut into chunks of `rollout.chunk_size` problems (chunk c = problems[c*C:(c+1)*C]); shard i of
n takes the chunks with c % n == i, and each chunk is seeded by (seed, iteration, c), so the episodes
do not depend on the number of shards. A finished chunk is written atomically and never redone: a
killed shard resumes at its first missing chunk, and `merge` refuses to run until every shard is
complete, naming the missing ones.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from mucode import artifacts
from mucode.generation import SamplingConfig, load_backend
from mucode.models import ModelConfig, load_generator
from mucode.prompts import extract_code, first_turn, next_turn, render
from mucode.records import Episode, Problem, Turn, read_records, write_records
from mucode.sandbox import Job, Sandbox, SandboxConfig

log = logging.getLogger(__name__)


@dataclass
class RolloutConfig:
    """Shape of the rollout collection."""

    samples: int = 4
    """K: independent episodes per problem (paper: 15)."""
    turns: int = 3
    """T: most turns per episode."""
    chunk_size: int = 50
    """Problems per resumable chunk."""
    problems_per_iteration: int | None = 600
    """Fresh problems per iteration taken in order from the split (iteration i uses slice i-1,
    wrapping around); None = the whole split every iteration."""

    def __post_init__(self) -> None:
        if self.samples < 1 or self.turns < 1 or self.chunk_size < 1:
            raise ValueError("rollout.samples, rollout.turns and rollout.chunk_size must be >= 1")


@dataclass
class CollectRolloutsConfig:
    """Stage: collect episodes with generator `iteration - 1` on the problems of `split`."""

    run_dir: str = "runs/default"
    """The run directory (see artifacts.RunLayout)."""
    iteration: int = 1
    """Expert iteration i >= 1: rollouts of generator i-1 go to run_dir/iter{i}/rollouts."""
    split: str = "train"
    """Problem split to roll out on (run_dir/problems/<split>)."""
    generator: str | None = None
    """A model folder or Hub id to sample from instead of the run's generator i-1."""
    shard: str = "0/1"
    """This process's shard "i/n" (Slurm array index / count)."""
    merge: bool = False
    """Only merge the complete shards into run_dir/iter{i}/rollouts/episodes."""
    seed: int = 0
    """Base seed of sampling."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model (for the generator path, dtype and chat template)."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Episodes per problem, turns, chunking."""
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.8))
    """Sampling of each turn."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """Limits for running the generated code."""

    def __post_init__(self) -> None:
        parse_shard(self.shard)
        if self.iteration < 1:
            raise ValueError(f"iteration={self.iteration} must be >= 1 (rollouts of generator iteration-1)")


def parse_shard(shard: str) -> tuple[int, int]:
    """"i/n" -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise ValueError(f'shard="{shard}" must look like "i/n", e.g. "0/4"') from None
    if not 0 <= i < n:
        raise ValueError(f'shard="{shard}": need 0 <= i < n')
    return i, n


def iteration_problems(problems: list[Problem], config: RolloutConfig, iteration: int) -> list[Problem]:
    """The fresh slice of the split that iteration i rolls out on."""
    n = config.problems_per_iteration
    if n is None or n >= len(problems):
        return problems
    start = ((iteration - 1) * n) % len(problems)
    return (problems + problems)[start:start + n]


def run_episodes(problems: list[Problem], backend, sandbox: Sandbox, config: RolloutConfig,
                 sampling: SamplingConfig, iteration: int) -> list[Episode]:
    """K episodes for each problem, turn by turn over all still-open episodes at once."""
    tok = backend.tokenizer
    slots = [(p, k) for p in problems for k in range(config.samples)]
    states = [first_turn(p) for p, _ in slots]
    turns: list[list[Turn]] = [[] for _ in slots]
    open_ = list(range(len(slots)))
    for _ in range(config.turns):
        if not open_:
            break
        futures: dict[int, object] = {}
        codes: dict[int, str] = {}

        def execute(batch: list[int], completions) -> None:
            for j, c in zip(batch, completions):
                problem = slots[open_[j]][0]
                codes[j] = extract_code(c.text, problem.entry_point)
                futures[j] = sandbox.submit(Job(codes[j], problem.tests, n_public=len(problem.public_tests)))

        completions = backend.generate([render(tok, states[e]) for e in open_], sampling, on_batch=execute)
        still_open = []
        for j, e in enumerate(open_):
            problem, result = slots[e][0], futures[j].result()
            n_pub = len(problem.public_tests)
            public, private = all(result.tests_passed[:n_pub]), all(result.tests_passed[n_pub:])
            feedback = "" if public else result.feedback
            turns[e].append(Turn(states[e], completions[j].text, codes[j], feedback, public, private))
            if not public:
                states[e] = next_turn(states[e], codes[j], feedback)
                still_open.append(e)
        open_ = still_open
    return [Episode(p.id, k, iteration - 1, t) for (p, k), t in zip(slots, turns)]


def shard_dir(out: Path, shard: tuple[int, int]) -> Path:
    return out / f"shard-{shard[0]:03d}-of-{shard[1]:03d}"


def collect_shard(config: CollectRolloutsConfig, problems: list[Problem], out: Path) -> Path:
    """Run this shard's missing chunks, then write the shard's episodes and manifest."""
    i, n = parse_shard(config.shard)
    sdir = shard_dir(out, (i, n))
    if artifacts.read_manifest(sdir) is not None:
        log.info("%s complete, skipping", sdir)
        return sdir
    size = config.rollout.chunk_size
    chunks = [c for c in range(-(-len(problems) // size)) if c % n == i]
    todo = [c for c in chunks if not (sdir / f"chunk-{c:05d}" / "dataset_info.json").exists()]
    generator = config.generator or artifacts.RunLayout(Path(config.run_dir)).generator(
        config.iteration - 1, config.model.name_or_path)
    start = time.perf_counter()
    if todo:
        model, tok = load_generator(config.model, generator)
        backend = load_backend(model, tok, config.sampling, generator)
        with Sandbox(config.sandbox) as sandbox:
            for c in tqdm(todo, desc=f"rollouts shard {i}/{n}", unit="chunk"):
                sampling = _chunk_sampling(config, c)
                eps = run_episodes(problems[c * size:(c + 1) * size], backend, sandbox, config.rollout,
                                   sampling, config.iteration)
                write_records(eps, sdir / f"chunk-{c:05d}", Episode)
        log.info("generation: %.0f tokens/s over %d completions", backend.stats.tokens_per_s,
                 backend.stats.completions)
    episodes = [e for c in chunks for e in read_records(sdir / f"chunk-{c:05d}", Episode)]
    write_records(episodes, sdir / "episodes", Episode)
    chunk_dirs = [f"chunk-{c:05d}" for c in chunks]
    artifacts.write_manifest(sdir, {}, ["episodes", *chunk_dirs], episode_metrics(episodes),
                             time.perf_counter() - start)
    return sdir


def _chunk_sampling(config: CollectRolloutsConfig, chunk: int) -> SamplingConfig:
    """Chunk c's sampling seed depends on (seed, iteration, c) only, not on the sharding."""
    seed = (config.seed * 1_000_003 + config.iteration) * 100_019 + chunk
    return dataclasses.replace(config.sampling, seed=seed)


def merge_shards(out: Path, n: int) -> list[Episode]:
    """Concatenate the n complete shards (in shard order) into out/episodes + manifest."""
    shards = [shard_dir(out, (i, n)) for i in range(n)]
    missing = [s.name for s in shards if artifacts.read_manifest(s) is None]
    if missing:
        raise FileNotFoundError(f"{out}: shards not complete yet: {', '.join(missing)}; run them before merging")
    episodes = [e for s in shards for e in read_records(s / "episodes", Episode)]
    episodes.sort(key=lambda e: (e.problem_id, e.sample))
    write_records(episodes, out / "episodes", Episode)
    metrics = episode_metrics(episodes)
    artifacts.write_manifest(out, {s.name: s / "episodes" for s in shards}, ["episodes"], metrics)
    log.info("rollouts: %s", metrics)
    return episodes


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


def collect_rollouts(config: CollectRolloutsConfig) -> Path:
    """The stage: this shard's episodes; with one shard (or merge=true) also the merged episodes."""
    layout = artifacts.RunLayout(Path(config.run_dir))
    out = layout.rollouts(config.iteration)
    i, n = parse_shard(config.shard)
    if not config.merge and artifacts.read_manifest(out) is None:
        split = artifacts.require(layout.problems(config.split), f"problem split '{config.split}'",
                                  "the main job's problems stage (pipelines/expert_iteration.py)")
        problems = iteration_problems(read_records(split, Problem), config.rollout, config.iteration)
        collect_shard(config, problems, out)
    if (n == 1 or config.merge) and artifacts.read_manifest(out) is None:
        merge_shards(out, n)
    return out / "episodes"
