"""Problems a user brings: one `mucode.records.Problem` per JSONL line.

Each line holds the Problem fields:

    {"id": "mine/1", "prompt": "Write a function add(a, b) that returns a + b.", "entry_point": "add",
     "public_tests": ["assert add(1, 2) == 3"], "private_tests": ["assert add(-1, 1) == 0"],
     "reference": null}

`prompt` is the statement without tests (the prompt builder appends the public tests); tests are
Python snippets run after the candidate program, best written as `assert CALL == LITERAL` so the
feedback can say what the call returned.

    task=jsonl task.path=problems.jsonl    one file: one split, `test`
    task=jsonl task.path=problems/         a folder of train.jsonl, valid.jsonl, test.jsonl
                                           (the splits are the files present)

Limits: ids must be unique within a file; nothing checks that splits share no problem.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from mucode.records import Problem, RecordError, read_jsonl

SPLITS = ("train", "valid", "test")


def split_names(path: str) -> list[str]:
    """`test` for a single file; for a folder, the splits whose `<split>.jsonl` exists."""
    folder = Path(path)
    if not folder.is_dir():
        return ["test"]
    names = [s for s in SPLITS if (folder / f"{s}.jsonl").is_file()]
    if not names:
        raise FileNotFoundError(f"{folder}: no {', '.join(s + '.jsonl' for s in SPLITS)} in this folder; "
                                "add at least test.jsonl or point task.path at one file")
    return names


def load(path: str, split: str) -> list[Problem]:
    """The problems of `split`, in file order (a single file is the split `test`)."""
    file = Path(path) / f"{split}.jsonl" if Path(path).is_dir() else Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: problems file not found; set task.path to a JSONL file of "
                                "problems (one Problem per line, see mucode.tasks.jsonl)")
    problems = read_jsonl(file, Problem)
    if not problems:
        raise ValueError(f"{file}: no problems in the file")
    with file.open(encoding="utf-8") as f:  # the same line numbering as read_jsonl
        lines = [n for n, line in enumerate(f, start=1) if line.strip()]
    seen: set[str] = set()
    for n, problem in zip(lines, problems):
        if problem.id in seen:
            raise RecordError(f"{file} line {n}: field 'id' repeats '{problem.id}'; ids must be unique")
        if not problem.entry_point.strip():
            raise RecordError(f"{file} line {n}: field 'entry_point' is empty")
        seen.add(problem.id)
    return problems


def json_rows(file: Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, object) for every non-blank line of a .jsonl or .jsonl.gz file.

    Lines split on "\n" only (MBPP's rows end in "\r\n" and hold "\r" in their text); `where`
    names the file and line for error messages.
    """
    raw = file.read_bytes()
    text = (gzip.decompress(raw) if file.name.endswith(".gz") else raw).decode("utf-8")
    rows = []
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise RecordError(f"{file} line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise RecordError(f"{file} line {n}: expected a JSON object")
        rows.append((f"{file} line {n}", row))
    return rows
