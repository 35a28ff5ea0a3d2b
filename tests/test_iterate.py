"""The main job end to end on a miniature configuration: every stage, the report, skip on rerun, and
resume after SIGKILL with the same final metrics as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mucode import artifacts
from mucode.config import compose
from mucode.stages.expert_iteration import ExpertIterationConfig, run

ROOT = Path(__file__).resolve().parents[1]


def _config(run_dir: Path, mini: list[str], extra: list[str] = ()) -> ExpertIterationConfig:
    return compose("expert_iteration", [f"run_dir={run_dir}", *mini, *extra])


STAGES = ["problems", "problems-humaneval", "base", "warmup", "iter1/rollouts", "iter1/verifier", "iter1/relabel",
          "iter1/sft", "eval/base", "eval/iter1", "eval-humaneval/base", "eval-humaneval/iter1"]


def _metrics(run_dir: Path) -> dict:
    """What must not depend on interruptions: every stage's metrics without timings."""
    out = {}
    for stage in STAGES:
        metrics = artifacts.read_manifest(run_dir / stage)["metrics"]
        text = json.dumps(metrics, sort_keys=True).replace(str(run_dir), "RUN")
        out[stage] = json.loads(text, object_hook=_drop_timings)
    return out


# Timings differ run to run. A training stage resumed from a checkpoint also reports its loss window
# and padding share over the batches run since the resume only (a known limit of mucode.training);
# its weights are the same, which the evaluations of its generator check.
_VARYING = ("seconds", "per_s", "model_dir", "resumed", "final_loss", "padding_waste")


def _drop_timings(d: dict) -> dict:
    return {k: v for k, v in d.items() if not any(w in k for w in _VARYING)}


@pytest.mark.slow
def test_main_job_runs_every_stage_writes_the_report_and_skips_when_done(mini_run, mini):
    tmp_path = mini_run  # the main job with final_rollouts=true (conftest)
    for stage in [*STAGES, "iter2/rollouts", "final_verifier"]:
        assert artifacts.read_manifest(tmp_path / stage) is not None, stage
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary["generators"]) == ["base", "iter1"]
    assert list(summary["tasks"]) == ["humaneval"] and list(summary["tasks"]["humaneval"]) == ["base", "iter1"]
    assert summary["tasks"]["humaneval"]["iter1"]["problems"] == 4
    assert artifacts.read_manifest(tmp_path / "problems-humaneval")["metrics"]["sizes"] == {"test": 164}
    report = (tmp_path / "report.md").read_text()
    assert "## Table 1" in report and "## humaneval: Table 1" in report and "problems of embedded" in report
    for g in [*summary["generators"].values(), *summary["tasks"]["humaneval"].values()]:
        assert len(g["greedy"]["by_turn"]) == 2 and set(g["bon"]) == {"random", "pt", "lv", "pt+lv", "pt+cluster"}
        assert all(0 <= b["accuracy"] <= 1 for b in g["bon"].values())
    assert set(summary["verifier"]) >= {"auc", "accuracy"} and summary["wall_seconds"] > 0
    evaluated_with = artifacts.read_manifest(tmp_path / "eval" / "base")["metrics"]["verifier"]
    assert evaluated_with == str(tmp_path / "final_verifier" / "model")
    assert "iter1/sft" in summary["stage_seconds"] or "iter1" in json.dumps(summary["stage_seconds"])
    assert (tmp_path / "report.md").is_file() and list((tmp_path).rglob("*.png"))
    before = _metrics(tmp_path)
    stamps = {s: (tmp_path / s / "manifest.json").stat().st_mtime_ns for s in STAGES}
    run(_config(tmp_path, mini, ["final_rollouts=true"]))  # everything complete: nothing reruns
    assert {s: (tmp_path / s / "manifest.json").stat().st_mtime_ns for s in STAGES} == stamps
    assert _metrics(tmp_path) == before


def _main_job(run_dir: Path, mini: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, str(ROOT / "pipelines" / "expert_iteration.py"), f"run_dir={run_dir}", *mini]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


