"""MetricLogger: metrics.jsonl always, an offline wandb run when enabled, nothing off rank 0."""

import json
import struct
import time
import types

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
    records = _wandb_records(next(runs[0].glob("*.wandb")))
    for _ in range(100):  # wandb's service process may still be flushing the file when finish() returns
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        time.sleep(0.1)
        records = _wandb_records(next(runs[0].glob("*.wandb")))
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
