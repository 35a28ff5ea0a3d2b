from pathlib import Path

import pytest

from mucode.records import Episode, read_records, write_records
from mucode.generation import SamplingConfig
from mucode.rollouts import RolloutRecipe, episode_metrics
from mucode.stages.collect_rollouts import CollectRolloutsConfig, parse_shard, run
from mucode.sandbox import SandboxConfig
from mucode.tasks import TaskConfig, load_problems


def collect_rollouts(config):
    """Run the stage; the merged episodes' folder (the stage returns its metrics)."""
    run(config)
    return Path(config.run_dir) / "iter1" / "rollouts" / "episodes"


def _config(run_dir, model_dir, chunk_size=2, **kw):
    return CollectRolloutsConfig(
        run_dir=str(run_dir), iteration=1, generator=str(model_dir),
        rollout=RolloutRecipe(samples=2, turns=2, chunk_size=chunk_size, problems_per_iteration=None,
                              sampling=SamplingConfig(temperature=1.0, max_new_tokens=12, batch_size=4)),
        sandbox=SandboxConfig(timeout_s=2.0, workers=2), **kw)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from mucode.records import Problem

    root = tmp_path_factory.mktemp("run")
    problems = load_problems(TaskConfig(), "test")[:5]
    write_records(problems, root / "problems" / "train", Problem)
    return root


def test_episodes_record_every_turn_with_public_feedback(run_dir, tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    from mucode import generation

    placed, real = [], generation.load_generator
    monkeypatch.setattr(generation, "load_generator", lambda *a: placed.append(a[2]) or real(*a))
    shutil.copytree(run_dir / "problems", tmp_path / "problems")
    out = collect_rollouts(_config(tmp_path, tiny_model_dir))
    assert placed == [generation.inference_device()]  # sampling runs on the GPU when there is one
    episodes = read_records(out, Episode)
    assert len(episodes) == 10 and sorted({e.sample for e in episodes}) == [0, 1]
    for e in episodes:  # an untrained model fails: every episode runs all turns
        assert len(e.turns) == 2 and not e.correct
        first, second = e.turns
        assert len(first.state) == 1 and len(second.state) == 3
        assert second.state[2]["content"].startswith(first.feedback) and first.feedback
        assert not first.public_pass
    assert episode_metrics(episodes)["episodes"] == 10


def test_shards_then_merge_equal_one_run_and_resume_skips_done_chunks(run_dir, tiny_model_dir, tmp_path):
    import shutil

    for name in ("one", "sharded"):
        shutil.copytree(run_dir / "problems", tmp_path / name / "problems")
    single = read_records(collect_rollouts(_config(tmp_path / "one", tiny_model_dir, 1)), Episode)
    run(_config(tmp_path / "sharded", tiny_model_dir, 1, shard="0/2"))
    with pytest.raises(FileNotFoundError, match="shard-001-of-002"):
        run(_config(tmp_path / "sharded", tiny_model_dir, 1, shard="0/2", merge=True))
    # a "killed" shard 1 (chunks 1 and 3): chunk 1 done, chunk 3 missing
    shard1 = _config(tmp_path / "sharded", tiny_model_dir, 1, shard="1/2")
    run(shard1)
    sdir = tmp_path / "sharded" / "iter1" / "rollouts" / "shard-001-of-002"
    (sdir / "manifest.json").unlink()
    shutil.rmtree(sdir / "episodes")
    kept = (sdir / "chunk-00001" / "dataset_info.json").stat().st_mtime_ns
    shutil.rmtree(sdir / "chunk-00003")
    run(shard1)
    assert (sdir / "chunk-00001" / "dataset_info.json").stat().st_mtime_ns == kept
    merge = _config(tmp_path / "sharded", tiny_model_dir, 1, shard="1/2", merge=True)
    merged = read_records(collect_rollouts(merge), Episode)
    key = lambda e: (e.problem_id, e.sample)  # noqa: E731
    assert sorted(merged, key=key) == sorted(single, key=key)


@pytest.mark.parametrize("shard", ["2/2", "a/b", "1"])
def test_bad_shard_is_one_line(shard):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(shard)


def test_missing_problems_name_the_stage(tmp_path, tiny_model_dir):
    with pytest.raises(FileNotFoundError, match="problem split 'train' not found"):
        run(_config(tmp_path, tiny_model_dir))


def test_config_yaml_is_written_once_by_the_process_that_completes_the_stage(run_dir, tiny_model_dir, tmp_path):
    """Where a shard ran is not part of what the stage computed: the merged stage's config.yaml is the
    same whether one process or a merge after shards completed it."""
    import shutil

    for name in ("one", "sharded"):
        shutil.copytree(run_dir / "problems", tmp_path / name / "problems")
    run(_config(tmp_path / "one", tiny_model_dir, 3))
    for i in range(2):
        run(_config(tmp_path / "sharded", tiny_model_dir, 3, shard=f"{i}/2"))
    assert not (tmp_path / "sharded" / "iter1" / "rollouts" / "config.yaml").exists()
    run(_config(tmp_path / "sharded", tiny_model_dir, 3, shard="0/2", merge=True))
    one, sharded = ((tmp_path / n / "iter1" / "rollouts" / "config.yaml").read_text() for n in ("one", "sharded"))
    assert one.replace(str(tmp_path / "one"), "RUN") == sharded.replace(str(tmp_path / "sharded"), "RUN")
    assert "shard" not in one and "merge" not in one
