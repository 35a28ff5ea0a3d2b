"""Verifier: losses and pair sampling against hand-computed values, batches, metrics, and the
train_verifier stage through its Hydra config on a tiny model."""

import json
import math
import random

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from mucode import artifacts
from mucode.config import CONF_DIR, register
from mucode.lm_verifier import CodeRow, ReferenceSums, SavedHead, VerifierHead, code_rows, code_tokens, reference_for
from mucode.models import ModelConfig, load_verifier
from mucode.records import Episode, Problem, Turn, VerifierExample, write_records
from mucode.stages.train_verifier import TrainVerifierConfig
from mucode.stages.train_verifier import run as train_verifier
from mucode.prompts import INSTRUCTION, format_code
from mucode.verifier import (
    Scorer, VerifierLoss, VerifierRecipe, bce_loss, bce_step, bt_loss, collate_pairs, collate_pointwise,
    examples_from_episodes, lm_step, load_scorer, sample_pairs, score, split_by_problem, tokenize, training_items,
    validation_metrics, verifier_text,
)


def test_bce_hand_values():
    assert bce_loss(torch.tensor([0.0, 0.0]), torch.tensor([1, 0])).item() == pytest.approx(math.log(2))
    # -log sigmoid(2) and -log(1 - sigmoid(-1)) = log(1+e^-2), log(1+e^-1)
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert bce_loss(torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0])).item() == pytest.approx(expected)


def test_bt_hand_values():
    assert bt_loss(torch.tensor([1.0]), torch.tensor([0.0]), l2=0).item() == pytest.approx(math.log(1 + math.exp(-1)))
    # pairs (1, 0) and (0, 2): mean(log(1+e^-1), log(1+e^2)) + 0.1 * mean(1, 0, 0, 4)
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(2))) / 2 + 0.1 * 5 / 4
    assert bt_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]), l2=0.1).item() == pytest.approx(expected)


def test_bt_l2_counts_the_drift_from_the_starting_scores():
    # pairs (1, 0) and (0, 2) that started at (1, 1) and (-1, 2): drifts 0, 1 | -1, 0 -> l2 * mean(0, 1, 1, 0)
    start = torch.tensor([1.0, 1.0, -1.0, 2.0])  # the chosen rows', then the rejected rows'
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(2))) / 2 + 0.1 * 2 / 4
    assert bt_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]), l2=0.1, start=start).item() == \
        pytest.approx(expected)


def test_bt_gradient_pushes_pairs_apart():
    c, r = torch.tensor([0.0], requires_grad=True), torch.tensor([0.0], requires_grad=True)
    bt_loss(c, r, l2=0).backward()
    assert c.grad.item() == pytest.approx(-0.5) and r.grad.item() == pytest.approx(0.5)


def _ex(pid, code, label):
    return VerifierExample(pid, "x", code, label)


def test_sample_pairs_all_when_few_and_capped_when_many():
    exs = [_ex("a", "1", True), _ex("a", "2", False), _ex("a", "3", False), _ex("b", "4", True), _ex("c", "5", False)]
    assert sample_pairs(exs, 32, random.Random(0)) == [(0, 1), (0, 2)]  # b and c have one kind only
    many = [_ex("a", str(i), i < 6) for i in range(12)]  # 6 x 6 = 36 pairs
    pairs = sample_pairs(many, 32, random.Random(0))
    assert len(pairs) == 32 == len(set(pairs))
    assert all(many[p].label and not many[n].label for p, n in pairs)


def test_examples_from_episodes_labels_every_turn_and_dedups():
    problems = {"p": Problem("p", "Write f.", "f", ["assert f(1) == 2"], ["assert f(2) == 3"])}
    turns = [Turn([], "", "bad", "fb", False, False), Turn([], "", "good", "", True, True)]
    public_only = Turn([], "", "pub", "", True, False)
    eps = [Episode("p", 0, 0, turns), Episode("p", 1, 1, turns[1:]), Episode("p", 2, 1, [public_only])]
    exs = examples_from_episodes(eps, problems)
    assert [(e.code, e.label, e.iteration) for e in exs] == [("bad", False, 0), ("good", True, 0), ("pub", False, 1)]
    assert exs[0].prompt.startswith("Write f.") and "assert f(1) == 2" in exs[0].prompt and "f(2)" not in exs[0].prompt


