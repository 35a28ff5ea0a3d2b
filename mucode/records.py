"""The records every stage reads and writes: the contract between stages.

    Problem          a task: statement, entry point, public tests (shown, run for feedback),
                     private tests (never shown; the oracle), optional reference solution
    Turn             one generator turn: the state it saw, its response, the code, the feedback
    Episode          K of these per problem: up to T turns, stopping at the first public pass
    VerifierExample  (problem as seen at turn 1, candidate code) -> oracle label
    SFTExample       (state as chat messages) -> target code

Each list of records is stored as a Hugging Face `datasets` folder (`save_to_disk`), so users can
open any artifact with `datasets.load_from_disk`. JSONL import is for problems users bring.

    write_records(problems, "runs/x/problems")          # atomic: a folder appears whole or not at all
    problems = read_records("runs/x/problems", Problem)
    problems = read_jsonl("my_problems.jsonl", Problem)

A malformed row fails with one line naming the file, the row and the field (RecordError).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


class RecordError(ValueError):
    """A row that does not fit its record type; the message names file, row and field."""


@dataclass
class Problem:
    """A programming problem with public and private tests."""

    id: str
    """Unique id within its task suite (e.g. "embedded/test/17", "mbpp/11", "HumanEval/0")."""
    prompt: str
    """The statement shown to the model, without the tests (prompts.py appends the public tests)."""
    entry_point: str
    """Name of the function the tests call."""
    public_tests: list[str]
    """Python snippets shown to the model and run for feedback (usually `assert f(x) == y`)."""
    private_tests: list[str]
    """Python snippets never shown; with the public tests they decide correctness."""
    reference: str | None = None
    """A known-correct solution (a whole program), when the suite has one."""

    @property
    def tests(self) -> list[str]:
        """Public tests first, then private: the order the sandbox runs them in."""
        return self.public_tests + self.private_tests


@dataclass
class Turn:
    """One turn of an episode: the state the generator saw and what came of its answer."""

    state: list[Message]
    """Chat messages the generator was prompted with (turn 1: one user message)."""
    response: str
    """The raw generated text."""
    code: str
    """The code extracted from the response."""
    feedback: str
    """Public-test feedback shown at the next turn ("" when the public tests pass)."""
    public_pass: bool
    """The code passes every public test."""
    private_pass: bool
    """The code passes every private test (oracle = public_pass and private_pass)."""

    @property
    def correct(self) -> bool:
        """Oracle reward: passes public and private tests."""
        return self.public_pass and self.private_pass


@dataclass
class Episode:
    """K independent episodes per problem; each stops at the first public pass or after T turns."""

    problem_id: str
    sample: int
    """Index of this episode among the problem's K."""
    iteration: int
    """Expert iteration whose generator produced it (0 = base)."""
    turns: list[Turn]

    @property
    def correct(self) -> bool:
        """The final turn's code is correct."""
        return bool(self.turns) and self.turns[-1].correct


@dataclass
class VerifierExample:
    """One verifier training/eval row: the problem as the generator sees it at turn 1 + a code."""

    problem_id: str
    prompt: str
    """Turn-1 problem text: statement with its public tests."""
    code: str
    label: bool
    """Oracle: the code passes public and private tests."""
    iteration: int = 0


@dataclass
class SFTExample:
    """A generator training row: the state as chat messages -> the target code."""

    problem_id: str
    messages: list[Message]
    """The state s_t: every message before the final assistant turn (ends with a user turn)."""
    target: str
    """The code the final assistant turn should contain."""
    iteration: int = 0


R = TypeVar("R")


def to_row(record: Any) -> dict:
    """Plain dict of a record (nested dataclasses become dicts; a dict is its own row)."""
    return record if isinstance(record, dict) else dataclasses.asdict(record)


