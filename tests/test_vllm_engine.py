"""The vLLM backend's requests, on the CPU with a stand-in for the vllm package (it needs a GPU): one
seed per request, token-id prompts without a second bos, one engine per model and process. The real
engine runs in the gpu-marked test, where vllm is installed."""

import dataclasses
import json
import sys
import types

import pytest
from transformers import AutoModelForCausalLM

from mucode import recipes, vllm_engine
from mucode.generation import Engine, SamplingConfig, load_backend
from mucode.prompts import render
from mucode.records import Problem, write_records
from mucode.rollouts import RolloutRecipe
from mucode.stages import collect_rollouts, evaluate, solve


class _Output:
    def __init__(self, n):
        self.text, self.token_ids, self.finish_reason = f"answer {n}", [1] * (n + 1), "stop"


class _LLM:
    """Records what mucode asks of vLLM."""

    made: list = []

    def __init__(self, **kwargs):
        self.kwargs, self.calls = kwargs, []
        _LLM.made.append(self)

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((prompts, params))
        return [types.SimpleNamespace(outputs=[_Output(i)]) for i in range(len(prompts))]


@pytest.fixture
def fake_vllm(monkeypatch):
    _LLM.made = []
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=_LLM, SamplingParams=lambda **kw: kw))
    yield
    vllm_engine.release_engines()


def test_requests_seed_each_sample_and_send_token_ids_with_one_bos(tiny_tokenizer):
    prompt = render(tiny_tokenizer, [{"role": "user", "content": "Write f."}])
    prompts, params = vllm_engine.requests(tiny_tokenizer, [prompt] * 4, SamplingConfig(seed=3, max_new_tokens=7))
    assert [p["seed"] for p in params] == [3 * 1_000_003 + i for i in range(4)]  # K samples of one prompt differ
    ids = prompts[0]["prompt_token_ids"]
    assert ids == tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert ids.count(tiny_tokenizer.bos_token_id) == 1 and ids[0] == tiny_tokenizer.bos_token_id
    assert params[0]["stop_token_ids"] == [tiny_tokenizer.eos_token_id] and params[0]["max_tokens"] == 7
    assert vllm_engine.requests(tiny_tokenizer, [], SamplingConfig()) == ([], [])


def test_backend_generates_in_order_and_reuses_one_engine_per_model(tiny_tokenizer, fake_vllm):
    config = SamplingConfig(backend=Engine.vllm, vllm_memory=0.3)
    backend = load_backend(None, tiny_tokenizer, config, "models/a")
    seen = []
    out = backend.generate(["x", "y"], config, on_batch=lambda idx, comps: seen.append((idx, len(comps))))
    assert [c.text for c in out] == ["answer 0", "answer 1"] and seen == [([0, 1], 2)]
    assert [c.token_ids for c in out] == [[1], [1, 1]]
    assert backend.stats.completions == 2 and backend.stats.tokens == 3
    (llm,) = _LLM.made
    assert llm.kwargs == {"model": "models/a", "seed": 0, "gpu_memory_utilization": 0.3}
    prompts, params = llm.calls[0]
    assert all("prompt_token_ids" in p for p in prompts) and len({p["seed"] for p in params}) == 2
    assert load_backend(None, tiny_tokenizer, config, "models/a").llm is llm  # one engine per model
    load_backend(None, tiny_tokenizer, config, "models/b")  # another model: the first is released
    assert list(vllm_engine._ENGINES) == ["models/b"]
    vllm_engine.release_engines()
    assert not vllm_engine._ENGINES


def test_vllm_backend_without_vllm_installed_is_one_clear_error(tiny_tokenizer, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(ModuleNotFoundError, match="sampling.backend=vllm needs `pip install mucode\\[vllm\\]`"):
        load_backend(None, tiny_tokenizer, SamplingConfig(backend=Engine.vllm), "models/a")
    with pytest.raises(ValueError, match="vllm_memory=0.0 must be in"):
        SamplingConfig(vllm_memory=0.0)


class _Sampled(Exception):
    """Raised by the stand-in engine: the stage got as far as sampling."""


@pytest.mark.parametrize("stage", ["rollouts", "evaluate", "solve"])
def test_stages_on_vllm_load_only_the_tokenizer_not_the_weights(stage, tiny_model_dir, fake_vllm, tmp_path,
                                                                monkeypatch):
    """The engine reads the weights itself: a stage with backend=vllm must not load the Hugging Face model too
    (on a GPU that doubles its memory and load time)."""
    def no_weights(*args, **kwargs):
        raise AssertionError("backend=vllm loaded the Hugging Face weights")

    def sampled(self, prompts, params, use_tqdm=True):
        raise _Sampled

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_weights)
    monkeypatch.setattr(_LLM, "generate", sampled)
    problem, model = Problem("p", "Write f(x) that adds 3.", "f", ["assert f(1) == 4"], []), str(tiny_model_dir)
    for split in ("train", "test"):
        write_records([problem], tmp_path / "problems" / split, Problem)
    (tmp_path / "mine.jsonl").write_text(json.dumps(dataclasses.asdict(problem)) + "\n")
    vllm = SamplingConfig(backend=Engine.vllm)
    search = dataclasses.replace(recipes.evaluation().search, searches=1, candidates=1, turns=1, sampling=vllm)
    run = {
        "rollouts": lambda: collect_rollouts.run(collect_rollouts.CollectRolloutsConfig(
            run_dir=str(tmp_path), generator=model,
            rollout=RolloutRecipe(samples=1, turns=1, chunk_size=1, sampling=vllm))),
        "evaluate": lambda: evaluate.run(evaluate.EvaluateConfig(
            run_dir=str(tmp_path), generator=model, verifier=None,
            eval=dataclasses.replace(recipes.evaluation(), search=search))),
        "solve": lambda: solve.run(solve.SolveConfig(
            run_dir=str(tmp_path), problems=str(tmp_path / "mine.jsonl"), generator=model, verifier=None,
            search=search, out=str(tmp_path / "solutions.jsonl"))),
    }[stage]
    with pytest.raises(_Sampled):
        run()
    (llm,) = _LLM.made
    assert llm.kwargs["model"] == model
