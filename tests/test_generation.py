import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from mucode.generation import KVDecoder, SamplingConfig, TransformersBackend, bf16_copy, sample_kv, sample_next
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
    eos = backend.tokenizer.eos_token_id  # the tokens themselves, as online RL scores them
    assert all(len(c.token_ids) == c.n_tokens and (c.token_ids[-1] == eos) == c.finished for c in a)
    assert [backend.tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in a] == [c.text for c in a]


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


def _llama(tok, kv_heads, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=kv_heads, intermediate_size=64, max_position_embeddings=128,
                                        rope_theta=500.0)).eval()


@pytest.mark.parametrize("kv_heads", [4, 2])  # multi-head and grouped-query attention
def test_kv_decoder_matches_the_model_forward(tiny_tokenizer, kv_heads):
    model = _llama(tiny_tokenizer, kv_heads)
    prompts = [[5, 9, 11, 40, 7], [8, 3], [60, 61, 62]]
    fed = [[17, 23], [2, 90], [33, 4]]  # tokens fed after the prompts, one per step
    decoder = KVDecoder(model, prompts, max_new_tokens=3)
    with torch.inference_mode():
        got = [decoder.prefill()] + [decoder.step(torch.tensor(col)) for col in zip(*fed)]
        for r, (p, f) in enumerate(zip(prompts, fed)):
            full = model(torch.tensor([p + f])).logits[0]
            for s in range(len(f) + 1):
                torch.testing.assert_close(got[s][r], full[len(p) - 1 + s], atol=1e-5, rtol=1e-4)


def test_finished_rows_stop_and_leave_the_batch(tiny_tokenizer):
    """Greedy rows cut at a chosen stop token equal the uncut rows truncated there (rows leave mid-batch)."""
    model = _llama(tiny_tokenizer, 4, seed=1)
    prompts = [[5 + i, 9, 11 + 2 * i] for i in range(8)]
    greedy = SamplingConfig(temperature=0, max_new_tokens=12)
    with torch.inference_mode():
        uncut = sample_kv(model, prompts, greedy, eos=-5, generator=torch.Generator())
        counts = {t: sum(t in row for row in uncut) for t in {t for row in uncut for t in row}}
        stop = max(counts, key=lambda t: (2 <= counts[t] <= 6, -min(r.index(t) for r in uncut if t in r)))
        cut = sample_kv(model, prompts, greedy, eos=stop, generator=torch.Generator())
    assert 2 <= counts[stop] <= 6
    assert cut == [row[: row.index(stop) + 1] if stop in row else row for row in uncut]


def test_equal_prompts_share_a_prefill_and_sample_independently(backend):
    prompts = _prompts(backend.tokenizer, 2) * 3
    cfg = SamplingConfig(temperature=1.0, max_new_tokens=8, batch_size=6, seed=1)
    outs = backend.generate(prompts, cfg)
    assert len({c.text for c in outs[0::2]}) > 1  # copies of one prompt are independent samples
    greedy = backend.generate(prompts, SamplingConfig(temperature=0, max_new_tokens=8, batch_size=6))
    single = backend.generate(prompts[:1], SamplingConfig(temperature=0, max_new_tokens=8))
    assert {c.text for c in greedy[0::2]} == {single[0].text}


def test_top_p_keeps_the_smallest_set_holding_the_mass():
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log().repeat(2000, 1)
    gen = torch.Generator().manual_seed(0)
    assert set(sample_next(logits, 1.0, 0.6, gen).tolist()) == {0, 1}   # 0.5 < 0.6 -> add 0.3
    assert set(sample_next(logits, 1.0, 0.5, gen).tolist()) == {0}      # 0.5 already holds 0.5
    assert set(sample_next(logits, 1.0, 1.0, gen).tolist()) == {0, 1, 2}
    assert sample_next(logits[:1], 0.0, 0.5, gen).tolist() == [0]


def test_bf16_sampling_leaves_the_model_in_fp32(backend):
    outs = backend.generate(_prompts(backend.tokenizer, 3),
                            SamplingConfig(temperature=0.8, max_new_tokens=6, bf16=True))
    assert all(1 <= c.n_tokens <= 6 for c in outs)
    assert next(backend.model.parameters()).dtype == torch.float32
    half = bf16_copy(backend.model)
    assert half.dtype == torch.bfloat16 and half.model.rotary_emb.inv_freq.dtype == torch.float32


@pytest.mark.parametrize("fast", [True, False])
def test_bf16_by_default_only_where_it_is_fast(backend, monkeypatch, fast):
    import mucode.generation as generation

    copies = []
    monkeypatch.setattr(generation, "bf16_is_fast", lambda: fast)
    monkeypatch.setattr(generation, "bf16_copy", lambda m: copies.append(m) or m)
    prompts = _prompts(backend.tokenizer, 2)
    backend.generate(prompts, SamplingConfig(temperature=0.8, max_new_tokens=3))            # bf16: null = auto
    assert len(copies) == int(fast)
    backend.generate(prompts, SamplingConfig(temperature=0.8, max_new_tokens=3, bf16=False))  # explicit wins
    assert len(copies) == int(fast)


def test_other_architectures_use_model_generate(tiny_tokenizer):
    from transformers import MistralConfig, MistralForCausalLM

    tok = tiny_tokenizer
    model = MistralForCausalLM(MistralConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                                             pad_token_id=tok.pad_token_id))
    backend = TransformersBackend(model, tok)
    prompts = _prompts(tok, 3)
    cfg = SamplingConfig(temperature=0.9, top_p=0.9, max_new_tokens=5, seed=2)
    a = backend.generate(prompts, cfg)
    assert a == backend.generate(prompts, cfg) and all(1 <= c.n_tokens <= 5 for c in a)