def test_split_by_problem_keeps_problems_whole():
    exs = [_ex(str(i % 10), str(i), i % 2 == 0) for i in range(50)]
    train, valid = split_by_problem(exs, 0.2, seed=0)
    assert len({e.problem_id for e in valid}) == 2 and not {e.problem_id for e in train} & {e.problem_id for e in valid}


def test_score_is_batch_invariant_and_reads_the_end(tiny_model_dir):
    from mucode.models import load_verifier

    model, tok = load_verifier(str(tiny_model_dir))
    pairs = [("Write f.", "def f(x):\n    return x"), ("Write g, a longer statement here.", "x = 1"), ("p", "c")]
    assert verifier_text(tok, *pairs[2]).endswith("<|end|>")
    one = [score(model, tok, [p])[0] for p in pairs]
    assert score(model, tok, pairs, batch_size=3) == pytest.approx(one, abs=1e-5)


# ---------------------------------------------------------------------------------------------
# Training data, batches, metrics


def test_pad_left_and_pair_batches_put_chosen_rows_first():
    batch = collate_pairs([([1, 2, 3], [4]), ([5], [6, 7])], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [0, 0, 5], [0, 0, 4], [0, 6, 7]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1], [0, 0, 1], [0, 1, 1]]
    point = collate_pointwise([([1, 2], True), ([3], False)], pad_id=9)
    assert point["input_ids"].tolist() == [[1, 2], [9, 3]] and point["labels"].tolist() == [1.0, 0.0]


def test_training_items_pair_only_mixed_problems_and_count_both_sides():
    exs = [_ex("a", "1", True), _ex("a", "2", False), _ex("b", "3", True)]
    ids = [[1] * 5, [2] * 3, [3] * 7]
    recipe = VerifierRecipe(loss="bt")
    assert training_items(exs, ids, recipe, seed=0) == ([(ids[0], ids[1])], [10])
    recipe.loss = VerifierLoss.bce
    assert training_items(exs, ids, recipe, seed=0) == ([(ids[0], True), (ids[1], False), (ids[2], True)], [5, 3, 7])
    with pytest.raises(ValueError, match="loss=bt: no training problem has both"):
        training_items(exs[2:], ids[2:], VerifierRecipe(loss="bt"), seed=0)


def test_validation_metrics_on_hand_built_scores():
    exs = [_ex("a", "1", True), _ex("a", "2", False), _ex("b", "3", False), _ex("b", "4", True), _ex("c", "5", False)]
    scores = {"1": 2.0, "2": -1.0, "3": 0.5, "4": -0.5, "5": -2.0}
    m = validation_metrics(lambda pairs: [scores[code] for _, code in pairs], exs)
    # positives 2.0, -0.5 vs negatives -1.0, 0.5, -2.0: 5 of 6 pairs ordered right
    assert m["auc"] == pytest.approx(5 / 6)
    assert m["accuracy"] == pytest.approx(3 / 5)  # 2.0 > 0 right, -1.0, -2.0 right; 0.5 and -0.5 wrong
    assert m["bon_selection_accuracy"] == pytest.approx(1 / 2)  # a picks "1" (right), b picks "3" (wrong)
    assert m["bon_selection_random"] == pytest.approx(1 / 2) and m["examples"] == 5 and m["positives"] == 2
    assert 0 <= m["ece"] <= 1 and validation_metrics(lambda pairs: [], []) == {}


# ---------------------------------------------------------------------------------------------
# The stage on a tiny model


def _compose(overrides: list[str]) -> TrainVerifierConfig:
    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose(config_name="train_verifier", overrides=overrides))


def _synthetic_problems():
    """12 problems; every problem has episodes with correct codes (+) and wrong ones (-)."""
    problems = [Problem(f"p{i}", f"Write f(x) that adds {i}.", "f", [f"assert f(0) == {i}"],
                        [f"assert f(1) == {i + 1}"]) for i in range(12)]
    episodes = []
    for i, p in enumerate(problems):
        for k in range(3):
            bad = Turn([], "", f"def f(x):\n    return x - {i + k}", "Failed", False, False)
            good = Turn([], "", f"def f(x):\n    return x + {i} + {k} * 0", "", True, True)
            episodes.append(Episode(p.id, k, 0, [bad, good] if k < 2 else [bad]))
    return problems, episodes


