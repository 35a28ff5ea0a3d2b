"""Mutants of hand-written codes: one edit each, deterministic per seed; labelled by running the tests."""

from __future__ import annotations

import ast

import pytest

from mucode.mutants import OPERATORS, mutant_examples, mutants
from mucode.records import Problem, VerifierExample
from mucode.sandbox import Sandbox, SandboxConfig

CODES = [
    "def f(x):\n    return x + 3",
    "def g(xs):\n    return max(xs[::2]) if len(xs) > 1 else 0",
    'def h(xs):  # keep "this"\n    total = 0\n    for i in range(len(xs)):\n'
    "        if xs[i] >= 2 and not xs[i] in (3, 4):\n            total += xs[i] * 2\n"
    "    return sorted([total, -1])[::-1]",
    "def k(a, b):\n    return (a) ** 2 if a < b <= 10 or a is not None else 0 ** b / 2",
]


def _changed(a: str, b: str) -> tuple[str, str]:
    """The spans of a and b between their common prefix and common suffix."""
    p = 0
    while p < min(len(a), len(b)) and a[p] == b[p]:
        p += 1
    s = 0
    while s < min(len(a), len(b)) - p and a[-1 - s] == b[-1 - s]:
        s += 1
    return a[p:len(a) - s], b[p:len(b) - s]


def test_every_mutant_of_the_simplest_code_by_hand():
    found = {m.code.splitlines()[1].strip(): m.operator for m in mutants(CODES[0], 100)}
    assert found == {"return x - 3": "binop", "return x + 4": "constant", "return x + 2": "constant"}


def test_all_mutants_of_a_code_by_hand():
    found = {m.code.removeprefix("def g(xs):\n    return "): m.operator for m in mutants(CODES[1], 100)}
    assert found == {
        "min(xs[::2]) if len(xs) > 1 else 0": "minmax", "max(xs[::-2]) if len(xs) > 1 else 0": "step",
        "max(xs[::3]) if len(xs) > 1 else 0": "constant", "max(xs[::1]) if len(xs) > 1 else 0": "constant",
        "max(xs[::2]) if len(xs) >= 1 else 0": "compare", "max(xs[::2]) if len(xs) > 2 else 0": "constant",
        "max(xs[::2]) if len(xs) > 0 else 0": "constant", "max(xs[::2]) if len(xs) > 1 else 1": "constant",
        "max(xs[::2]) if len(xs) > 1 else -1": "constant",
    }


@pytest.mark.parametrize("code", CODES)
def test_mutants_are_one_edit_from_their_source_and_keep_its_text(code):
    found = mutants(code, 100, seed=0)
    assert len(found) >= 3 and len({m.code for m in found}) == len(found)
    source = ast.dump(ast.parse(code))
    for m in found:
        assert m.operator in OPERATORS and ast.dump(ast.parse(m.code)) != source
        old, new = _changed(code, m.code)
        # one span of at most one operator, literal or name, save `and` <-> `or` (every one of that expression)
        assert len(old) + len(new) <= 16 or m.operator == "boolop", (old, new, m)
        assert code.count("\n") == m.code.count("\n") and ('keep "this"' in m.code) == ('keep "this"' in code)


def test_mutants_cover_the_operators_of_the_brief():
    operators = {m.operator for code in CODES for m in mutants(code, 100)}
    assert operators == {"constant", "binop", "compare", "boolop", "not", "negation", "range", "minmax", "sort",
                         "step"}
    h = {m.code for m in mutants(CODES[2], 100)}
    assert {CODES[2].replace(a, b, 1) for a, b in [
        ("range(len(xs))", "range(len(xs) + 1)"), ("range(len(xs))", "range(len(xs) - 1)"),
        ("total += ", "total -= "), ("and not xs[i] in", "and xs[i] in"), ("xs[i] in (", "xs[i] not in ("),
        (">= 2 and", ">= 2 or"), ("sorted([total, -1])", "sorted([total, -1], reverse=True)"),
        ("[::-1]", "[::1]"), ("xs[i] * 2", "xs[i] // 2")]} <= h
    # a literal that becomes negative where precedence would change it is parenthesised: 0 ** b -> (-1) ** b
    assert CODES[3].replace("0 ** b", "(-1) ** b") in {m.code for m in mutants(CODES[3], 100)}


def test_mutants_are_deterministic_per_seed_and_capped():
    assert mutants(CODES[2], 5, seed=0) == mutants(CODES[2], 5, seed=0)
    assert mutants(CODES[2], 5, seed=0) != mutants(CODES[2], 5, seed=1)
    assert len(mutants(CODES[2], 5)) == 5 and mutants(CODES[2], 0) == []
    assert {m.code for m in mutants(CODES[2], 5, seed=3)} <= {m.code for m in mutants(CODES[2], 100, seed=7)}
    assert mutants("def f(:", 4) == [] and mutants("x = 'a'", 4) == []


def test_mutants_are_labelled_by_the_public_and_private_tests():
    """max(x, 0) + 3 against f(0) == 3 (public) and f(1) == 4 (private): min(x, 0) + 3 passes the public
    test and fails the private one; max(x, -1) + 3 still passes both, so it is a positive."""
    problem = Problem("p", "Add 3 to x, at least 0.", "f", ["assert f(0) == 3"], ["assert f(1) == 4"])
    source = "def f(x):\n    return max(x, 0) + 3"
    examples = [VerifierExample("p", "Add 3.", source, True, 1),
                VerifierExample("p", "Add 3.", "def f(x):\n    return max(x, 0) + 4", False, 1),  # already known
                VerifierExample("p", "Add 3.", "def f(x):\n    return x", False, 1)]  # wrong: not mutated
    with Sandbox(SandboxConfig(timeout_s=2.0, workers=1)) as sandbox:
        added, counts = mutant_examples(examples, {"p": problem}, limit=100, seed=0, sandbox=sandbox)
    labels = {ex.code.removeprefix("def f(x):\n    return "): ex.label for ex in added}
    assert labels == {"min(x, 0) + 3": False, "max(x, 1) + 3": False, "max(x, -1) + 3": True,
                      "max(x, 0) + 2": False, "max(x, 0) - 3": False}
    assert all((ex.problem_id, ex.prompt, ex.iteration) == ("p", "Add 3.", 1) for ex in added)
    assert counts == {"sources": 1, "made": 6, "run": 5, "failed": 4, "passed": 1,
                      "run_by_operator": {"minmax": 1, "constant": 3, "binop": 1},
                      "failed_by_operator": {"minmax": 1, "constant": 2, "binop": 1}}
