import math
import random

import pytest

from mucode.records import Problem
from mucode.search import Candidate, SearchConfig, SearchState, Selector, select, summarize


def cands(public, scores, codes=None, correct=None, outputs=None):
    """One turn's candidates; distinct codes c0, c1, ... unless `codes` names them."""
    n = len(public)
    codes = codes or [f"c{i}" for i in range(n)]
    correct = correct or [False] * n
    outputs = outputs or [()] * n
    return [Candidate(codes[i], public[i], correct[i], "", scores[i], outputs[i]) for i in range(n)]


@pytest.mark.parametrize("selector, public, scores, expected", [
    (Selector.lv, [False, True, False], [0.1, 0.5, 0.9], 2),
    (Selector.pt_lv, [False, True, False], [0.1, 0.5, 0.9], 1),
    (Selector.pt_lv, [True, True, False], [0.1, 0.5, 0.9], 1),
    (Selector.pt_lv, [False, False, False], [0.1, 0.5, 0.9], 2),
    (Selector.lv, [False, False], [0.3, 0.3], 0),              # ties: first
    (Selector.pt, [False, True, False], [0.0, 0.0, 0.0], 1),   # the only public pass
    (Selector.pt_cluster, [False, True, False], [0.0, 0.0, 0.9], 1),
])
@pytest.mark.parametrize("aggregate", [True, False])
def test_selectors_hand_values_on_distinct_codes(selector, public, scores, expected, aggregate):
    """Without duplicates aggregation changes nothing: the paper's argmax."""
    assert select(selector, cands(public, scores), random.Random(0), aggregate) == expected


def test_pt_is_uniform_among_passing_and_random_among_all():
    rng = random.Random(0)
    four = cands([True, False, True, False], [0] * 4)
    picks = [select(Selector.pt, four, rng) for _ in range(2000)]
    assert set(picks) == {0, 2} and abs(picks.count(0) / 2000 - 0.5) < 0.05
    picks = [select(Selector.random, four, rng) for _ in range(4000)]
    assert all(abs(picks.count(i) / 4000 - 0.25) < 0.04 for i in range(4))
    assert select(Selector.pt, cands([False] * 3, [0] * 3), rng) in {0, 1, 2}


def test_duplicates_change_the_pick():
    # A once at 1.0, B twice at 0.5: log sum exp = 0.5 + log 2 = 1.193 > 1.0, so B (its first copy)
    three = cands([False] * 3, [1.0, 0.5, 0.5], codes=["A", "B", "B"])
    assert select(Selector.lv, three, None) == 1 and select(Selector.lv, three, None, aggregate=False) == 0
    # three copies of B at 0.5 lose to A at 1.2 only when fewer than exp(0.7) = 2.01 copies
    assert select(Selector.lv, cands([False] * 3, [1.2, 0.5, 0.5], codes=["A", "B", "B"]), None) == 0
    # unequal scores of copies (the rule sums exp(score)): log(e^1 + e^-1) = 1.127 > 1.1
    assert select(Selector.lv, cands([False] * 3, [1.0, 1.1, -1.0], codes=["B", "A", "B"]), None) == 0
    # pt+lv: public pass first, however many copies the failing code has
    four = cands([True, False, False, False], [0.0, 1.0, 1.0, 1.0], codes=["A", "B", "B", "B"])
    assert select(Selector.pt_lv, four, None) == 0
    two_passing = cands([True, True, True, False], [0.4, 0.0, 0.0, 9.0], codes=["A", "B", "B", "C"])
    assert select(Selector.pt_lv, two_passing, None) == 1 and select(Selector.pt_lv, two_passing, None, False) == 0


def test_constant_verifier_is_a_majority_vote_ties_by_multiplicity_then_first():
    codes = ["B", "A", "A", "C", "C"]
    for score in (0.0, -3.0, 7.5):  # any constant: a shift of all scores never changes the pick
        five = cands([False] * 5, [score] * 5, codes=codes)
        assert select(Selector.lv, five, None) == 1  # A and C have two copies each: A comes first
        assert select(Selector.lv, five, None, aggregate=False) == 0  # the argmax: the first candidate


def _expected_accuracy(selector, group, scores_of, draws, aggregate, seed=0):
    """Mean correctness of the pick over `draws` verifiers, each scoring every distinct code with its own
    noise (`scores_of(rng)`: code -> score), as a deterministic verifier at chance does."""
    rng, hits = random.Random(seed), 0
    for _ in range(draws):
        score = scores_of(rng)
        pool = [Candidate(c.code, c.public_pass, c.correct, "", score[c.code]) for c in group]
        hits += pool[select(selector, pool, rng, aggregate)].correct
    return hits / draws


