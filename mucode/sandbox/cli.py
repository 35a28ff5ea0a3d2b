"""``mucode-exec``: run JSONL rows of programs and tests through the sandbox. Parent side.

Run it::

    mucode-exec samples.jsonl -o results.jsonl --timeout 3 --workers 2   # or python -m mucode.sandbox
    # in:  {"id", "program", "tests", optional "timeout_s", "n_public", "entry_point"} per line
    # out: {"id", "status", "passed", "tests_passed", "tests_total", "feedback", "duration_s"}

A malformed row is reported on stderr with its line number and skipped (exit status 1); the
other rows still run. Exit status 2 when the sandbox cannot run at all (bad option, unreadable
input, no usable isolation).
"""

from __future__ import annotations

import argparse
import json
import sys

from mucode.artifacts import atomic_write_text
from mucode.sandbox.job import IsolationMode, Job, SandboxConfig, check_job
from mucode.sandbox.pool import Sandbox, SandboxError

_DESCRIPTION = "Run untrusted generated programs against tests: limits, isolation, honest verdicts, feedback."


def _parse_row(line: str) -> tuple[object, Job]:
    """One JSONL row -> (id, Job); ValueError naming the field otherwise."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg})") from None
    if not isinstance(row, dict):
        raise ValueError("a row must be a JSON object")
    for name in ("id", "program", "tests"):
        if name not in row:
            raise ValueError(f"missing field '{name}'")
    if not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool):
        raise ValueError("field 'id' must be a string or an integer")
    job = Job(row["program"], row["tests"], row.get("n_public"), row.get("timeout_s"), row.get("entry_point"))
    check_job(job)
    return row["id"], job


def _read_rows(lines) -> tuple[list[tuple[object, Job]], int]:
    rows, bad = [], 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(_parse_row(line))
        except ValueError as e:
            bad += 1
            print(f"mucode-exec: line {number}: {e}", file=sys.stderr)
    return rows, bad


def main(argv: list[str] | None = None) -> int:
    """``mucode-exec``: run JSONL rows of programs and tests; exit 1 if a row was malformed."""
    parser = argparse.ArgumentParser(prog="mucode-exec", description=_DESCRIPTION)
    parser.add_argument("input", nargs="?", default="-", help="JSONL rows (default: stdin)")
    parser.add_argument("-o", "--output", help="results file, written atomically (default: stdout)")
    parser.add_argument("--timeout", type=float, default=SandboxConfig.timeout_s, help="seconds per job")
    parser.add_argument("--memory-mb", type=int, default=SandboxConfig.memory_mb)
    parser.add_argument("--workers", type=int, default=0, help="0 = all usable cores")
    parser.add_argument("--isolation", default="auto", choices=[m.value for m in IsolationMode])
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)
    try:
        config = SandboxConfig(timeout_s=args.timeout, memory_mb=args.memory_mb,
                               workers=args.workers, isolation=args.isolation)
        try:
            stream = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")
        except OSError as e:
            raise OSError(f"cannot read {args.input}: {e.strerror}") from None
        with stream:
            rows, bad = _read_rows(stream)
        with Sandbox(config) as sandbox:
            results = sandbox.run_batch([job for _, job in rows],
                                        progress=not args.no_progress and len(rows) > 1)
    except (ValueError, OSError, SandboxError) as e:
        print(f"mucode-exec: {e}", file=sys.stderr)
        return 2
    text = "".join(json.dumps({
        "id": key, "status": r.status.value, "passed": r.passed, "tests_passed": r.tests_passed,
        "tests_total": len(job.tests), "feedback": r.feedback, "duration_s": r.duration_s}) + "\n"
        for (key, job), r in zip(rows, results))
    if args.output:
        atomic_write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return 1 if bad else 0
