"""The run report: summary.json, report.md and plots from hand-made manifests; the typed Summary reads
summary.json back; the report stage and its entry point."""

import json
import subprocess
import sys

import pytest

from mucode import artifacts
from mucode.artifacts import RunLayout
from mucode.config import CONF_DIR, compose
from mucode.report import GeneratorResult, Summary, fmt_num, fmt_pct, summarize_run, write_report
from mucode.search import Selector
from mucode.stages.report import ReportConfig, run


def _eval(greedy, bon, turns=3, **recorded):
    """Eval metrics shaped like the evaluate stage's (mucode.search.search_metrics): final-turn
    accuracy = by_turn[-1]. Without pt+cluster in `bon`: an eval from before it existed."""
    by_turn = lambda acc: [acc * (t + 1) / turns for t in range(turns)]  # noqa: E731
    return {"greedy": {"accuracy": greedy, "by_turn": by_turn(greedy)},
            "bon": {s: {"accuracy": a, "by_turn": by_turn(a)} for s, a in bon.items()},
            "pass_at_k": {"k": [1, 2], "by_turn": [[0.1, 0.2], [0.2, 0.3], [0.3, 0.456]]},
            "searches": 2, "candidates": 4, "turns": turns, "problems": 500, "split": "test", "tokens_per_s": 900.0,
            **recorded}


def _stage(root, name, metrics, seconds):
    (root / name).mkdir(parents=True, exist_ok=True)
    artifacts.write_manifest(root / name, {}, [], metrics, seconds)


def _run(tmp_path):
    root = tmp_path / "run"
    _stage(root, "problems", {"sizes": {"test": 500}}, 2.0)
    _stage(root, "warmup", {}, 100.0)
    for i, fix in ((1, 0.25), (2, 0.375)):
        _stage(root, f"iter{i}/rollouts/shard-000-of-001", {}, 30.0 + i)
        _stage(root, f"iter{i}/rollouts", {"episodes": 40, "correct_by_turn": [0.5, 0.6, 0.625],
                                           "turn1_failures": 16, "fix_share": fix}, 0.5 if i == 1 else None)
        _stage(root, f"iter{i}/verifier", {"valid": {"auc": 0.7 + i / 100, "accuracy": 0.8}}, 20.0)
        _stage(root, f"iter{i}/sft", {}, 40.0)
    _stage(root, "final_verifier", {"valid": {"auc": 0.8123, "accuracy": 0.7777, "ece": 0.05}}, 25.0)
    _stage(root, "eval/base", _eval(0.2, {"random": 0.25, "pt": 0.3, "lv": 0.28, "pt+lv": 0.35}), 50.0)
    _stage(root, "eval/iter2", _eval(0.379, {"random": 0.375, "pt": 0.494, "lv": 0.433, "pt+lv": 0.511,
                                              "pt+cluster": 0.5}, aggregate=True), 55.0)
    _stage(root, "eval/iter1", _eval(0.3, {"random": 0.3, "pt": 0.4, "lv": 0.35, "pt+lv": 0.45}), 52.0)
    return root


def test_report_builds_summary_tables_and_plots_from_manifests(tmp_path):
    root = _run(tmp_path)
    write_report(root, wall_seconds=812.5)
    summary = json.loads((root / "summary.json").read_text())
    assert summary["wall_seconds"] == 812.5
    assert summary["verifier"]["auc"] == 0.8123 and summary["verifier"]["accuracy"] == 0.7777
    assert list(summary["generators"]) == ["base", "iter1", "iter2"]
    assert summary["generators"]["iter2"]["bon"]["pt+lv"]["accuracy"] == 0.511
    assert summary["stage_seconds"]["iter1/rollouts"] == 31.5  # merged rollouts: the shards + the merge
    assert summary["stage_seconds"]["iter2/rollouts"] == 32.0  # a merge that recorded no time
    assert summary["stage_seconds"]["eval/iter2"] == 55.0 and summary["stage_seconds"]["warmup"] == 100.0
    assert summary["rollouts"]["iter2"]["fix_share"] == 0.375
    report = (root / "report.md").read_text()
    table1 = report.split("## Table 1")[1].split("##")[0]
    assert "| iter2 | 37.9 | 37.5 | 49.4 | 43.3 | 51.1 | 50.0 |" in table1
    assert "| base | 20.0 | 25.0 | 30.0 | 28.0 | 35.0 | \u2014 |" in table1  # an eval before pt+cluster
    assert "BoN pt+cluster |" in table1 and "lv and pt+lv summed over identical codes" in table1
    assert table1.index("| base |") < table1.index("| iter1 |") < table1.index("| iter2 |")
    table3 = report.split("## Table 3")[1].split("##")[0]
    assert "iter2" in table3 and "| pt+lv | 17.0 | 34.1 | 51.1 |" in table3
    assert "| pt+cluster | 16.7 | 33.3 | 50.0 |" in table3
    assert "45.6" in report  # pass@2 at the final turn
    assert "0.812" in report and "37.5" in report  # verifier AUC, iteration 2's fix share
    assert "| wall | 812.5 |" in report
    for png in ("accuracy_vs_iteration.png", "accuracy_vs_turn.png", "pass_at_k.png"):
        assert (root / png).read_bytes()[:4] == b"\x89PNG" and f"({png})" in report
    assert not (root / "accuracy_vs_n.png").exists()


