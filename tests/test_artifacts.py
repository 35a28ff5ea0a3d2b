"""The stage skeleton (artifacts.run_stage): skip when complete and unchanged, stop with one line when
a complete stage would now compute something else, nothing marked done before its body succeeded;
and RunLayout's names."""

from dataclasses import dataclass, field

import pytest

from mucode import artifacts
from mucode.artifacts import RunLayout, StageOutput
from mucode.tracking import TrackingConfig


@dataclass
class Inner:
    lr: float = 1e-3
    log_every: int = 10


@dataclass
class Config:
    run_dir: str = "runs/x"
    inner: Inner = field(default_factory=Inner)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    shard: str = "0/1"


def _stage(tmp_path, config, calls, data="a"):
    (tmp_path / "data.txt").write_text(data)

    def body(logger):
        calls.append(1)
        (tmp_path / "stage").mkdir(exist_ok=True)
        (tmp_path / "stage" / "out.txt").write_text("done")
        return StageOutput({"data": tmp_path / "data.txt"}, ["out.txt"], {"score": float("nan"), "n": 3})

    return artifacts.run_stage(tmp_path / "stage", config, body, exclude=("shard",))


def test_a_complete_unchanged_stage_is_skipped_and_returns_its_manifests_metrics(tmp_path):
    calls = []
    first = _stage(tmp_path, Config(), calls)
    assert first == {"score": None, "n": 3} and len(calls) == 1
    manifest = artifacts.read_manifest(tmp_path / "stage")
    assert manifest["config"]["inner"]["lr"] == 1e-3 and "shard" not in manifest["config"]
    assert "shard" not in (tmp_path / "stage" / "config.yaml").read_text()
    # what does not change the result: logging, tracking, where the process ran
    again = Config(inner=Inner(log_every=1), tracking=TrackingConfig(wandb="disabled", group="g"), shard="1/2")
    assert _stage(tmp_path, again, calls) == first and len(calls) == 1
    # a field added to the config after the stage ran (an option at its default) is not a change
    manifest["config"]["inner"].pop("lr")
    artifacts.atomic_write_json(tmp_path / "stage" / "manifest.json", manifest)
    assert _stage(tmp_path, Config(), calls) == first and len(calls) == 1


def test_a_complete_stage_with_another_config_or_input_stops_with_one_line(tmp_path):
    calls = []
    _stage(tmp_path, Config(), calls)
    with pytest.raises(ValueError, match=r"stage: complete, but it would now run with inner.lr: 0.001 -> 0.01; "
                                         r"to recompute it delete the folder"):
        _stage(tmp_path, Config(inner=Inner(lr=1e-2)), calls)
    with pytest.raises(ValueError, match=r"input data \(.*data.txt\) changed"):
        _stage(tmp_path, Config(), calls, data="b")
    assert len(calls) == 1  # nothing was recomputed over the complete stage


def test_nothing_is_marked_done_when_the_body_fails(tmp_path):
    def body(logger):
        (tmp_path / "stage").mkdir()
        raise OSError("disk full")

    with pytest.raises(OSError):
        artifacts.run_stage(tmp_path / "stage", Config(), body)
    assert artifacts.read_manifest(tmp_path / "stage") is None
    assert not (tmp_path / "stage" / "config.yaml").exists()


def test_run_layout_names_generators_and_finds_the_final_verifier(tmp_path):
    layout = RunLayout(tmp_path)
    assert [layout.generator_name(i) for i in (0, 1, 12)] == ["base", "iter1", "iter12"]
    assert [layout.generator_index(n) for n in ("base", "iter3", "iter0", "final", "iter")] == [0, 3, None, None, None]
    assert layout.generator(0, "tiny") == str(tmp_path / "warmup" / "model")
    assert layout.generator(0, "org/model") == "org/model" and layout.generator(2, "tiny").endswith("iter2/sft/model")
    assert layout.final_verifier_stage() is None and layout.last_generator() == 0
    for stage in (layout.verifier(1), layout.verifier(2), layout.sft(1), layout.eval("iter1"), layout.eval("base")):
        stage.mkdir(parents=True)
        artifacts.write_manifest(stage, {}, [])
    layout.verifier(3).mkdir(parents=True)  # not complete
    assert layout.final_verifier_stage() == layout.verifier(2) and layout.last_generator() == 1
    assert layout.iterations() == [1, 2, 3] and layout.evaluations() == ["base", "iter1"]
    assert layout.stage_name(layout.verifier(2)) == "iter2/verifier"
