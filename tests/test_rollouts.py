import pytest

from mucode.records import Episode, read_records, write_records
from mucode.rollouts import CollectRolloutsConfig, RolloutConfig, collect_rollouts, episode_metrics, parse_shard
from mucode.generation import SamplingConfig
from mucode.sandbox import SandboxConfig
from mucode.tasks import TaskConfig, load_problems


def _config(run_dir, model_dir, chunk_size=2, **kw):
    return CollectRolloutsConfig(
        run_dir=str(run_dir), iteration=1, generator=str(model_dir),
        rollout=RolloutConfig(samples=2, turns=2, chunk_size=chunk_size, problems_per_iteration=None),
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=12, batch_size=4),
        sandbox=SandboxConfig(timeout_s=2.0, workers=2), **kw)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from mucode.records import Problem

    root = tmp_path_factory.mktemp("run")
    problems = load_problems(TaskConfig(), "test")[:5]
    write_records(problems, root / "problems" / "train", Problem)
    return root


def test_episodes_record_every_turn_with_public_feedback(run_dir, tiny_model_dir, tmp_path):
    import shutil

    shutil.copytree(run_dir / "problems", tmp_path / "problems")
    out = collect_rollouts(_config(tmp_path, tiny_model_dir))
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
    collect_rollouts(_config(tmp_path / "sharded", tiny_model_dir, 1, shard="0/2"))
    with pytest.raises(FileNotFoundError, match="shard-001-of-002"):
        collect_rollouts(_config(tmp_path / "sharded", tiny_model_dir, 1, shard="0/2", merge=True))
    # a "killed" shard 1 (chunks 1 and 3): chunk 1 done, chunk 3 missing
    shard1 = _config(tmp_path / "sharded", tiny_model_dir, 1, shard="1/2")
    collect_rollouts(shard1)
    sdir = tmp_path / "sharded" / "iter1" / "rollouts" / "shard-001-of-002"
    (sdir / "manifest.json").unlink()
    shutil.rmtree(sdir / "episodes")
    kept = (sdir / "chunk-00001" / "dataset_info.json").stat().st_mtime_ns
    shutil.rmtree(sdir / "chunk-00003")
    collect_rollouts(shard1)
    assert (sdir / "chunk-00001" / "dataset_info.json").stat().st_mtime_ns == kept
    merged = read_records(collect_rollouts(_config(tmp_path / "sharded", tiny_model_dir, 1, shard="1/2", merge=True)), Episode)
    key = lambda e: (e.problem_id, e.sample)  # noqa: E731
    assert sorted(merged, key=key) == sorted(single, key=key)


@pytest.mark.parametrize("shard", ["2/2", "a/b", "1"])
def test_bad_shard_is_one_line(shard):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(shard)


def test_missing_problems_name_the_stage(tmp_path, tiny_model_dir):
    with pytest.raises(FileNotFoundError, match="problem split 'train' not found"):
        collect_rollouts(_config(tmp_path, tiny_model_dir))