# What each stage's last metrics.jsonl row must hold (its manifest's metrics flattened by
# tracking.flat_metrics), beside the per-step rows of the training stages.
FINAL_ROW = {
    "problems": {"sizes/warmup", "sizes/train", "sizes/test"},
    "base": {"parameters", "vocab_size"},
    "warmup": {"train/steps", "train/final_loss", "examples"},
    "iter1/rollouts": {"episodes", "correct_by_turn/1", "correct_by_turn/3", "fix_share"},
    "iter1/verifier": {"train/steps", "sizes/train_examples", "valid/accuracy", "valid/brier", "valid/examples"},
    "iter1/relabel": {"episodes", "examples", "multi_turn_examples"},
    "iter1/sft": {"train/steps", "examples"},
    **{f"eval/{g}": {"greedy/accuracy", "greedy/by_turn/1", "greedy/by_turn/2", "pass_at_k/by_turn/2/1",
                     *(f"bon/{s}/{k}" for s in ("random", "pt", "lv", "pt+lv", "pt+cluster")
                       for k in ("accuracy", "by_turn/2"))}
       for g in ("base", "iter1")},
}


@pytest.mark.slow
def test_every_stage_logs_its_metrics_to_metrics_jsonl(mini_run):
    for stage, keys in {**FINAL_ROW, "iter2/rollouts": FINAL_ROW["iter1/rollouts"],
                        "final_verifier": FINAL_ROW["iter1/verifier"]}.items():
        rows = [json.loads(line) for line in (mini_run / stage / "metrics.jsonl").read_text().splitlines()]
        assert {r["stage"] for r in rows} == {stage}
        final = rows[-1]
        assert final["step"] is None and keys <= final.keys(), (stage, sorted(keys - final.keys()))
        manifest = artifacts.read_manifest(mini_run / stage)["metrics"]
        assert all(final[k] == _at(manifest, k) for k in keys), stage
        if stage in ("warmup", "iter1/verifier", "iter1/sft"):  # training logs its steps before the final row
            assert [r["step"] for r in rows[:-1]] and all("loss" in r for r in rows[:-1]), stage


def _at(metrics: dict, key: str):
    """The value at a flattened key ("bon/pt/by_turn/2") in nested metrics (lists 1-based)."""
    for part in key.split("/"):
        metrics = metrics[int(part) - 1] if isinstance(metrics, list) else metrics[part]
    return metrics


@pytest.mark.slow
@pytest.mark.parametrize("kill_when", ["iter1/rollouts/shard-000-of-001/chunk-00001", "iter1/sft/checkpoints"])
def test_killed_main_job_resumes_to_the_metrics_of_an_uninterrupted_run(tmp_path, kill_when, mini):
    whole = tmp_path / "whole"
    assert _main_job(whole, mini).wait(timeout=600) == 0
    cut = tmp_path / "cut"
    proc = _main_job(cut, mini)
    deadline = time.monotonic() + 600
    while not (cut / kill_when).exists():
        assert proc.poll() is None, f"finished before {kill_when} appeared: {proc.stderr.read()[-500:]}"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (cut / "summary.json").exists()
    rerun = _main_job(cut, mini)
    assert rerun.wait(timeout=600) == 0, rerun.stderr.read()[-2000:]
    assert _metrics(cut) == _metrics(whole)


@pytest.mark.slow
def test_a_sweep_of_the_main_job_gives_each_job_its_own_run_folder(tmp_path, mini):
    cmd = [sys.executable, str(ROOT / "pipelines" / "expert_iteration.py"), "--multirun", f"run_dir={tmp_path}",
           *mini, "iterations=0", "eval.limit=2", "seed=0,1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for seed in (0, 1):
        config = artifacts.read_manifest(tmp_path / f"seed={seed}" / "eval" / "base")
        assert config is not None and config["config"]["run_dir"] == str(tmp_path / f"seed={seed}")
        assert (tmp_path / f"seed={seed}" / "summary.json").is_file()
    assert not (tmp_path / "warmup").exists()