def from_row(cls: type[R], row: dict, where: str) -> R:
    """Build `cls` from a dict, checking every field's type; `where` names file and row."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in row:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecordError(f"{where}: field '{f.name}' is missing")
            continue
        kwargs[f.name] = _convert(hints[f.name], row[f.name], f"{where}: field '{f.name}'")
    return cls(**kwargs)


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`, converting nested dataclasses."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _convert(next(a for a in args if a is not type(None)), value, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise RecordError(f"{where} must be an object, got {type(value).__name__}")
        return from_row(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise RecordError(f"{where} must be a list, got {type(value).__name__}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise RecordError(f"{where} must be an object of strings")
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise RecordError(f"{where} must be {tp.__name__}, got {type(value).__name__}: {value!r:.40}")
    return value


def write_records(records: list[Any], path: str | Path, cls: type | None = None) -> Path:
    """Save records as a `datasets` folder, atomically (written beside, then renamed).

    The schema comes from the record class, so an empty list still writes a typed dataset.
    """
    from datasets import Dataset, disable_progress_bars

    from mucode.artifacts import atomic_dir

    assert records or cls is not None, "write_records needs cls to write an empty list"
    features = features_of(cls or type(records[0]))
    rows = [to_row(r) for r in records]
    columns = {name: [row[name] for row in rows] for name in features}
    disable_progress_bars()
    with atomic_dir(path) as tmp:
        Dataset.from_dict(columns, features=features).save_to_disk(str(tmp), num_shards=1)
    return Path(path)


def features_of(cls: type) -> Any:
    """The `datasets.Features` schema of a record class."""
    from datasets import Features

    hints = typing.get_type_hints(cls)
    return Features({f.name: _feature(hints[f.name]) for f in dataclasses.fields(cls)})


def _feature(tp: Any) -> Any:
    from datasets import List, Value

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _feature(next(a for a in args if a is not type(None)))
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return {f.name: _feature(hints[f.name]) for f in dataclasses.fields(tp)}
    if origin is list:
        return List(_feature(args[0]))
    if origin is dict:  # a chat message
        return {"role": Value("string"), "content": Value("string")}
    return Value({str: "string", bool: "bool", int: "int64", float: "float64"}[tp])


def read_records(path: str | Path, cls: type[R]) -> list[R]:
    """Load a `datasets` folder written by write_records (or by a user) as records of `cls`."""
    from datasets import load_from_disk

    path = Path(path)
    if not (path / "dataset_info.json").exists() and not (path / "state.json").exists():
        raise FileNotFoundError(f"{path}: no dataset here (expected a folder written by write_records)")
    ds = load_from_disk(str(path))
    return [from_row(cls, row, f"{path} row {i}") for i, row in enumerate(ds)]


def json_rows(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, object) for every non-blank line of a .jsonl or .jsonl.gz file.

    Lines split on "\n" only (MBPP's rows end in "\r\n" and hold "\r" in their text); `where`
    names the file and line ("data.jsonl line 7") for error messages.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if path.name.endswith(".gz") else raw).decode("utf-8")
    rows = []
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise RecordError(f"{path} line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise RecordError(f"{path} line {n}: expected a JSON object")
        rows.append((f"{path} line {n}", row))
    return rows


def read_jsonl(path: str | Path, cls: type[R]) -> list[R]:
    """Read one record per line from a JSONL (or .jsonl.gz) file; blank lines are skipped."""
    return [from_row(cls, row, where) for where, row in json_rows(path)]


def write_jsonl(records: list[Any], path: str | Path) -> Path:
    """Write records (dataclasses or dicts) as JSONL, atomically."""
    from mucode.artifacts import atomic_write_text

    text = "".join(json.dumps(to_row(r), ensure_ascii=False) + "\n" for r in records)
    return atomic_write_text(path, text)


__all__ = [
    "Episode", "Message", "Problem", "RecordError", "SFTExample", "Turn", "VerifierExample",
    "from_row", "json_rows", "read_jsonl", "read_records", "to_row", "write_jsonl", "write_records",
]