def test_report_reads_wall_time_and_plots_accuracy_vs_n_when_recorded(tmp_path):
    root = _run(tmp_path)
    metrics = artifacts.read_manifest(root / "eval/iter2")["metrics"]
    metrics["bon_by_n"] = {"selector": "pt+lv", "n": [1, 2, 4], "accuracy": [0.3, 0.4, 0.511]}
    _stage(root, "eval/iter2", metrics, 55.0)
    artifacts.atomic_write_text(RunLayout(root).clock, json.dumps({"wall_seconds": 999.0}))  # the main job's
    summary = write_report(root)
    assert summary.wall_seconds == 999.0
    assert summary.generators["iter2"].bon_by_n.accuracy == [0.3, 0.4, 0.511]
    assert (root / "accuracy_vs_n.png").is_file() and not (root / "pass_at_k.png").exists()


def test_table_3_of_an_eval_from_before_pt_cluster_marks_it_missing(tmp_path):
    root = _run(tmp_path)
    _stage(root, "eval/iter2", _eval(0.379, {"random": 0.375, "pt": 0.494, "lv": 0.433, "pt+lv": 0.511}), 55.0)
    write_report(root)
    table3 = (root / "report.md").read_text().split("## Table 3")[1].split("##")[0]
    assert "| pt+cluster | \u2014 | \u2014 | \u2014 |" in table3


def test_report_of_a_run_without_evaluations(tmp_path):
    root = tmp_path / "run"
    _stage(root, "problems", {}, 1.5)
    summary = write_report(root)
    assert summary.generators == {} and summary.wall_seconds == 1.5
    assert json.loads((root / "summary.json").read_text())["verifier"] == {"auc": None, "accuracy": None}
    assert "No evaluation yet" in (root / "report.md").read_text()


def test_summary_json_holds_every_eval_manifest_as_written(tmp_path):
    root = _run(tmp_path)
    write_report(root)
    summary = json.loads((root / "summary.json").read_text())
    for name in ("base", "iter1", "iter2"):
        assert summary["generators"][name] == artifacts.read_manifest(root / "eval" / name)["metrics"]
    assert summary["verifiers"]["final_verifier"] == {"auc": 0.8123, "accuracy": 0.7777, "ece": 0.05}
    assert list(summary["verifiers"]) == ["iter1", "iter2", "final_verifier"]
    assert summary["rollouts"]["iter1"] == artifacts.read_manifest(root / "iter1" / "rollouts")["metrics"]
    assert list(summary) == ["run_dir", "wall_seconds", "stage_seconds", "verifier", "verifiers", "generators",
                             "rollouts"]


def test_summary_read_round_trips_write_report(tmp_path):
    root = _run(tmp_path)
    written = write_report(root, wall_seconds=812.5)
    summary = Summary.read(RunLayout(root).summary)
    assert summary == written == summarize_run(root, wall_seconds=812.5)
    iter2 = summary.generators["iter2"]
    assert isinstance(iter2, GeneratorResult) and list(iter2.bon) == list(Selector)
    assert iter2.bon[Selector.pt_lv].accuracy == 0.511 and iter2.bon_accuracy(Selector.pt) == 0.494
    assert iter2.greedy.by_turn[-1] == 0.379 and iter2.pass_at_k.k == [1, 2] and iter2.turns == 3
    assert iter2.extra == {"tokens_per_s": 900.0, "aggregate": True}
    base = summary.generators["base"]  # an older summary: the paper's four selectors only
    assert list(base.bon) == [Selector.random, Selector.pt, Selector.lv, Selector.pt_lv]
    assert base.bon_accuracy(Selector.pt_cluster) is None
    assert summary.verifier.auc == 0.8123 and summary.verifiers["iter1"].auc == 0.71
    assert summary.rollouts["iter2"].fix_share == 0.375 and summary.stage_seconds["iter1/rollouts"] == 31.5
    assert summary.to_json() == json.loads((root / "summary.json").read_text())


@pytest.mark.parametrize("text, why", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not a run summary"),
    ('{"run_dir": "x", "wall_seconds": 1}', "not a run summary"),
])
def test_bad_summary_json_fails_with_one_line_naming_the_file(tmp_path, text, why):
    path = tmp_path / "summary.json"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        Summary.read(path)
    assert str(e.value).startswith(f"{path}: {why}") and "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="run summary not found; run the report stage"):
        Summary.read(tmp_path / "missing.json")


def test_unknown_selector_in_summary_json_names_the_file(tmp_path):
    root = _run(tmp_path)
    write_report(root)
    path = RunLayout(root).summary
    path.write_text(path.read_text().replace('"pt+lv"', '"best"'))
    with pytest.raises(ValueError, match=f"^{path}: not a run summary .*'best' is not a valid Selector"):
        Summary.read(path)


def test_one_missing_value_mark():
    assert fmt_pct(0.4251) == "42.5" and fmt_num(0.81234) == "0.812"
    assert fmt_pct(None) == fmt_pct(float("nan")) == fmt_num(None) == "\u2014"


def test_report_stage_from_its_config(tmp_path):
    root = _run(tmp_path)
    config = compose("report", [f"run_dir={root}"])
    assert config == ReportConfig(run_dir=str(root))
    summary = run(config)
    assert summary.wall_seconds == sum(summary.stage_seconds.values())  # no clock: the sum of the stages
    assert (root / "report.md").is_file() and Summary.read(root / "summary.json") == summary
    with pytest.raises(FileNotFoundError, match="nowhere: no complete stage to report on"):
        run(ReportConfig(run_dir=str(tmp_path / "nowhere")))


def test_entry_point_without_stages_exits_2_with_one_line(tmp_path):
    cmd = [sys.executable, str(CONF_DIR.parent / "pipelines" / "report.py"), f"run_dir={tmp_path}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {tmp_path}: no complete stage to report on")
