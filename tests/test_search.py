import random

import pytest

from mucode.search import Candidate, SearchState, Selector, select, summarize
from mucode.records import Problem


@pytest.mark.parametrize("selector, public, scores, expected", [
    (Selector.lv, [False, True, False], [0.1, 0.5, 0.9], 2),
    (Selector.pt_lv, [False, True, False], [0.1, 0.5, 0.9], 1),
    (Selector.pt_lv, [True, True, False], [0.1, 0.5, 0.9], 1),
    (Selector.pt_lv, [False, False, False], [0.1, 0.5, 0.9], 2),
    (Selector.lv, [False, False], [0.3, 0.3], 0),              # ties: first
    (Selector.pt, [False, True, False], [0.0, 0.0, 0.0], 1),   # the only public pass
])
def test_selectors_hand_values(selector, public, scores, expected):
    assert select(selector, public, scores, random.Random(0)) == expected


def test_pt_is_uniform_among_passing_and_random_among_all():
    rng = random.Random(0)
    picks = [select(Selector.pt, [True, False, True, False], [0] * 4, rng) for _ in range(2000)]
    assert set(picks) == {0, 2} and abs(picks.count(0) / 2000 - 0.5) < 0.05
    picks = [select(Selector.random, [True, False, True, False], [0] * 4, rng) for _ in range(4000)]
    assert all(abs(picks.count(i) / 4000 - 0.25) < 0.04 for i in range(4))
    assert select(Selector.pt, [False] * 3, [0] * 3, rng) in {0, 1, 2}


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
