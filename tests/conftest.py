"""Shared fixtures: an isolated, offline environment and a tiny model built in seconds.

Every test runs with HF/wandb caches in a temporary folder and the Hub switched off, so nothing is
downloaded and nothing is written to the user's home.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

_CACHE = Path(tempfile.mkdtemp(prefix="mucode-test-cache-"))
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ.update({
    "HF_HOME": str(_CACHE / "hf"),
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "WANDB_DIR": str(_CACHE / "wandb"),
    "WANDB_CACHE_DIR": str(_CACHE / "wandb-cache"),
    "WANDB_CONFIG_DIR": str(_CACHE / "wandb-config"),
    "WANDB_DATA_DIR": str(_CACHE / "wandb-data"),
    "MUCODE_CACHE": str(_CACHE / "mucode"),
    "TOKENIZERS_PARALLELISM": "false",
})
torch.set_num_threads(min(2, os.cpu_count() or 1))

CORPUS = [
    "Write a function fold(x) that will add 3 to x, then return the result.\n"
    "Tests:\nassert fold(1) == 4\n```python\ndef fold(x):\n    y = x + 3\n    return y\n```",
    "Write a function gather(xs) that will keep elements greater than 2, then return the sum.\n"
    "Tests:\nassert gather([1, 5, 3]) == 8\n```python\ndef gather(xs):\n    ys = [v for v in xs if v > 2]\n"
    "    return sum(ys)\n```",
    "Failed: assert fold(1) == 4\nfold(1) returned 5\n\nFix the function.",
] * 20


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The default byte-level BPE tokenizer, trained on a small corpus (well under a second)."""
    from mucode.models import build_tokenizer

    return build_tokenizer(CORPUS, vocab_size=400)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A saved 2-layer, hidden-32 Llama + tokenizer folder (loadable with the Auto classes)."""
    from mucode.models import TinyModelConfig, build_tiny_model

    path = tmp_path_factory.mktemp("tiny") / "model"
    config = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                             vocab_size=400, max_positions=256)
    model = build_tiny_model(config, tiny_tokenizer)
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


# A miniature of the main job's default: a 2-layer hidden-32 model, 200 problems, 1 iteration, a few
# steps per stage. It learns nothing (so the verifier is BCE and the expert the learned one: no code is
# correct); it runs every stage for real. test_iterate and test_slurm share one in-process run of it.
MINI = [
    "task.embedded.size=200", "model.tiny.hidden_size=32", "model.tiny.num_layers=2", "model.tiny.num_heads=2",
    "model.tiny.intermediate_size=64", "model.tiny.vocab_size=500", "iterations=1",
    "warmup.max_steps=4", "warmup.batch_tokens=1024", "warmup.checkpoint_every=2",
    "rollout.problems_per_iteration=6", "rollout.samples=2", "rollout.chunk_size=2",
    "rollout.sampling.max_new_tokens=16", "verifier.loss=bce", "relabel.mode=learned", "verifier.train.max_steps=3",
    "verifier.train.checkpoint_every=1", "sft.train.max_steps=3", "sft.train.checkpoint_every=1",
    "eval.limit=4", "eval.search.searches=1", "eval.search.candidates=2", "eval.search.turns=2",
    "eval.search.sampling.max_new_tokens=16", "tracking.wandb=disabled",
]


@pytest.fixture(scope="session")
def mini() -> list[str]:
    """The overrides of the miniature main job."""
    return list(MINI)


@pytest.fixture(scope="session")
def mini_run(tmp_path_factory) -> Path:
    """The miniature main job with final_rollouts=true, run once in this process: <tmp>/run."""
    from mucode.config import compose
    from mucode.stages.expert_iteration import run

    root = tmp_path_factory.mktemp("main-job") / "run"
    run(compose("expert_iteration", [f"run_dir={root}", *MINI, "final_rollouts=true"]))
    return root
