"""Stage collect_rollouts: K episodes per problem with generator i-1, in resumable chunks and shards.

    python pipelines/collect_rollouts.py run_dir=runs/default iteration=1             # all shards here
    python pipelines/collect_rollouts.py run_dir=runs/default iteration=1 shard=2/4   # one array task
    python pipelines/collect_rollouts.py run_dir=runs/default iteration=1 merge=true  # after the array

Reads run_dir/problems/<split> and generator i-1; writes run_dir/iter{i}/rollouts/episodes (Episode).
Work is cut into chunks of `rollout.chunk_size` problems (chunk c = problems[c*C:(c+1)*C]); shard i of
n takes the chunks with c % n == i, and each chunk is seeded by (seed, iteration, c), so the episodes
do not depend on the number of shards. A finished chunk is written atomically and never redone: a
killed shard resumes at its first missing chunk, and `merge` refuses to run until every shard is
complete, naming the missing ones. config.yaml is written by the process that completes the stage
(one process, or the merge), without `shard` and `merge`: they say where it ran, not what it computed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from mucode import artifacts, recipes
from mucode.generation import SamplingConfig, open_backend
from mucode.models import ModelConfig, resolve_path
from mucode.records import Episode, Problem, read_records, write_records
from mucode.rollouts import RolloutRecipe, episode_metrics, iteration_problems, run_episodes
from mucode.sandbox import Sandbox, SandboxConfig
from mucode.tracking import TrackingConfig

log = logging.getLogger(__name__)

PLACEMENT = ("shard", "merge")


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
    """A model folder or Hub id to sample from; null = the run's generator i-1."""
    shard: str = "0/1"
    """This process's shard "i/n" (Slurm array index / count)."""
    merge: bool = False
    """Only merge the complete shards into run_dir/iter{i}/rollouts/episodes."""
    seed: int = 0
    """Base seed of sampling."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The base model (for the generator path, dtype and chat template)."""
    rollout: RolloutRecipe = field(default_factory=recipes.rollouts)
    """Episodes per problem, turns, problems per iteration, chunking, sampling."""
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    """Limits for running the generated code."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """metrics.jsonl + wandb (the merged rollouts' pass rates by turn)."""

    def __post_init__(self) -> None:
        parse_shard(self.shard)
        if self.iteration < 1:
            raise ValueError(f"iteration={self.iteration} must be >= 1 (rollouts of generator iteration-1)")
        refuse_test_split(self.split)


def refuse_test_split(split: str) -> None:
    """Rollouts become training data of the verifier and the generator: never from the test split."""
    if split == "test":
        raise ValueError("split=test: rollouts train the verifier and the generator, so they never come from the "
                         "test split; roll out on train (a test-only task such as humaneval is for evaluation: "
                         "task=mbpp eval.tasks=[mbpp,humaneval])")


def parse_shard(shard: str) -> tuple[int, int]:
    """"i/n" -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise ValueError(f'shard="{shard}" must look like "i/n", e.g. "0/4"') from None
    if not 0 <= i < n:
        raise ValueError(f'shard="{shard}": need 0 <= i < n')
    return i, n


def shard_dir(out: Path, shard: tuple[int, int]) -> Path:
    return out / f"shard-{shard[0]:03d}-of-{shard[1]:03d}"


def chunk_sampling(config: CollectRolloutsConfig, chunk: int) -> SamplingConfig:
    """Chunk c's sampling seed depends on (seed, iteration, c) only, not on the sharding."""
    seed = (config.seed * 1_000_003 + config.iteration) * 100_019 + chunk
    return dataclasses.replace(config.rollout.sampling, seed=seed)


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
    generator = resolve_path(config.generator or artifacts.RunLayout(config.run_dir).generator(
        config.iteration - 1, config.model.name_or_path))
    start = time.perf_counter()
    if todo:
        backend = open_backend(config.model, generator, config.rollout.sampling)
        with Sandbox(config.sandbox) as sandbox:
            for c in tqdm(todo, desc=f"rollouts shard {i}/{n}", unit="chunk"):
                eps = run_episodes(problems[c * size:(c + 1) * size], backend, sandbox, config.rollout,
                                   chunk_sampling(config, c), config.iteration)
                write_records(eps, sdir / f"chunk-{c:05d}", Episode)
        log.info("generation: %.0f tokens/s over %d completions", backend.stats.tokens_per_s,
                 backend.stats.completions)
    episodes = [e for c in chunks for e in read_records(sdir / f"chunk-{c:05d}", Episode)]
    write_records(episodes, sdir / "episodes", Episode)
    chunk_dirs = [f"chunk-{c:05d}" for c in chunks]
    artifacts.write_manifest(sdir, {}, ["episodes", *chunk_dirs], episode_metrics(episodes),
                             time.perf_counter() - start)
    return sdir


def merge_shards(out: Path, n: int) -> artifacts.StageOutput:
    """Concatenate the n complete shards (in shard order) into out/episodes."""
    shards = [shard_dir(out, (i, n)) for i in range(n)]
    missing = [s.name for s in shards if artifacts.read_manifest(s) is None]
    if missing:
        raise FileNotFoundError(f"{out}: shards not complete yet: {', '.join(missing)}; run them before merging")
    episodes = [e for s in shards for e in read_records(s / "episodes", Episode)]
    episodes.sort(key=lambda e: (e.problem_id, e.sample))
    write_records(episodes, out / "episodes", Episode)
    metrics = episode_metrics(episodes)
    log.info("rollouts: %s", metrics)
    return artifacts.StageOutput({s.name: s / "episodes" for s in shards}, ["episodes"], metrics)


def run(config: CollectRolloutsConfig) -> dict:
    """This shard's episodes; with one shard (or merge=true) also the merged stage. Returns the
    stage's metrics when it completed here (a shard of several returns its own)."""
    layout = artifacts.RunLayout(config.run_dir)
    out = layout.rollouts(config.iteration)
    i, n = parse_shard(config.shard)
    if not config.merge and artifacts.read_manifest(out) is None:
        split = artifacts.require(layout.problems(config.split), f"problem split '{config.split}'",
                                  "pipelines/prepare.py")
        problems = iteration_problems(read_records(split, Problem), config.rollout, config.iteration)
        sdir = collect_shard(config, problems, out)
        if n > 1:
            return artifacts.read_manifest(sdir)["metrics"]
    return artifacts.run_stage(out, config, lambda logger: merge_shards(out, n), exclude=PLACEMENT)
