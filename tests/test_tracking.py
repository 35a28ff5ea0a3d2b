"""MetricLogger: metrics.jsonl always, an offline wandb run when enabled, nothing off rank 0; a stage's
final metrics flattened; a rerun stage continues its wandb run."""

import json
import struct
import time
import types
from dataclasses import dataclass

import pytest
import torch

from mucode import artifacts
from mucode.artifacts import StageOutput
from mucode.tracking import METRICS_FILE, WANDB_RUN_ID, TrackingConfig, WandbMode, flat_metrics, open_logger


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


def _wandb_records(path):
    """The protobuf records of a .wandb file: a 7-byte header, then LevelDB-log chunks in 32 KiB blocks
    (7-byte chunk header: crc, length, type; type 1 = whole record, 2/3/4 = first/middle/last part)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, part, records = path.read_bytes(), 7, b"", []
    assert data[:4] == b":W&B", f"{path} is not a wandb transaction log"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # block trailer too short for a chunk header: zero padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        part += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(part)
            records.append(record)
            part = b""
    return records


def test_offline_wandb_run_holds_the_metrics_of_metrics_jsonl(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    with open_logger(TrackingConfig(project="mucode-test"), tmp_path / "stage", "sft", {"lr": 0.1}) as logger:
        logger.log({"loss": torch.tensor(1.5), "lr": 0.1}, step=1)
        logger.log({"loss": 0.75, "tokens": 2048}, step=3)
    runs = list((tmp_path / "wb").rglob("offline-run-*"))
    assert len(runs) == 1, "no offline wandb run directory written"
    records = _finished_records(runs[0])
    history = [{key: json.loads(i.value_json) for i in r.history.item
                if not (key := i.key or "/".join(i.nested_key)).startswith("_")} | {"step": r.history.step.num}
               for r in records if r.WhichOneof("record_type") == "history"]
    expected = [{f"sft/{k}": v for k, v in row.items() if k not in ("stage", "step", "time")} | {"step": row["step"]}
                for row in _rows(tmp_path / "stage" / METRICS_FILE)]
    assert history == expected == [{"sft/loss": 1.5, "sft/lr": 0.1, "step": 1},
                                   {"sft/loss": 0.75, "sft/tokens": 2048, "step": 3}]
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert (run.project, run.display_name) == ("mucode-test", "sft")
    assert {i.key: json.loads(i.value_json) for i in run.config.update}["lr"] == 0.1  # the stage params


def _finished_records(run_dir):
    """The records of an offline run folder once its exit record is there: wandb's service process may
    still be flushing the file when finish() returns."""
    for _ in range(100):
        records = _wandb_records(next(run_dir.glob("*.wandb")))
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        time.sleep(0.1)
    return records


def test_flat_metrics_names_nested_values_by_path_and_one_based_position():
    metrics = {"greedy": {"accuracy": 0.5, "by_turn": [0.25, 0.5]}, "split": "test", "verifier": None,
               "valid": {"auc": float("nan"), "ece": 0.125}, "pass_at_k": {"k": [1, 2], "by_turn": [[0.1, 0.2]]},
               "episodes": 6, "seconds": {}}
    assert flat_metrics(metrics) == {
        "greedy/accuracy": 0.5, "greedy/by_turn/1": 0.25, "greedy/by_turn/2": 0.5, "valid/ece": 0.125,
        "pass_at_k/k/1": 1, "pass_at_k/k/2": 2, "pass_at_k/by_turn/1/1": 0.1, "pass_at_k/by_turn/1/2": 0.2,
        "episodes": 6}


def test_a_logger_that_logs_nothing_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR")
    with open_logger(TrackingConfig(), tmp_path / "stage", "s"):  # a stage failing on a missing input
        pass
    assert not (tmp_path / "stage").exists()


@dataclass
class _StageConfig:
    run_dir: str
    tracking: TrackingConfig


def test_a_rerun_stage_continues_the_wandb_run_of_its_killed_first_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    config, out = _StageConfig(str(tmp_path), TrackingConfig(project="mucode-test")), tmp_path / "iter1" / "sft"

    def killed(logger):
        logger.log({"loss": 2.0}, step=1)
        raise RuntimeError("killed half-way")

    def resumed(logger):
        logger.log({"loss": 1.0}, step=2)
        (out / "model").write_text("weights")
        return StageOutput({}, ["model"], {"train": {"steps": 2}, "valid": {"auc": 0.75, "ece": float("nan")}})

    with pytest.raises(RuntimeError):
        artifacts.run_stage(out, config, killed)
    run_id = (out / WANDB_RUN_ID).read_text().strip()
    assert run_id and artifacts.read_manifest(out) is None
    assert artifacts.run_stage(out, config, resumed) == {"train": {"steps": 2}, "valid": {"auc": 0.75, "ece": None}}
    assert (out / WANDB_RUN_ID).read_text().strip() == run_id
    rows = _rows(out / METRICS_FILE)
    assert [(r["stage"], r["step"]) for r in rows] == [("iter1/sft", 1), ("iter1/sft", 2), ("iter1/sft", None)]
    assert {k: v for k, v in rows[-1].items() if k not in ("stage", "step", "time")} == {"train/steps": 2,
                                                                                        "valid/auc": 0.75}
    # wandb 0.31 offline: each process writes its own offline-run folder, both under the stage's one run id
    runs = sorted((tmp_path / "wb").rglob("offline-run-*"))
    assert len(runs) == 2
    for folder in runs:
        run = next(r.run for r in _finished_records(folder) if r.WhichOneof("record_type") == "run")
        assert (run.run_id, run.display_name, run.project) == (run_id, "iter1/sft", "mucode-test")


class _FakeWandb:
    """Stands in for wandb.init (and wandb's servers, which cannot be reached here): records the
    mode each run was started in."""

    def __init__(self):
        self.modes, self.dirs = [], []

    def init(self, **kwargs):
        self.modes.append(kwargs["mode"])
        self.dirs.append(kwargs["dir"])
        return types.SimpleNamespace(id="fake", log=lambda *a, **k: None, finish=lambda: None)


@pytest.mark.parametrize("env, configured, started", [
    (None, WandbMode.offline, "offline"),   # the default: offline
    (None, WandbMode.online, "online"),     # tracking.wandb=online
    ("online", WandbMode.offline, "online"),  # WANDB_MODE=online turns it on
    ("offline", WandbMode.online, "offline"),  # the environment wins, as everywhere in wandb
    ("disabled", WandbMode.online, None),
])
def test_wandb_mode_follows_env_then_config(tmp_path, monkeypatch, env, configured, started):
    import wandb

    fake = _FakeWandb()
    monkeypatch.setattr(wandb, "init", fake.init)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    if env is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", env)
    with open_logger(TrackingConfig(wandb=configured), tmp_path, "s") as logger:
        logger.log({"x": 1}, step=0)
    assert fake.modes == ([started] if started else [])
    assert fake.dirs == ([str(tmp_path)] if started else [])  # without $WANDB_DIR: the stage folder


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
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ValueError, match="WANDB_MODE='sometimes'"):
        open_logger(TrackingConfig(), tmp_path, "s")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with open_logger(TrackingConfig(), tmp_path, "s") as logger, pytest.raises(TypeError, match="not a number"):
        logger.log({"loss": "high"})