def test_a_verifier_at_chance_ties_with_random_under_aggregation_and_loses_under_argmax():
    # A (right) sampled 3 times, B (wrong) once: random's expected accuracy is 3/4
    group = cands([False] * 4, [0.0] * 4, codes=["A", "A", "A", "B"], correct=[True, True, True, False])
    random_acc = sum(c.correct for c in group) / len(group)
    constant = lambda rng: {"A": 0.0, "B": 0.0}  # noqa: E731
    assert random_acc == 0.75
    assert _expected_accuracy(Selector.random, group, constant, 4000, True) == pytest.approx(0.75, abs=0.03)
    gumbel = lambda rng: {c: -math.log(-math.log(rng.random())) for c in "AB"}  # noqa: E731
    # score + log count with Gumbel noise picks a code with probability count/N (Gumbel-max): random's 3/4
    assert _expected_accuracy(Selector.lv, group, gumbel, 20000, True) == pytest.approx(random_acc, abs=0.015)
    # the argmax over candidates picks each distinct code half the time: 1/2 < 3/4
    assert _expected_accuracy(Selector.lv, group, gumbel, 20000, False) == pytest.approx(0.5, abs=0.015)
    # a constant verifier: the majority (A), deterministic; the argmax takes the first candidate
    first_wrong = cands([False] * 4, [0.0] * 4, codes=["B", "A", "A", "A"], correct=[False, True, True, True])
    assert first_wrong[select(Selector.lv, first_wrong, None)].correct
    assert not first_wrong[select(Selector.lv, first_wrong, None, aggregate=False)].correct


def test_a_verifier_that_leads_by_more_than_log_n_is_unaffected():
    group = cands([True] * 4, [2.0, -0.5, -0.5, -0.5], codes=["A", "B", "B", "B"])  # lead 2.5 > log 3
    for selector in (Selector.lv, Selector.pt_lv):
        assert select(selector, group, None) == select(selector, group, None, aggregate=False) == 0


def test_pt_cluster_picks_the_largest_output_cluster_among_public_passers():
    x, y, z = ("failed", "", "f(4) returned 5"), ("failed", "", "f(4) returned 6"), ("failed", "", "=")
    # passers: c0 alone, c1 c2 c3 agree; the failing c4 c5 c6 c7 agree with each other but do not pass
    public = [True, True, True, True, False, False, False, False]
    outs = [x, y, y, y, z, z, z, z]
    assert select(Selector.pt_cluster, cands(public, [0.0] * 8, outputs=outs), None) == 1
    # inside the cluster, identical codes aggregate: c3 has two copies
    group = cands(public, [0.0] * 8, codes=["a", "b", "c", "c", "d", "d", "d", "d"], outputs=outs)
    assert select(Selector.pt_cluster, group, None) == 2
    # the verifier weighs the clusters: log e^3 = 3 > log 3e^0 = 1.1
    assert select(Selector.pt_cluster, cands(public, [3.0] + [0.0] * 7, outputs=outs), None) == 0
    # no passer: the largest cluster of all; equal sizes: the first
    assert select(Selector.pt_cluster, cands([False] * 4, [0.0] * 4, outputs=[x, y, y, x]), None) == 0
    assert select(Selector.pt_cluster, cands([False] * 3, [0.0] * 3, outputs=[x, y, y]), None) == 1
    # no outputs (not probed): one cluster, so pt+lv
    assert select(Selector.pt_cluster, cands([False, True, True], [0.0, 0.1, 0.5]), None) == 2


@pytest.mark.parametrize("selector", list(Selector))
def test_selection_never_reads_correctness(selector):
    group = cands([True, False, True, True], [0.1, 0.9, 0.3, 0.3], codes=["a", "b", "c", "c"],
                  outputs=[("1",), ("2",), ("3",), ("3",)])
    flipped = [Candidate(c.code, c.public_pass, not c.correct, c.feedback, c.score, c.outputs) for c in group]
    assert [select(selector, group, random.Random(s)) for s in range(20)] == \
        [select(selector, flipped, random.Random(s)) for s in range(20)]


def test_search_config_rejects_negative_probes():
    assert SearchConfig().aggregate and SearchConfig().probes == 8
    with pytest.raises(ValueError, match="search.probes=-1"):
        SearchConfig(probes=-1)


def _search(picks):
    s = SearchState(Problem("p", "", "f", [], []), 0, Selector.pt_lv, [])
    s.picks = [Candidate("c", pub, cor, "", 0.0) for pub, cor in picks]
    return s


def test_summarize_accuracy_by_turn():
    searches = [
        _search([(True, True)]),                                  # correct from turn 1
        _search([(False, False), (True, True)]),                  # correct from turn 2
        _search([(False, False), (False, False), (True, False)]), # stops wrong at turn 3
        _search([(True, False)]),                                 # stops wrong at turn 1
    ]
    out = summarize(searches, [Selector.pt_lv], turns=3)["pt+lv"]
    assert out["by_turn"] == [0.25, 0.5, 0.5] and out["accuracy"] == 0.5
