import json

import pytest

import mucode.stages.evaluate as ev
import mucode.stages.solve as sv
from mucode.generation import SamplingConfig
from mucode.probes import probe_tests
from mucode.records import Problem, write_records
from mucode.sandbox import Sandbox, SandboxConfig
from mucode.search import Candidate, EvalRecipe, SearchConfig, SearchState, Selector, pass_at_k_by_turn
from mucode.stages.evaluate import EvaluateConfig
from mucode.stages.evaluate import run as evaluate
from mucode.stages.solve import SolveConfig
from mucode.stages.solve import run as solve
from mucode.tasks import EmbeddedConfig, TaskConfig, load_problems

SEARCH = SearchConfig(searches=2, candidates=2, turns=2,
                      sampling=SamplingConfig(temperature=1.0, max_new_tokens=8, batch_size=16))
SANDBOX = SandboxConfig(timeout_s=2.0, workers=2)


@pytest.fixture(scope="module")
def problems():
    return load_problems(TaskConfig(embedded=EmbeddedConfig(size=400)), "test")[:3]


@pytest.fixture
def recorded(monkeypatch):
    """Every prompt the generator sees and every job the sandbox runs."""
    seen = {"prompts": [], "jobs": []}
    open_backend = ev.open_backend

    def recording_backend(*args):
        backend = open_backend(*args)
        generate = backend.generate
        backend.generate = lambda prompts, *a, **k: seen["prompts"].extend(prompts) or generate(prompts, *a, **k)
        return backend

    run_batch = Sandbox.run_batch
    monkeypatch.setattr(ev, "open_backend", recording_backend)
    monkeypatch.setattr(sv, "open_backend", recording_backend)
    monkeypatch.setattr(Sandbox, "run_batch",
                        lambda self, jobs, **k: seen["jobs"].extend(jobs) or run_batch(self, jobs, **k))
    return seen


def _check_no_private_test_in_prompts(prompts, problems):
    assert prompts
    for p in problems:
        for test in p.private_tests:
            assert test not in p.public_tests
            assert not any(test in prompt for prompt in prompts), test


def test_evaluate_writes_the_manifest_shape_and_skips_when_complete(tmp_path, tiny_model_dir, problems, recorded):
    write_records(problems, tmp_path / "problems" / "test", Problem)
    config = EvaluateConfig(run_dir=str(tmp_path), name="iter1", generator=str(tiny_model_dir),
                            verifier=str(tiny_model_dir), eval=EvalRecipe(search=SEARCH, candidates_sweep=[1]),
                            sandbox=SANDBOX)
    metrics = evaluate(config)["embedded"]
    out = tmp_path / "eval" / "iter1"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["metrics"] == json.loads(json.dumps(metrics))
    for block in [metrics["greedy"], *(metrics["bon"][s] for s in ("random", "pt", "lv", "pt+lv", "pt+cluster"))]:
        assert len(block["by_turn"]) == 2 and block["accuracy"] == block["by_turn"][-1]
        assert all(0.0 <= v <= 1.0 for v in block["by_turn"])
    assert set(metrics["bon"]) == {"random", "pt", "lv", "pt+lv", "pt+cluster"}
    assert metrics["aggregate"] is True and metrics["probes"] == SEARCH.probes
    assert metrics["pass_at_k"]["k"] == [1, 2] and len(metrics["pass_at_k"]["by_turn"]) == 2
    assert metrics["bon_by_n"]["n"] == [1] and metrics["tokens_per_s"] > 0 and metrics["verifier"]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [p.id for p in problems]
    _check_no_private_test_in_prompts(recorded["prompts"], problems)
    _check_selection_runs_no_private_test(recorded["jobs"], problems)
    # turn 1: greedy 3 problems x 1; BoN 3 x 2 searches x 2 candidates, shared by the five selectors; sweep N=1: 3 x 2
    assert sum(prompt.count("<|user|>") == 1 for prompt in recorded["prompts"]) == 3 + 3 * 2 * 2 + 3 * 2
    generated = len(recorded["prompts"])
    assert evaluate(config) == {"embedded": manifest["metrics"]} and len(recorded["prompts"]) == generated  # skipped


