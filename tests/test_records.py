import json

import pytest

from mucode.records import (
    Episode, Problem, RecordError, SFTExample, Turn, VerifierExample, read_jsonl, read_records,
    write_jsonl, write_records,
)

PROBLEM = Problem("p/1", "Write f.", "f", ["assert f(1) == 2"], ["assert f(2) == 3"], "def f(x):\n    return x + 1")


def _episode() -> Episode:
    turn = Turn([{"role": "user", "content": "hi"}], "```python\nx\n```", "x", "Failed", False, True)
    return Episode("p/1", sample=2, iteration=1, turns=[turn, turn])


@pytest.mark.parametrize("records", [
    [PROBLEM, Problem("p/2", "g", "g", [], ["assert g() == 1"])],
    [_episode()],
    [VerifierExample("p/1", "text", "code", True, 2)],
    [SFTExample("p/1", [{"role": "user", "content": "u"}], "code")],
])
def test_roundtrip_as_datasets(tmp_path, records):
    write_records(records, tmp_path / "d")
    assert read_records(tmp_path / "d", type(records[0])) == records


def test_empty_list_keeps_schema(tmp_path):
    write_records([], tmp_path / "e", Episode)
    assert read_records(tmp_path / "e", Episode) == []


def test_written_folder_opens_with_datasets(tmp_path):
    from datasets import load_from_disk

    write_records([_episode()], tmp_path / "d")
    row = load_from_disk(str(tmp_path / "d"))[0]
    assert row["turns"][0]["state"] == [{"role": "user", "content": "hi"}]


def test_oracle_properties():
    ep = _episode()
    assert not ep.turns[0].correct and not ep.correct
    ep.turns[-1].public_pass = True
    assert ep.correct


def test_jsonl_roundtrip(tmp_path):
    write_jsonl([PROBLEM], tmp_path / "p.jsonl")
    assert read_jsonl(tmp_path / "p.jsonl", Problem) == [PROBLEM]


@pytest.mark.parametrize("row, message", [
    ('{"id": "a", "prompt": "p", "entry_point": 3, "public_tests": [], "private_tests": []}',
     "line 2: field 'entry_point' must be str"),
    ('{"id": "a", "prompt": "p", "public_tests": [], "private_tests": []}', "line 2: field 'entry_point' is missing"),
    ('{"id": "a", "prompt": "p", "entry_point": "f", "public_tests": ["ok", 1], "private_tests": []}',
     "line 2: field 'public_tests'[1] must be str"),
    ('{"id": "a", ', "line 2: not valid JSON"),
    ('[1, 2]', "line 2: expected a JSON object"),
])
def test_malformed_row_names_file_line_and_field(tmp_path, row, message):
    good = json.dumps({"id": "ok", "prompt": "p", "entry_point": "f", "public_tests": [], "private_tests": []})
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n" + row + "\n")
    with pytest.raises(RecordError) as e:
        read_jsonl(path, Problem)
    assert str(e.value).startswith(f"{path} {message}")
    assert "\n" not in str(e.value)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl: file not found"):
        read_jsonl(tmp_path / "nope.jsonl", Problem)
    with pytest.raises(FileNotFoundError, match="no dataset here"):
        read_records(tmp_path, Problem)


def test_malformed_dataset_row_names_row(tmp_path):
    from datasets import Dataset

    Dataset.from_dict({"id": ["a"], "prompt": ["p"], "entry_point": [None],
                       "public_tests": [[]], "private_tests": [[]]}).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(RecordError, match=r"d row 0: field 'entry_point' must be str"):
        read_records(tmp_path / "d", Problem)
