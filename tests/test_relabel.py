import pytest

from mucode.relabel import RelabelConfig, RelabelMode, expert_target, relabel, relabel_problem
from mucode.records import Episode, Turn


def _turn(n: int, code: str, public: bool, private: bool) -> Turn:
    return Turn([{"role": "user", "content": f"s{n}"}] * (2 * n - 1), code, code, "" if public else "fb", public, private)


def _episodes() -> list[Episode]:
    """Problem p, K=5. e0: fails then fixes with A; e1: fails 3 turns; e2: public pass, private fail;
    e3: fails 3 turns; e4: correct at turn 1 with B."""
    return [
        Episode("p", 0, 0, [_turn(1, "x0", False, True), _turn(2, "A", True, True)]),
        Episode("p", 1, 0, [_turn(1, "x1", False, False), _turn(2, "y1", False, False), _turn(3, "z1", False, True)]),
        Episode("p", 2, 0, [_turn(1, "w2", True, False)]),
        Episode("p", 3, 0, [_turn(1, "x3", False, False), _turn(2, "y3", False, False), _turn(3, "z3", False, False)]),
        Episode("p", 4, 0, [_turn(1, "B", True, True)]),
    ]


SCORES = {("p", "A"): 0.2, ("p", "B"): 0.9, ("p", "z1"): 0.5, ("p", "w2"): 3.0, ("p", "z3"): -1.0}


def _pairs(examples):
    return [(len(ex.messages), ex.target) for ex in examples]


def test_expert_target_hand_values():
    eps = _episodes()
    assert expert_target(eps, SCORES, 1.0, 0.1) == "B"      # 1 + .09 beats 1 + .02; w2 is only .3
    assert expert_target(eps, SCORES, 1.0, 0.0) == "A"      # oracle only: first correct in order
    assert expert_target(eps, SCORES, 0.0, 0.1) == "w2"     # learned only: the verifier's favourite
    assert expert_target(eps[1:2] + eps[3:4], SCORES, 1.0, 0.1) is None  # nothing correct


def test_both_mode_relabels_top_failed_with_y_star():
    ex = relabel_problem(_episodes(), SCORES, RelabelConfig(relabel_failed=2))
    # successes keep their own code: e0 (2 states -> A), e4 (1 state -> B);
    # failed by verifier score: w2 (3.0), z1 (0.5), z3 (-1.0) -> top 2: e2 (1 state), e1 (3 states) -> B
    assert _pairs(ex) == [(1, "A"), (3, "A"), (1, "B"), (1, "B"), (1, "B"), (3, "B"), (5, "B")]
    assert all(e.iteration == 1 for e in ex)


def test_oracle_mode_and_default_count():
    ex = relabel_problem(_episodes(), SCORES, RelabelConfig(mode=RelabelMode.oracle))
    # y* = A; all 3 failed episodes relabeled (order by verifier score: e2, e1, e3)
    assert _pairs(ex)[3:] == [(1, "A"), (1, "A"), (3, "A"), (5, "A"), (1, "A"), (3, "A"), (5, "A")]


def test_learned_mode_can_pick_a_wrong_target():
    ex = relabel_problem(_episodes(), SCORES, RelabelConfig(mode=RelabelMode.learned, relabel_failed=1))
    assert _pairs(ex)[-1] == (1, "w2")


def test_rft_keeps_successes_only_and_star_first_turn_only():
    assert _pairs(relabel_problem(_episodes(), SCORES, RelabelConfig(mode=RelabelMode.rft))) == [
        (1, "A"), (3, "A"), (1, "B")]
    assert _pairs(relabel_problem(_episodes(), SCORES, RelabelConfig(mode=RelabelMode.star))) == [(1, "B")]


def test_no_correct_candidate_gives_no_relabels_with_oracle():
    eps = [_episodes()[1], _episodes()[3]]
    assert relabel_problem(eps, SCORES, RelabelConfig()) == []


def test_relabel_dedups_and_orders_by_problem():
    eps = _episodes() + [Episode("a", 0, 0, [_turn(1, "C", True, True)])] * 2
    ex = relabel(eps, SCORES, RelabelConfig(mode=RelabelMode.rft))
    assert [e.problem_id for e in ex] == ["a", "p", "p", "p"]


def test_config_validation():
    with pytest.raises(ValueError, match="relabel.relabel_failed"):
        RelabelConfig(relabel_failed=-1)
    with pytest.raises(ValueError, match="beta_learned > 0"):
        RelabelConfig(mode=RelabelMode.learned, beta_learned=0)
