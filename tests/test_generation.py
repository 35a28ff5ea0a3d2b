import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from mucode.generation import SamplingConfig, TransformersBackend
from mucode.prompts import first_turn, render
from mucode.records import Problem


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    return TransformersBackend(model, AutoTokenizer.from_pretrained(tiny_model_dir))


def _prompts(tok, n):
    return [render(tok, first_turn(Problem(str(i), "Write f" + " now" * i, "f", ["assert f(1) == 2"], [])))
            for i in range(n)]


def test_batched_greedy_matches_one_at_a_time(backend):
    prompts = _prompts(backend.tokenizer, 5)
    greedy = SamplingConfig(temperature=0, max_new_tokens=12, batch_size=5)
    batched = backend.generate(prompts, greedy)
    single = [backend.generate([p], greedy)[0] for p in prompts]
    assert [c.text for c in batched] == [c.text for c in single]


def test_seeded_sampling_is_reproducible_and_counts_tokens(backend):
    prompts = _prompts(backend.tokenizer, 4)
    cfg = SamplingConfig(temperature=1.0, max_new_tokens=10, batch_size=2, seed=3)
    a, b = backend.generate(prompts, cfg), backend.generate(prompts, cfg)
    assert a == b
    assert all(1 <= c.n_tokens <= 10 and (c.finished or c.n_tokens == 10) for c in a)
    assert backend.stats.tokens >= sum(c.n_tokens for c in a) and backend.stats.tokens_per_s > 0


def test_stops_at_end_of_turn(backend):
    tok = backend.tokenizer

    def favour_end(module, args, logits):  # make <|end|> the likeliest token at every step
        logits[..., tok.eos_token_id] += 100.0
        return logits

    hook = backend.model.lm_head.register_forward_hook(favour_end)
    try:
        [c] = backend.generate(_prompts(tok, 1), SamplingConfig(temperature=0, max_new_tokens=10))
    finally:
        hook.remove()
    assert c.finished and c.n_tokens == 1 and c.text == ""


def test_on_batch_reports_every_prompt_once(backend):
    seen = []
    prompts = _prompts(backend.tokenizer, 5)
    backend.generate(prompts, SamplingConfig(temperature=0, max_new_tokens=4, batch_size=2),
                     on_batch=lambda idx, outs: seen.extend(idx))
    assert sorted(seen) == list(range(5))


@pytest.mark.parametrize("kwargs", [{"temperature": -1}, {"top_p": 0}, {"max_new_tokens": 0}])
def test_sampling_config_validation(kwargs):
    with pytest.raises(ValueError, match="sampling."):
        SamplingConfig(**kwargs)
