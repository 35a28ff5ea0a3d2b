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

from pathlib import Path

from mucode.records import Problem, RecordError, from_row, json_rows

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
    rows = json_rows(file)
    problems = [from_row(Problem, row, where) for where, row in rows]
    if not problems:
        raise ValueError(f"{file}: no problems in the file")
    seen: set[str] = set()
    for (where, _), problem in zip(rows, problems):
        if problem.id in seen:
            raise RecordError(f"{where}: field 'id' repeats '{problem.id}'; ids must be unique")
        if not problem.entry_point.strip():
            raise RecordError(f"{where}: field 'entry_point' is empty")
        seen.add(problem.id)
    return problems
