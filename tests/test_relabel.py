import pytest

from mucode.relabel import RelabelConfig, RelabelMode, expert_target, relabel, relabel_problem
from mucode.records import Episode, Turn


def _turn(n: int, code: str, public: bool, private: bool) -> Turn:
    state = [{"role": "user", "content": f"s{n}"}] * (2 * n - 1)
    return Turn(state, code, code, "" if public else "fb", public, private)


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


# The stage: run layout in, SFTExample dataset + manifest out.

from pathlib import Path  # noqa: E402

from mucode import artifacts  # noqa: E402
from mucode.records import Problem, SFTExample, read_records, write_records  # noqa: E402
from mucode.stages.relabel import RelabelStageConfig, run  # noqa: E402
from mucode.verifier import Scorer  # noqa: E402


def relabel_stage(config, scorer=None) -> Path:
    """Run the stage (`scorer`: a function of (problem text, code) pairs); its SFTExample folder."""
    run(config, scorer=Scorer(scorer) if scorer else None)
    return Path(config.run_dir) / "iter1" / "relabel" / "examples"


def _layout_with_rollouts(root: Path) -> artifacts.RunLayout:
    layout = artifacts.RunLayout(root)
    write_records([Problem("p", "Do it.", "f", ["assert f(1) == 1"], ["assert f(2) == 2"])],
                  layout.problems("train"), Problem)
    artifacts.write_manifest(layout.problems("train").parent, {}, ["train"])
    rollouts = layout.rollouts(1)
    write_records(_episodes(), rollouts / "episodes", Episode)
    artifacts.write_manifest(rollouts, {}, ["episodes"])
    return layout


def test_stage_scores_final_codes_and_writes_examples(tmp_path):
    layout = _layout_with_rollouts(tmp_path)
    seen = []

    def scorer(pairs):
        seen.extend(pairs)
        return [SCORES.get(("p", code), 0.0) for _, code in pairs]

    config = RelabelStageConfig(run_dir=str(tmp_path), relabel=RelabelConfig(relabel_failed=2))
    out = relabel_stage(config, scorer=scorer)
    assert sorted(code for _, code in seen) == ["A", "B", "w2", "z1", "z3"]  # each final code once
    assert all(text.startswith("Do it.") and "f(2)" not in text for text, _ in seen)  # no private test
    assert _pairs(read_records(out, SFTExample)) == _pairs(relabel(_episodes(), SCORES, config.relabel))
    manifest = artifacts.read_manifest(layout.relabel(1))
    assert manifest["metrics"]["examples"] == len(read_records(out, SFTExample)) == 5  # after dedup
    assert run(config, scorer=Scorer(lambda pairs: 1 / 0)) == manifest["metrics"]  # complete: skipped


def test_stage_without_inputs_names_the_missing_artifact(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"iter1/rollouts: rollouts of iteration 1 not complete"):
        relabel_stage(RelabelStageConfig(run_dir=str(tmp_path)))
    _layout_with_rollouts(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"iter1/verifier/model: verifier not found"):
        relabel_stage(RelabelStageConfig(run_dir=str(tmp_path)))
    assert not (tmp_path / "iter1" / "relabel").exists()
    out = relabel_stage(RelabelStageConfig(run_dir=str(tmp_path), relabel=RelabelConfig(mode=RelabelMode.rft)))
    assert len(read_records(out, SFTExample)) == 3  # rft needs no verifier


def test_entry_point_before_any_rollouts_or_verifier_fails_with_one_line(tmp_path):
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "pipelines" / "relabel.py"
    proc = subprocess.run([sys.executable, str(script), f"run_dir={tmp_path}"], capture_output=True, text=True,
                          timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "iter1/rollouts" in lines[0], proc.stderr
    _layout_with_rollouts(tmp_path)
    proc = subprocess.run([sys.executable, str(script), f"run_dir={tmp_path}"], capture_output=True, text=True,
                          timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "iter1/verifier/model: verifier not found" in lines[0]
