"""MetricLogger: metrics.jsonl always, an offline wandb run when enabled, nothing off rank 0."""

import json

import pytest
import torch

from mucode.tracking import METRICS_FILE, TrackingConfig, WandbMode, open_logger


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_metrics_jsonl_appends_rows_with_stage_and_step(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with open_logger(TrackingConfig(), tmp_path, stage="warmup") as logger:
        logger.log({"loss": torch.tensor(0.5), "lr": 1e-3}, step=1)
    with open_logger(TrackingConfig(), tmp_path, stage="warmup") as logger:  # a resumed run appends
        logger.log({"loss": 0.25, "tokens": 7}, step=2)
    rows = _rows(tmp_path / METRICS_FILE)
    assert [(r["stage"], r["step"], r["loss"]) for r in rows] == [("warmup", 1, 0.5), ("warmup", 2, 0.25)]
    assert rows[0]["lr"] == 1e-3 and rows[1]["tokens"] == 7 and isinstance(rows[1]["tokens"], int)
    assert not (tmp_path / "wandb").exists()


def test_offline_wandb_writes_a_run_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    with open_logger(TrackingConfig(project="mucode-test"), tmp_path / "stage", "sft", {"lr": 0.1}) as logger:
        logger.log({"loss": 1.0}, step=1)
    runs = list((tmp_path / "wb").rglob("offline-run-*"))
    assert runs, "no offline wandb run directory written"
    assert any(p.suffix == ".wandb" for p in runs[0].rglob("*"))
    assert _rows(tmp_path / "stage" / METRICS_FILE)[0]["loss"] == 1.0


def test_config_switch_disables_wandb_without_env(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    with open_logger(TrackingConfig(wandb=WandbMode.disabled), tmp_path, "s") as logger:
        logger.log({"x": 1}, step=0)
    assert not (tmp_path / "wb").exists()
    assert (tmp_path / METRICS_FILE).is_file()


def test_non_main_process_logs_nothing(tmp_path):
    with open_logger(TrackingConfig(), tmp_path, "s", main_process=False) as logger:
        logger.log({"loss": 1.0}, step=1)
    assert list(tmp_path.iterdir()) == []


def test_bad_values_fail_clearly(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="tracking.wandb|WandbMode"):
        TrackingConfig(wandb="sometimes")
    with pytest.raises(ValueError, match="tracking.project"):
        TrackingConfig(project="")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with open_logger(TrackingConfig(), tmp_path, "s") as logger, pytest.raises(TypeError, match="not a number"):
        logger.log({"loss": "high"})