def _check_selection_runs_no_private_test(jobs, problems):
    """Each job is a code's scoring run (Job.for_problem: public tests first, then private) or its
    pt+cluster probe run, made from public tests only; each code is probed at most once."""
    scoring = {(tuple(p.tests), len(p.public_tests)) for p in problems}
    probes = {tuple(probe_tests(p, SEARCH.probes)) for p in problems}
    private = {t for p in problems for t in p.private_tests}
    probed = [job for job in jobs if tuple(job.tests) in probes]
    assert probed and all(job.n_public is None and not set(job.tests) & private for job in probed)
    assert all((tuple(job.tests), job.n_public) in scoring for job in jobs if job not in probed)
    assert len({(job.program, tuple(job.tests)) for job in probed}) == len(probed)


def test_evaluate_names_missing_inputs(tmp_path, tiny_model_dir):
    with pytest.raises(FileNotFoundError, match="problem split 'test' not found"):
        evaluate(EvaluateConfig(run_dir=str(tmp_path), generator=str(tiny_model_dir), verifier=None))
    with pytest.raises(ValueError, match="generator=PATH"):
        EvaluateConfig(name="mine")
    write_records([Problem("p", "s", "f", [], [])], tmp_path / "problems" / "test", Problem)
    with pytest.raises(FileNotFoundError, match="no complete verifier in this run .verifier=final."):
        evaluate(EvaluateConfig(run_dir=str(tmp_path), generator=str(tiny_model_dir)))
    assert not (tmp_path / "eval").exists()


def test_evaluate_and_solve_default_to_the_runs_final_verifier(tmp_path):
    """verifier=final: final_verifier/ when complete, else the last complete iteration's verifier."""
    from mucode import artifacts

    layout = artifacts.RunLayout(tmp_path)
    for stage in (layout.verifier(1), layout.verifier(2)):
        layout.model(stage).mkdir(parents=True)
        artifacts.write_manifest(stage, {}, ["model"])
    layout.model(layout.verifier(3)).mkdir(parents=True)  # not complete
    assert ev.verifier_path(layout, "final") == str(layout.model(layout.verifier(2)))
    layout.model(layout.final_verifier).mkdir(parents=True)
    artifacts.write_manifest(layout.final_verifier, {}, ["model"])
    assert ev.verifier_path(layout, "final") == str(layout.model(layout.final_verifier))
    assert ev.verifier_path(layout, None) is None and ev.verifier_path(layout, "x/y") == "x/y"


def test_pass_at_k_by_turn_hand_values():
    p = Problem("p", "", "f", [], [])

    def search(*correct):
        s = SearchState(p, 0, Selector.random, [])
        s.picks = [Candidate("c", c, c, "", 0.0) for c in correct]
        return s

    # 4 searches: correct by turn 1: 1 of 4; by turn 2: 2 of 4
    out = pass_at_k_by_turn([search(True), search(False, True), search(False, False), search(False, False)], 2)
    assert out["k"] == [1, 2, 3, 4]
    assert out["by_turn"][0] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert out["by_turn"][1] == pytest.approx([0.5, 1 - 1 / 6, 1.0, 1.0])


def test_solve_writes_one_row_per_problem_and_never_runs_private_tests(tmp_path, tiny_model_dir, problems, recorded):
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(p.__dict__) + "\n" for p in problems))
    config = SolveConfig(problems=str(path), generator=str(tiny_model_dir), verifier=str(tiny_model_dir),
                         out=str(tmp_path / "out.jsonl"), search=SEARCH, sandbox=SANDBOX)
    assert config.selector is Selector.pt_lv
    rows = [json.loads(line) for line in solve(config).read_text().splitlines()]
    assert [r["id"] for r in rows] == [p.id for p in problems]
    for r in rows:
        assert set(r) >= {"id", "code", "turn", "public_pass", "score"}
        assert 1 <= r["turn"] <= 2 and isinstance(r["score"], float) and isinstance(r["public_pass"], bool)
    private = {t for p in problems for t in p.private_tests}
    assert recorded["jobs"] and not any(set(job.tests) & private for job in recorded["jobs"])
    _check_no_private_test_in_prompts(recorded["prompts"], problems)


def test_solve_without_verifier_uses_pt_and_refuses_lv(tmp_path):
    assert SolveConfig(verifier=None).selector is Selector.pt
    with pytest.raises(ValueError, match="needs a verifier"):
        SolveConfig(verifier=None, selector=Selector.lv)
