"""mucode.sandbox.cli: the mucode-exec command on JSONL rows (runs the real sandbox, one worker)."""

from __future__ import annotations

import io
import json
import os

import pytest

from mucode.sandbox.cli import main

pytestmark = [pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux only"),
              pytest.mark.timeout(120)]
OK = "def f():\n    return 1\n"


def test_command_line_runs_rows_and_reports_malformed_lines(tmp_path, capsys, monkeypatch):
    rows = [{"id": "a", "program": OK, "tests": ["assert f() == 1"]},
            "not json",
            {"id": "b", "program": OK},
            {"id": "c", "program": OK, "tests": "assert f() == 1"},
            {"id": 4, "program": "def f():\n    return 2\n", "tests": ["assert f() == 1"],
             "timeout_s": 2, "n_public": 1},
            {"id": "e", "program": "def sum(a, b):\n    return a - b\n", "tests": ["assert sum(3, 1) == 2"],
             "entry_point": "sum"},  # a builtin's name, the program's for the tests as entry point
            {"id": "f", "program": OK, "tests": [], "entry_point": "no name"}]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out.jsonl"
    assert main([str(source), "-o", str(out), "--workers", "1", "--timeout", "2"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert [e for e in err if e.startswith("mucode-exec: line")] == [
        "mucode-exec: line 2: not valid JSON (Expecting value)",
        "mucode-exec: line 3: missing field 'tests'",
        "mucode-exec: line 4: field 'tests' must be a list of strings",
        "mucode-exec: line 7: field 'entry_point' must be a Python name, got 'no name'"]
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["status"], r["passed"], r["tests_total"]) for r in results] == [
        ("a", "passed", True, 1), (4, "failed", False, 1), ("e", "passed", True, 1)]
    assert set(results[0]) == {"id", "status", "passed", "tests_passed", "tests_total",
                               "feedback", "duration_s"}
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(rows[0]) + "\n"))
    assert main(["--no-progress", "--workers", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True
