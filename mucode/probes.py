"""Probe calls for execution clustering, and a candidate's outputs on them.

The pt+cluster selector (mucode.search) groups the candidates of one turn by what they compute. What they
compute is read on probe calls made from the problem's PUBLIC tests only; private tests are never read:
  - every call of the entry point in a public test (`f(3)` in `assert f(3) == 4`, `f(x)` in
    `assert set(f(x)) == {1}`), then
  - up to `extra` variants of those calls, one literal argument changed at a time (an int +1 / -1, a float
    +1, a bool negated, a str, list or tuple reversed or without its last item), taken round robin over the
    public calls.
Candidates that pass the public tests agree on the public calls up to Python's == (what the sandbox
compares with: 1 and True both pass `== 1` but read differently), so mostly the variants split them:
AlphaCode and CodeT cluster on generated inputs; here the inputs are derived from the public ones and
carry no expected output.

Each probe runs as a public test `assert CALL == SENTINEL` (a HumanEval test's helper prelude is kept), so
the sandbox reports the call's value ("f(4) returned 5") or its exception in ExecResult.test_feedback. A
candidate's signature is that text per probe, without the program's line numbers (the same behaviour
written on other lines is the same output).

    tests = probe_tests(problem, extra=8)
    result = sandbox.run_batch([Job(code, tests, entry_point=problem.entry_point)])[0]  # all public
    signature = outputs(result)

Limits: values are compared through their repr clipped at sandbox.max_feedback_chars; a probe left
unfinished by a time or memory limit reads as "not run", and the limit is part of the signature; a call
whose arguments are not literals is probed as written, with no variants.
"""

from __future__ import annotations

import ast
import re

from mucode.records import Problem
from mucode.sandbox import ExecResult, Status

SENTINEL = "<mucode probe>"
"""What every probe compares its call's value with: the sandbox then reports the value."""
_LINE = re.compile(r" \(line \d+\)")


def probe_tests(problem: Problem, extra: int) -> list[str]:
    """Probe tests for `problem`: its public calls, then up to `extra` variants (from public tests only)."""
    calls: list[tuple[str, ast.Call]] = []  # (prelude, call) per entry-point call of a public test
    for test in problem.public_tests:
        try:
            module = ast.parse(test)
        except SyntaxError:
            continue
        prelude = "\n".join(ast.unparse(s) for s in module.body if not isinstance(s, ast.Assert))
        for stmt in module.body:
            if isinstance(stmt, ast.Assert):
                calls += [(prelude, c) for c in _entry_calls(stmt.test, problem.entry_point)]
    public = list(dict.fromkeys(_probe(prelude, call) for prelude, call in calls))
    variants = [[_probe(prelude, v) for v in _variants(call)] for prelude, call in calls]
    round_robin = [v[j] for j in range(max(map(len, variants), default=0)) for v in variants if j < len(v)]
    return public + [v for v in dict.fromkeys(round_robin) if v not in public][:extra]


def outputs(result: ExecResult) -> tuple[str, ...]:
    """A candidate's signature on its probe job: how the job ended, then each probe's value or exception
    ("=" when the call returned SENTINEL, "" when the probe did not run), line numbers removed."""
    per_probe = ["=" if ok else _LINE.sub("", text) for ok, text in zip(result.tests_passed, result.test_feedback)]
    load = _LINE.sub("", result.feedback) if result.status is Status.ERROR else ""
    return (result.status.value, load, *per_probe)


def _entry_calls(node: ast.AST, entry_point: str) -> list[ast.Call]:
    """The outermost calls of `entry_point` in an expression, in source order."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == entry_point:
        return [node]
    return [c for child in ast.iter_child_nodes(node) for c in _entry_calls(child, entry_point)]


def _probe(prelude: str, call: ast.Call) -> str:
    line = f"assert {ast.unparse(call)} == {SENTINEL!r}"
    return f"{prelude}\n{line}" if prelude else line


def _variants(call: ast.Call) -> list[ast.Call]:
    """`call` with one literal argument changed, for each argument and each change (see the module doc)."""
    out = []
    for i, arg in enumerate(call.args):
        for new in _changes(arg):
            out.append(ast.Call(func=call.func, args=[*call.args[:i], new, *call.args[i + 1:]], keywords=call.keywords))
    for i, kw in enumerate(call.keywords):
        for new in _changes(kw.value):
            keywords = [*call.keywords[:i], ast.keyword(arg=kw.arg, value=new), *call.keywords[i + 1:]]
            out.append(ast.Call(func=call.func, args=call.args, keywords=keywords))
    return out


def _changes(node: ast.expr) -> list[ast.expr]:
    """The changed literals for one argument (none if it is not a literal)."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return []
    if isinstance(value, bool):
        new = [not value]
    elif isinstance(value, int):
        new = [value + 1, value - 1]
    elif isinstance(value, float):
        new = [value + 1.0]
    elif isinstance(value, (str, list, tuple)) and value:
        new = [v for v in (value[::-1], value[:-1]) if v != value]
    else:
        new = []
    return [ast.parse(repr(v), mode="eval").body for v in new]
