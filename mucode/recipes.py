"""The recipes of the main job's default: every tuned value of the loop, in one place.

Each stage config takes its recipe as one object (`warmup`, `rollout`, `verifier`, `sft`, `eval`), and
the main job's config holds the same objects, so a stage run alone and the same stage inside the
main job get the same values from here. YAMLs (conf/) hold only deliberate differences; a Hydra
override (`verifier.train.lr=3e-4`) changes a value for one run. The library dataclasses
(TrainConfig, SamplingConfig, SearchConfig, ...) keep neutral or paper defaults.

These are the embedded suite's recipes for the ~2M-parameter tiny model on a CPU, sized so that the
whole loop fits about 10 minutes on 2 cores (README, "What the main job costs"); how each number was
chosen is measured in benchmarks/README.md. The paper's values (Llama-3.2-1B, Table 6: lr 5e-7 / 1e-6,
K=15, 1000 new tokens, S=10, N=5) are the library defaults where they make sense, or Hydra overrides.
"""

from __future__ import annotations

from mucode.generation import SamplingConfig
from mucode.lm_verifier import VerifierHead
from mucode.rollouts import RolloutRecipe
from mucode.search import EvalRecipe, SearchConfig
from mucode.sft import GeneratorRecipe
from mucode.training import TrainConfig
from mucode.verifier import VerifierRecipe


def sampling() -> SamplingConfig:
    """Sampling of rollouts and Best-of-N candidates: the tiny model's answers fit in 96 tokens."""
    return SamplingConfig(temperature=0.8, max_new_tokens=96)


def warm_start() -> TrainConfig:
    """Generator 0: 700 steps x 2,048 tokens at 4e-3, length-bucketed batches (its step budget was
    calibrated with them: 700 steps cross the "copy the constants" transition, 550 did not reliably)."""
    return TrainConfig(lr=4e-3, warmup_steps=20, max_steps=700, epochs=0.0, batch_tokens=2048, sort_window=50,
                       checkpoint_every=100)


def rollouts() -> RolloutRecipe:
    """K=4 episodes x T=3 turns on 500 fresh train problems per iteration."""
    return RolloutRecipe(samples=4, turns=3, problems_per_iteration=500, chunk_size=50, sampling=sampling())


def verifier() -> VerifierRecipe:
    """The loglik head (beta 0.1 x the summed log-likelihood of the code, initialised from generator 0),
    Bradley-Terry, 32 pairs per problem; 2 epochs (the paper's) x 4,096-token batches at 1e-5, random
    batches. Epochs, not steps, because R_i's data grows with every iteration. The paper's scalar head
    is `verifier.head=scalar verifier.train.lr=1e-3` (its lr here; benchmarks/README.md compares them)."""
    train = TrainConfig(lr=1e-5, warmup_steps=10, max_steps=0, epochs=2.0, batch_tokens=4096, max_length=1024,
                        sort_window=0, checkpoint_every=50)
    return VerifierRecipe(head=VerifierHead.loglik, beta=0.1, pairs_per_problem=32, l2=1e-3, valid_fraction=0.1,
                          train=train)


def iteration_sft() -> GeneratorRecipe:
    """Generators 1..M: 170 steps at 5e-4 from generator 0, random batches, warm-up references
    replayed 1:1 (keeps turn-1 skill from eroding)."""
    train = TrainConfig(lr=5e-4, warmup_steps=10, max_steps=170, epochs=0.0, batch_tokens=2048, sort_window=0,
                        checkpoint_every=50)
    return GeneratorRecipe(replay=1.0, train=train)


def evaluation() -> EvalRecipe:
    """Greedy + BoN with S=1 search x N=4 candidates x T=3 turns on the first 300 test problems: three
    generators fit the budget (the paper's S=10, N=5 is `eval.search.searches=10 eval.search.candidates=5`)."""
    search = SearchConfig(searches=1, candidates=4, turns=3, sampling=sampling())
    return EvalRecipe(split="test", limit=300, search=search)
