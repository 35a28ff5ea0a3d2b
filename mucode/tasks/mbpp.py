"""MBPP (Mostly Basic Python Problems; Austin et al. 2021, Google Research, CC BY 4.0).

Loads the original release (974 rows: task_id, text, code, test_list, test_setup_code,
challenge_test_list) and splits it by task_id as the paper does:

    train  601-974 (374)   public: all three listed tests;  private: the challenge tests (if any)
    valid  511-600  (90)   public: test_list[0];  private: test_list[1:] + the challenge tests
    test    11-510 (500)   public: test_list[0];  private: test_list[1:] + the challenge tests

Task ids 1-10 (the few-shot prompt split) are never used. `test_setup_code`, when non-empty, is
prepended to every test snippet. The prompt is the `text` field; the entry point is the function
of the reference code that the first test calls.

    load("data/mbpp.jsonl", "test")     # .jsonl, .jsonl.gz or .parquet of the original release
    load(None, "test")                  # the Hub (google-research-datasets/mbpp, "full"), online only

Each test snippet runs after the candidate program, so the setup of tasks 367 and 927 (which
builds trees from the `Node` class the reference defines) works; all 964 references pass their
tests with Python's `==`. With exact-type comparison 26 do not (e.g. task 14 returns 240.0 where
its test says 240), which matters to a checker that compares types strictly.

Limits: no package ships MBPP, so offline users need a local file or the Hub.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from mucode.records import Problem, RecordError, json_rows

SPLITS = {"train": range(601, 975), "valid": range(511, 601), "test": range(11, 511)}
"""Split -> the task ids it holds."""
HUB_ID = "google-research-datasets/mbpp"
SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")


def load(path: str | None, split: str) -> list[Problem]:
    """The problems of `split` ("train", "valid" or "test"), ordered by task id."""
    rows = read_rows(path) if path is not None else hub_rows()
    ids = SPLITS[split]
    problems = [to_problem(row, split, where) for where, row in rows if row["task_id"] in ids]
    if not problems:
        source = path if path is not None else HUB_ID
        raise ValueError(f"{source}: no MBPP rows with task_id {ids.start}-{ids.stop - 1} "
                         f"(split '{split}'); use the full original release")
    return sorted(problems, key=lambda p: int(p.id.split("/")[1]))


def to_problem(row: dict[str, Any], split: str, where: str) -> Problem:
    """One checked MBPP row as a Problem with the paper's public/private split for `split`."""
    task_id = _field(row, "task_id", int, where)
    text = _field(row, "text", str, where)
    code = _field(row, "code", str, where).replace("\r\n", "\n")
    tests = _tests(row, "test_list", where)
    challenge = _tests(row, "challenge_test_list", where) if row.get("challenge_test_list") else []
    setup = _field(row, "test_setup_code", str, where) if row.get("test_setup_code") else ""
    if not tests:
        raise RecordError(f"{where}: field 'test_list' is empty")
    setup = setup.replace("\r\n", "\n").strip()
    tests = [f"{setup}\n{t}" if setup else t for t in tests]
    challenge = [f"{setup}\n{t}" if setup else t for t in challenge]
    public, private = (tests, challenge) if split == "train" else (tests[:1], tests[1:] + challenge)
    return Problem(id=f"mbpp/{task_id}", prompt=text.strip(), entry_point=entry_point(code, tests[0]),
                   public_tests=public, private_tests=private, reference=code)


def entry_point(code: str, test: str) -> str:
    """The function of `code` that `test` calls (first call in the test to a function defined there)."""
    try:
        defined = [n.name for n in ast.parse(code).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    except SyntaxError:
        defined = re.findall(r"^def\s+(\w+)\s*\(", code, re.M)
    try:
        called = [n.func.id for n in ast.walk(ast.parse(test))
                  if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    except SyntaxError:
        called = re.findall(r"(\w+)\s*\(", test)
    for name in called:
        if name in defined:
            return name
    if defined:
        return defined[-1]
    raise RecordError(f"no function definition in the reference code: {code[:60]!r}")


def _field(row: dict[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in row:
        raise RecordError(f"{where}: field '{name}' is missing")
    value = row[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RecordError(f"{where}: field '{name}' must be {kind.__name__}, "
                          f"got {type(value).__name__}: {value!r:.40}")
    return value


def _tests(row: dict[str, Any], name: str, where: str) -> list[str]:
    value = row.get(name)
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise RecordError(f"{where}: field '{name}' must be a list of strings, got {value!r:.40}")
    return [t.replace("\r\n", "\n").strip() for t in value]


def read_rows(path: str) -> list[tuple[str, dict[str, Any]]]:
    """(where, row) for every row of a local copy; `where` names the file and line or row."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: MBPP file not found; set task.path to a copy of the original "
                                f"release ({', '.join(SUFFIXES)}) or task.path=null to download it from the Hub")
    name = file.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        rows = [(f"{file} row {i}", row) for i, row in enumerate(pq.read_table(file).to_pylist())]
    elif name.endswith((".jsonl", ".jsonl.gz")):
        rows = json_rows(file)
    else:
        raise ValueError(f"{file}: task.path must end in {', '.join(SUFFIXES)}")
    for where, row in rows:
        _field(row, "task_id", int, where)
    return rows


def hub_rows() -> list[tuple[str, dict[str, Any]]]:
    """Every row of the Hub copy (all its splits), online only."""
    import datasets

    hint = "download the original release and pass task.path=/path/to/mbpp.jsonl"
    if datasets.config.HF_HUB_OFFLINE:
        raise ConnectionError("MBPP: task.path is null and the Hub is off (HF_DATASETS_OFFLINE/HF_HUB_OFFLINE); "
                              + hint)
    try:
        splits = datasets.load_dataset(HUB_ID, "full")
    except Exception as e:  # offline, proxy, renamed repo: all end the same way for the user
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConnectionError(f"MBPP: could not load {HUB_ID} from the Hub ({reason}); {hint}") from e
    rows = []
    for name, split in splits.items():
        for i, row in enumerate(split):
            _field(row, "task_id", int, f"{HUB_ID} {name} row {i}")
            rows.append((f"{HUB_ID} {name} row {i}", row))
    return rows
