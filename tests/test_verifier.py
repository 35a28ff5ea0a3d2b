import math
import random

import pytest
import torch

from mucode.records import Episode, Problem, Turn, VerifierExample
from mucode.verifier import (
    bce_loss, bt_loss, examples_from_episodes, sample_pairs, score, split_by_problem, verifier_text,
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
    eps = [Episode("p", 0, 0, turns), Episode("p", 1, 1, turns[1:]), Episode("p", 2, 1, [Turn([], "", "pub", "", True, False)])]
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