def _synthetic_run(root):
    """_synthetic_problems written as a run's train split and iteration-1 rollouts."""
    problems, episodes = _synthetic_problems()
    write_records(problems, root / "problems" / "train", Problem)
    write_records(episodes, root / "iter1" / "rollouts" / "episodes", Episode)
    artifacts.write_manifest(root / "iter1" / "rollouts", {}, ["episodes"])
    return problems, episodes


STAGE = ["verifier.train.max_steps=24", "verifier.train.epochs=0", "verifier.train.batch_tokens=0",
         "verifier.train.batch_size=8", "verifier.train.max_length=256", "verifier.train.precision=fp32",
         "verifier.train.warmup_steps=2", "verifier.train.lr=3e-3", "verifier.train.log_every=8",
         "tracking.wandb=disabled", "verifier.valid_fraction=0.25"]


@pytest.mark.parametrize("loss", ["bt", "bce"])
def test_stage_learns_saves_a_reloadable_verifier_and_skips_when_done(tiny_model_dir, tmp_path, loss):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _synthetic_run(tmp_path)
    config = _compose([f"run_dir={tmp_path}", f"init={tiny_model_dir}", f"verifier.loss={loss}", "verifier.head=scalar",
                       *STAGE])
    metrics = train_verifier(config)
    out = tmp_path / "iter1" / "verifier"
    manifest = artifacts.read_manifest(out)
    assert manifest["outputs"] == ["model"] and set(manifest["inputs"]) == {"input0", "problems", "init"}
    assert metrics["train"]["steps"] == 24 and metrics["sizes"]["valid_problems"] == 3
    assert {"auc", "accuracy", "ece", "bon_selection_accuracy"} <= set(manifest["metrics"]["valid"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < losses[0] - 0.1, losses
    assert rows[-1]["valid/auc"] == manifest["metrics"]["valid"]["auc"] and rows[-1]["step"] is None

    model = AutoModelForSequenceClassification.from_pretrained(out / "model")
    tok = AutoTokenizer.from_pretrained(out / "model")
    assert model.config.num_labels == 1 and model.config.pad_token_id == tok.pad_token_id
    before, _ = load_verifier(str(tiny_model_dir))
    start = dict(before.named_parameters())
    assert set(start) == dict(model.named_parameters()).keys()
    assert all(not torch.equal(p, start[n]) for n, p in model.named_parameters())
    pairs = [("Write f(x) that adds 3.\n\nTests:\nassert f(0) == 3", "def f(x):\n    return x + 3"), ("p", "x = 1")]
    assert score(model, tok, pairs) == pytest.approx(load_scorer(out / "model", ModelConfig())(pairs), abs=1e-6)
    # the scorer cuts inputs where training did: the length is saved with the verifier's tokenizer
    assert tok.model_max_length == config.verifier.train.max_length
    scorer = load_scorer(out / "model", ModelConfig())
    assert scorer.score.keywords["max_length"] == config.verifier.train.max_length
    assert train_verifier(config) == metrics  # complete: skipped


def test_stage_adds_labelled_mutants_of_training_problems_only(tiny_model_dir, tmp_path, monkeypatch):
    """verifier.mutants=2: at most 2 mutants of each correct distinct code of the 9 training problems (2 each),
    run against the tests and counted; the 3 validation problems are never mutated."""
    from mucode.stages import train_verifier as stage

    made, real = [], stage.mutant_examples

    def spy(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(stage, "mutant_examples", spy)
    problems, episodes = _synthetic_run(tmp_path)
    config = _compose([f"run_dir={tmp_path}", f"init={tiny_model_dir}", *STAGE, "verifier.train.max_steps=2",
                       "verifier.mutants=2", "sandbox.workers=1", "sandbox.timeout_s=2"])
    metrics = train_verifier(config)
    added, counts = made[0]
    _, valid = split_by_problem(examples_from_episodes(episodes, {p.id: p for p in problems}), 0.25, config.seed)
    assert counts["sources"] == 18 and counts["made"] == 36 and counts["run"] == len(added) > 0
    assert 0 < counts["failed"] < counts["run"] and counts["passed"] == counts["run"] - counts["failed"]
    assert not {ex.problem_id for ex in added} & {ex.problem_id for ex in valid}
    assert metrics["mutants"] == counts and metrics["sizes"]["valid_examples"] == len(valid)
    assert metrics["sizes"]["train_examples"] == 5 * 12 - len(valid) + len(added)  # 2 right, 3 wrong codes each
    for ex in added:  # labelled by the tests (f(0) == i, f(1) == i + 1): x + i + 0 * 1 is still right
        i, namespace = int(ex.problem_id[1:]), {}
        exec(ex.code, namespace)
        try:
            right = namespace["f"](0) == i and namespace["f"](1) == i + 1
        except ZeroDivisionError:  # x + i + 1 // 0
            right = False
        assert ex.label == right, ex


def test_stage_without_its_inputs_names_them(tiny_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="warmup/model: generator 0 not found; run pipelines/warm_start.py"):
        train_verifier(_compose([f"run_dir={tmp_path}"]))
    with pytest.raises(FileNotFoundError, match="iter1/rollouts: no rollouts here; run pipelines/collect_rollouts.py"):
        train_verifier(_compose([f"run_dir={tmp_path}", f"init={tiny_model_dir}"]))
    _synthetic_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="problems/nowhere: problem split not found"):
        train_verifier(_compose([f"run_dir={tmp_path}", f"init={tiny_model_dir}", "split=nowhere"]))
    write_records([Problem("q", "s", "f", [], [])], tmp_path / "problems" / "other", Problem)
    with pytest.raises(ValueError, match="split=other: 12 rollout problems are not in .* .first: p0."):
        train_verifier(_compose([f"run_dir={tmp_path}", f"init={tiny_model_dir}", "split=other"]))


@pytest.mark.parametrize("override, message", [
    ("verifier.loss=nope", "loss"), ("inputs=[]", "inputs is empty"),
    ("verifier.valid_fraction=1.0", "valid_fraction=1.0 must be"),
    ("verifier.pairs_per_problem=0", "pairs_per_problem=0 must be"), ("verifier.l2=-1", "l2=-1.0 must be"),
    ("verifier.mutants=-1", "mutants=-1 must be >= 0"),
])
def test_bad_values_fail_with_one_line(override, message):
    with pytest.raises(Exception, match=message):
        _compose([override])


# ---------------------------------------------------------------------------------------------
# Where the score is read: the same token (the final eos) for mucode, TRL and OpenRLHF


@pytest.fixture(scope="module")
def eos_pad_model_dir(tmp_path_factory):
    """A saved tiny Llama whose tokenizer, like Llama-3's and SmolLM2's, has no pad token of its own
    (pad == eos) and no spare special token: the verifier must add one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from mucode.models import CHAT_TEMPLATE, PAD, SPECIAL_TOKENS, TinyModelConfig, build_tiny_model

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    specials = [t for t in SPECIAL_TOKENS if t != PAD]
    corpus = [f"{p}\n```python\n{c}\n```" for p, c in SCORED] * 20
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|bos|>", eos_token="<|end|>",
                                  pad_token="<|end|>", chat_template=CHAT_TEMPLATE, padding_side="left")
    config = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, vocab_size=400,
                             max_positions=256)
    path = tmp_path_factory.mktemp("eos-pad") / "model"
    build_tiny_model(config, tok).save_pretrained(path)
    tok.save_pretrained(path)
    return path


SCORED = [("Write f(x) that adds 3.\n\nTests:\nassert f(0) == 3", "def f(x):\n    return x + 3"),
          ("Write g.", "x = 1"), ("Write a function fold(x) that will add 3 to x.", "def fold(x): pass")]


def test_verifier_pad_is_not_eos_so_the_score_is_read_at_the_final_eos(eos_pad_model_dir):
    from mucode.models import PAD, load_generator

    model, tok = load_verifier(str(eos_pad_model_dir))
    generator, gen_tok = load_generator(ModelConfig(), str(eos_pad_model_dir))
    vocab = generator.get_input_embeddings().num_embeddings
    assert gen_tok.pad_token_id == gen_tok.eos_token_id and len(gen_tok) == vocab  # the generator is unchanged
    assert tok.pad_token == PAD and model.config.pad_token_id == tok.pad_token_id == vocab
    assert model.get_input_embeddings().num_embeddings == len(tok) == vocab + 1
    ids = tok(verifier_text(tok, *SCORED[0]), return_tensors="pt", add_special_tokens=False)["input_ids"]
    assert ids[0, -1] == tok.eos_token_id
    with torch.no_grad():  # the head at every position; with pad == eos the model would read [-2]
        by_position = model.score(model.base_model(ids).last_hidden_state)[0, :, 0]
    assert score(model, tok, SCORED[:1])[0] == pytest.approx(by_position[-1].item(), abs=1e-5)
    assert abs(by_position[-1] - by_position[-2]) > 1e-3
    # training batches (left-padded with the same pad) read the same position as the Scorer
    examples = [VerifierExample(f"p{i}", p, c, i % 2 == 0) for i, (p, c) in enumerate(SCORED)]
    batch = collate_pointwise([(i, ex.label) for i, ex in zip(tokenize(tok, examples, 256), examples)],
                              tok.pad_token_id)
    with torch.no_grad():
        loss, _ = bce_step(model, batch)
    assert loss.item() == pytest.approx(bce_loss(torch.tensor(score(model, tok, SCORED)), batch["labels"]).item())


def test_verifier_pad_prefers_a_spare_pad_then_a_reserved_token(eos_pad_model_dir):
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    from mucode.models import set_verifier_pad

    tok = AutoTokenizer.from_pretrained(eos_pad_model_dir)
    tok.add_tokens([AddedToken("<|reserved_special_token_0|>", special=True)], special_tokens=True)
    set_verifier_pad(tok)
    assert tok.pad_token == "<|reserved_special_token_0|>"
    tok.pad_token = tok.eos_token
    tok.add_tokens([AddedToken("<|finetune_right_pad_id|>", special=True)], special_tokens=True)
    size = len(tok)
    set_verifier_pad(tok)
    assert tok.pad_token == "<|finetune_right_pad_id|>" and len(tok) == size


def test_saved_verifier_scores_alike_with_transformers_trl_openrlhf_and_the_scorer(eos_pad_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, tok = load_verifier(str(eos_pad_model_dir))
    model.save_pretrained(tmp_path / "v")
    tok.save_pretrained(tmp_path / "v")
    mucode_scores = load_scorer(tmp_path / "v", ModelConfig())(SCORED)

    rm = AutoModelForSequenceClassification.from_pretrained(tmp_path / "v").eval()
    rtok = AutoTokenizer.from_pretrained(tmp_path / "v")
    assert rm.config.pad_token_id == rtok.pad_token_id != rtok.eos_token_id
    chats = [[{"role": "user", "content": f"{p}\n\n{INSTRUCTION}"}, {"role": "assistant", "content": format_code(c)}]
             for p, c in SCORED]  # the generator's turn-1 message, as the model card tells users to write it
    texts = [rtok.apply_chat_template(chat, tokenize=False) for chat in chats]
    for side in ("left", "right"):
        rtok.padding_side = side
        enc = rtok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            trl = rm(**enc).logits[:, 0]  # TRL's RewardTrainer and reward pipelines
            hidden = rm.base_model(**enc).last_hidden_state  # OpenRLHF: the value at the last attended position
        mask = enc["attention_mask"]
        last = mask.size(1) - 1 - mask.fliplr().argmax(dim=1)
        assert (enc["input_ids"][torch.arange(len(texts)), last] == rtok.eos_token_id).all()
        openrlhf = rm.score(hidden)[torch.arange(len(texts)), last, 0]
        assert trl.tolist() == pytest.approx(mucode_scores, abs=1e-5), side
        assert openrlhf.tolist() == pytest.approx(mucode_scores, abs=1e-5), side


# ---------------------------------------------------------------------------------------------
# The LM heads (ratio, likelihood): scores by hand, learning, the stage, the saved folder


def _answer_logprob(model, tok, prompt, code):
    """(sum, count) of log p over the assistant turn's tokens, by hand from the logits of one unpadded row."""
    user = [{"role": "user", "content": f"{prompt}\n\n{INSTRUCTION}"}]
    head = tok(tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True),
               add_special_tokens=False)["input_ids"]
    ids = tok(verifier_text(tok, prompt, code), add_special_tokens=False)["input_ids"]
    assert ids[-1] == tok.eos_token_id and ids[:len(head)] == head
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    return sum(logp[t - 1, ids[t]].item() for t in range(len(head), len(ids))), len(ids) - len(head)


def _lm_verifier_dir(tiny_model_dir, folder, saved: SavedHead, noise: float = 0.0):
    """The tiny model (perturbed by `noise`) saved as an LM-head verifier with `saved` as its head file."""
    from mucode.models import load_generator

    model, tok = load_generator(ModelConfig(), str(tiny_model_dir))
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(1)
        for p in model.parameters():
            p.add_(noise * torch.randn_like(p))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    saved.write(folder)
    return model, tok


def test_lm_head_scores_match_log_probs_computed_by_hand(tiny_model_dir, tmp_path):
    from mucode.models import load_generator

    ref, tok = load_generator(ModelConfig(), str(tiny_model_dir))
    pairs = SCORED[:2]
    t = code_tokens(tok, *pairs[1], max_length=256)
    assert tok.decode(t.input_ids[t.prompt_len:]) == format_code(pairs[1][1]) + "<|end|>"  # the code and its eos
    by_hand = [_answer_logprob(ref, tok, p, c) for p, c in pairs]

    likelihood = tmp_path / "likelihood"
    _lm_verifier_dir(tiny_model_dir, likelihood, SavedHead(VerifierHead.likelihood))
    assert load_scorer(likelihood, ModelConfig())(pairs) == pytest.approx([s / n for s, n in by_hand], abs=1e-5)

    same = tmp_path / "ratio-at-init"  # theta == reference: every score is exactly 0
    _lm_verifier_dir(tiny_model_dir, same, SavedHead(VerifierHead.ratio, 0.5, reference_for(str(tiny_model_dir), same)))
    assert load_scorer(same, ModelConfig())(pairs) == [0.0, 0.0]

    moved = tmp_path / "ratio"
    saved = SavedHead(VerifierHead.ratio, 0.5, reference_for(str(tiny_model_dir), moved))
    theta, _ = _lm_verifier_dir(tiny_model_dir, moved, saved, noise=0.05)
    expected = [0.5 * (_answer_logprob(theta, tok, p, c)[0] - s) for (p, c), (s, _) in zip(pairs, by_hand)]
    scorer = load_scorer(moved, ModelConfig())
    assert scorer(pairs) == pytest.approx(expected, abs=1e-5) and abs(expected[0]) > 1e-3
    assert scorer(pairs[:1]) == pytest.approx(expected[:1], abs=1e-5)
    assert len(scorer.score.args[3].cache) == 2  # the reference's sums: once per (prompt, code)


def _synthetic_examples():
    problems, episodes = _synthetic_problems()
    return examples_from_episodes(episodes, {p.id: p for p in problems})


# loglik is not here: on this synthetic task the summed log-likelihood prefers the shorter wrong codes
# (pair accuracy 0.0 at initialisation) and 10 steps do not undo that length bias.
@pytest.mark.parametrize("head", ["ratio", "likelihood"])
def test_bt_steps_with_an_lm_head_raise_within_problem_pair_accuracy(tiny_model_dir, head):
    import copy
    import functools

    from mucode import lm_verifier
    from mucode.models import load_generator

    train, valid = split_by_problem(_synthetic_examples(), 0.25, seed=0)
    recipe = VerifierRecipe(loss="bt", head=head, sft_weight=0.1)
    model, tok = load_generator(ModelConfig(), str(tiny_model_dir))
    frozen = ReferenceSums(copy.deepcopy(model), tok, 64, 256) if head == "ratio" else None
    scorer = Scorer(functools.partial(lm_verifier.score, model, tok, SavedHead(recipe.head, recipe.beta), frozen))
    rows = code_rows(model, tok, train, recipe.head, max_length=256)
    items, _ = training_items(train, rows, recipe, seed=0, lengths=[len(r.tokens.input_ids) for r in rows])
    before = validation_metrics(scorer, valid)["pair_accuracy"]
    optimizer, rng = torch.optim.AdamW(model.parameters(), lr=3e-3), random.Random(0)
    for _ in range(10):
        loss, metrics = lm_step(model, lm_verifier.collate_pairs(rng.sample(items, 8), tok.pad_token_id), recipe)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert set(metrics) == {"pair_accuracy", "sft_nll"}
    after = validation_metrics(scorer, valid)["pair_accuracy"]
    assert after >= 0.9 and after > before, (before, after)


def test_lm_step_reproduces_the_losses_from_the_scores(tiny_model_dir):
    from mucode import lm_verifier
    from mucode.models import load_generator

    model, tok = load_generator(ModelConfig(), str(tiny_model_dir))
    examples = [VerifierExample(f"p{i}", p, c, i % 2 == 0) for i, (p, c) in enumerate(SCORED)]
    rows = [CodeRow(code_tokens(tok, ex.prompt, ex.code, 256), reference=-float(i)) for i, ex in enumerate(examples)]
    sums = torch.tensor([_answer_logprob(model, tok, ex.prompt, ex.code)[0] for ex in examples])
    ratio = VerifierRecipe(loss="bce", head="ratio", beta=0.5, sft_weight=2.0)
    batch = lm_verifier.collate_pointwise([(r, ex.label) for r, ex in zip(rows, examples)], tok.pad_token_id)
    with torch.no_grad():
        loss, metrics = lm_step(model, batch, ratio)
    scores = 0.5 * (sums - torch.tensor([0.0, -1.0, -2.0]))
    counts = torch.tensor([_answer_logprob(model, tok, ex.prompt, ex.code)[1] for ex in examples])
    sft = -(sums / counts)[[0, 2]].sum() / 3  # the correct codes' mean token NLL, per item of the batch
    assert loss.item() == pytest.approx((bce_loss(scores, torch.tensor([1, 0, 1])) + 2.0 * sft).item(), abs=1e-5)
    assert metrics["sft_nll"].item() == pytest.approx(sft.item(), abs=1e-5)
    pairs = lm_verifier.collate_pairs([(rows[0], rows[1])], tok.pad_token_id)
    with torch.no_grad():
        loss, _ = lm_step(model, pairs, VerifierRecipe(loss="bt", head="likelihood", l2=0.0))
    means = sums[:2] / counts[:2]
    assert loss.item() == pytest.approx(bt_loss(means[:1], means[1:], l2=0.0).item(), abs=1e-5)
    with torch.no_grad():  # loglik: l2 holds beta * sum near its start, beta * the starting weights' sum
        loss, _ = lm_step(model, pairs, VerifierRecipe(loss="bt", head="loglik", beta=0.5, l2=0.1))
    r, start = 0.5 * sums[:2], 0.5 * torch.tensor([0.0, -1.0])
    expected = -torch.nn.functional.logsigmoid(r[0] - r[1]) + 0.1 * (r - start).pow(2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_lm_heads_score_the_code_in_the_generators_own_turn_one_prompt(tiny_model_dir):
    from mucode.models import load_generator
    from mucode.prompts import first_turn, problem_text, render

    _, tok = load_generator(ModelConfig(), str(tiny_model_dir))
    problem = Problem("p1", "Write f(x) returning x.", "f", ["assert f(1) == 1"], [], "def f(x):\n    return x")
    t = code_tokens(tok, problem_text(problem), problem.reference, max_length=256)
    prompt = tok(render(tok, first_turn(problem)), add_special_tokens=False)["input_ids"]
    assert t.input_ids[:t.prompt_len] == prompt  # what the generator wrote its turn-1 answer after
    assert verifier_text(tok, problem_text(problem), problem.reference).startswith(render(tok, first_turn(problem)))


def test_stage_trains_an_lm_verifier_that_load_scorer_reads(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _synthetic_run(tmp_path)
    steps = ["verifier.train.max_steps=6", "verifier.head=ratio", "verifier.sft_weight=0.1", "verifier.beta=0.2"]
    config = _compose([f"run_dir={tmp_path}", f"init={tiny_model_dir}", *STAGE, *steps])
    metrics = train_verifier(config)
    folder = tmp_path / "iter1" / "verifier" / "model"
    saved = SavedHead.read(folder)
    assert (saved.head, saved.beta) == (VerifierHead.ratio, 0.2)
    assert (folder / saved.reference).resolve() == tiny_model_dir.resolve()  # relative: the run folder can move
    assert metrics["train"]["steps"] == 6 and metrics["valid"]["pair_accuracy"] is not None
    model = AutoModelForCausalLM.from_pretrained(folder)
    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert not torch.equal(model.lm_head.weight, before.lm_head.weight)
    tok = AutoTokenizer.from_pretrained(folder)
    by_hand = [0.2 * (_answer_logprob(model, tok, p, c)[0] - _answer_logprob(before, tok, p, c)[0]) for p, c in SCORED]
    assert load_scorer(folder, ModelConfig())(SCORED) == pytest.approx(by_hand, abs=1e-4)
    assert train_verifier(config) == metrics  # complete: skipped


@pytest.mark.parametrize("override, message", [
    ("verifier.head=nope", "head"), ("verifier.beta=0", "beta=0.0 must be > 0"),
    ("verifier.head=scalar verifier.sft_weight=0.5", "sft_weight needs an LM head"),
])
def test_bad_head_values_fail_with_one_line(override, message):
    with pytest.raises(Exception, match=message):
        _compose(override.split())
