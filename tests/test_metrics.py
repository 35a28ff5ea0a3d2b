import math

import pytest

from mucode.metrics import expected_calibration_error, pass_at_k, verifier_metrics


@pytest.mark.parametrize("n, c, k, expected", [
    (5, 2, 1, 0.4),            # = c / n
    (5, 2, 2, 0.7),            # 1 - C(3,2)/C(5,2) = 1 - 3/10
    (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
    (4, 3, 2, 1.0),            # n - c < k
    (6, 0, 3, 0.0),
])
def test_pass_at_k_hand_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_is_stable_for_large_n():
    assert pass_at_k(2000, 1, 1) == pytest.approx(1 / 2000)
    assert 0 < pass_at_k(100_000, 3, 10) < 1


def test_pass_at_k_rejects_bad_counts():
    with pytest.raises(ValueError, match="pass_at_k"):
        pass_at_k(3, 4, 1)


def test_ece_hand_value():
    # bin 0.1-0.2: probs .1,.1 labels 0,1 -> |0.5 - 0.1| * 2/4; bin 0.9: probs .9,.9 labels 1,1 -> |1 - .9| * 2/4
    assert expected_calibration_error([0.1, 0.1, 0.9, 0.9], [False, True, True, True]) == pytest.approx(0.25)


def test_verifier_metrics_hand_values():
    scores = [2.0, -1.0, 0.5, 1.0, -3.0, 0.0]
    labels = [True, False, False, True, False, True]
    groups = ["a", "a", "b", "b", "c", "c"]
    m = verifier_metrics(scores, labels, groups)
    # pairs (pos, neg): 3 pos x 3 neg = 9; wrong orders: pos 0.0 < neg 0.5 -> 1 of 9
    assert m["auc"] == pytest.approx(8 / 9)
    assert m["accuracy"] == pytest.approx(4 / 6)  # 2>0 T ok, -1 F ok, .5 F wrong, 1 T ok, -3 F ok, 0 T wrong
    # a: top 2.0 correct; b: top 1.0 correct; c: top 0.0 correct -> 3/3; random = 1/2 each
    assert m["selection_accuracy"] == 1.0 and m["selection_random"] == 0.5
    # same-problem pairs: a (2.0 > -1.0), b (1.0 > 0.5), c (0.0 > -3.0): all 3 in order
    assert m["pair_accuracy"] == 1.0
    assert m["positives"] == 3 and 0 <= m["ece"] <= 1 and 0 <= m["brier"] <= 1


def test_pair_accuracy_is_within_problems_only():
    # a is easy (high scores), b is hard, c has no correct code: AUC rewards knowing that, pair accuracy does not
    scores = [5.0, 4.0, 6.0, -2.0, -1.0, -5.0, -5.0]
    labels = [True, True, False, True, False, False, False]
    m = verifier_metrics(scores, labels, ["a", "a", "a", "b", "b", "c", "c"])
    # AUC: 5 and 4 beat -1, -5, -5 (3 each), -2 beats -5, -5 (2) -> 8 of 12; same problem: 5<6, 4<6, -2<-1 -> 0 of 3
    assert m["auc"] == pytest.approx(8 / 12) and m["pair_accuracy"] == 0.0
    assert verifier_metrics([1.0, 1.0, 3.0], [True, False, True], ["a", "a", "b"])["pair_accuracy"] == 0.5  # tie


def test_verifier_metrics_single_class_auc_is_nan():
    assert math.isnan(verifier_metrics([1.0, 2.0], [True, True], ["a", "b"])["auc"])
