"""Chains of operations, the stuff embedded-suite problems are made of (mucode.tasks.embedded).

A Phrase is one operation as a statement words it, with every code expression it can mean (its
readings, most likely first); a Chain is 1-3 drawn phrases with their constants, which gives the
statement, the program of each reading and, through the compiled readings, their outputs.
`draw_draft` draws a chain, its intended reading (from the skewed PRIOR), N_INPUTS distinct inputs
and 1-2 public tests, and keeps it only if the reference does not raise, has >= 2 distinct outputs,
every step changes some output, not every public output is trivial ([], 0, False), and every other
reading fails at least one public test (inputs that can tell the readings apart are moved to the
front). Outputs compare with exact type equality (`same`). Pure and seeded: the caller's
random.Random is the only source of randomness.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PRIOR = {1: (1.0,), 2: (0.6, 0.4), 3: (0.5, 0.3, 0.2)}
"""Prior over a phrase's readings, in the order they are listed (the first is the mode)."""
N_INPUTS = 7
TRIVIAL = ([], 0, False)


# ---------------------------------------------------------------------------------------------
# Phrases: a statement fragment and its readings (code expressions, in prior order).


@dataclass(frozen=True)
class Phrase:
    """One operation as the statement words it, with every code expression it can mean."""

    text: str
    """Statement fragment; `{k}` is the constant."""
    readings: tuple[str, ...]
    """Python expressions over `x` or `xs` (and `{k}`), most likely reading first."""
    k: tuple[int, int] | None
    """Inclusive range of the constant, or None."""
    weight: float = 1.0
    """Relative frequency among the phrases of its kind."""
    fns: tuple[Callable[[Any, int], Any], ...] = field(init=False, repr=False, compare=False)
    """The readings compiled once as `lambda x, k: ...`: the generator's fast checker, built from
    the very strings the reference code is made of, so code and semantics cannot drift apart."""

    def __post_init__(self) -> None:
        arg = "xs" if "xs" in self.readings[0] else "x"
        fns = tuple(eval(f"lambda {arg}, k: " + r.replace("{k}", "k")) for r in self.readings)
        object.__setattr__(self, "fns", fns)


K, SLICE = (2, 9), (1, 4)
_AMB = 0.8  # draw weight of ambiguous phrases: puts about half the problems at >= 2 readings


def _phrases(rows: list[tuple[str, tuple[int, int] | None, list[str]]]) -> list[Phrase]:
    return [Phrase(text, tuple(readings), k, _AMB if len(readings) > 1 else 1.0)
            for text, k, readings in rows]


INT_STEPS = _phrases([
    ("add {k} to x", K, ["x + {k}"]),
    ("subtract {k} from x", K, ["x - {k}"]),
    ("multiply x by {k}", K, ["x * {k}"]),
    ("square x", None, ["x * x"]),
    ("negate x", None, ["-x"]),
    ("divide x by {k}, rounding down", K, ["x // {k}"]),
    ("combine x with {k}", K, ["x + {k}", "x * {k}", "x - {k}"]),
    ("shift x by {k}", K, ["x + {k}", "x - {k}"]),
    ("scale x by {k}", K, ["x * {k}", "x // {k}"]),
])
INT_FINALS = _phrases([
    ("return the result", None, ["x"]),
    ("return x modulo {k}", K, ["x % {k}"]),
    ("return the absolute value of x", None, ["abs(x)"]),
    ("return whether x is even", None, ["x % 2 == 0"]),
    ("return the sum of the integers from 1 to x inclusive", None, ["sum(range(1, x + 1))"]),
    ("return the sum of the integers from 1 to x", None, ["sum(range(1, x + 1))", "sum(range(1, x))"]),
    ("return whether x is greater than {k}", K, ["x > {k}"]),
    ("return whether x is at least {k}", K, ["x >= {k}"]),
    ("return whether x exceeds {k}", K, ["x > {k}", "x >= {k}"]),
])
LIST_STEPS = _phrases([
    ("add {k} to each element", K, ["[v + {k} for v in xs]"]),
    ("subtract {k} from each element", K, ["[v - {k} for v in xs]"]),
    ("multiply each element by {k}", K, ["[v * {k} for v in xs]"]),
    ("square each element", None, ["[v * v for v in xs]"]),
    ("combine each element with {k}", K,
     ["[v + {k} for v in xs]", "[v * {k} for v in xs]", "[v - {k} for v in xs]"]),
    ("keep the elements greater than {k}", K, ["[v for v in xs if v > {k}]"]),
    ("keep the elements less than {k}", K, ["[v for v in xs if v < {k}]"]),
    ("keep the elements that are at least {k}", K, ["[v for v in xs if v >= {k}]"]),
    ("keep the elements that are at most {k}", K, ["[v for v in xs if v <= {k}]"]),
    ("keep the elements above {k}", K, ["[v for v in xs if v > {k}]", "[v for v in xs if v >= {k}]"]),
    ("keep the elements below {k}", K, ["[v for v in xs if v < {k}]", "[v for v in xs if v <= {k}]"]),
    ("keep the even elements", None, ["[v for v in xs if v % 2 == 0]"]),
    ("keep the odd elements", None, ["[v for v in xs if v % 2 == 1]"]),
    ("sort the elements in ascending order", None, ["sorted(xs)"]),
    ("sort the elements in descending order", None, ["sorted(xs, reverse=True)"]),
    ("sort the elements", None, ["sorted(xs)", "sorted(xs, reverse=True)"]),
    ("keep the first {k} elements", SLICE, ["xs[:{k}]"]),
    ("drop the first {k} elements", SLICE, ["xs[{k}:]"]),
    ("take the elements up to index {k}", SLICE, ["xs[:{k}]", "xs[:{k} + 1]"]),
])
LIST_FINALS = _phrases([
    ("return the resulting list", None, ["xs"]),
    ("return the sum of the elements", None, ["sum(xs)"]),
    ("return the number of elements", None, ["len(xs)"]),
    ("return the largest element", None, ["max(xs)"]),
    ("return the smallest element", None, ["min(xs)"]),
    ("return the first element", None, ["xs[0]"]),
    ("return the last element", None, ["xs[-1]"]),
    ("return the extreme element", None, ["max(xs)", "min(xs)"]),
    ("return the end element", None, ["xs[0]", "xs[-1]"]),
])
STEP_COUNTS = ((1, 2, 3), (0.03, 0.7, 0.27))
"""Operations per chain (return included) and how often each count is drawn."""


# ---------------------------------------------------------------------------------------------
# Chains: a drawn sequence of phrases, its statement, its programs, its fast (lambda) semantics.


@dataclass(frozen=True)
class Chain:
    """The operations of one problem, with their constants."""

    arg: str
    """"x" (an int) or "xs" (a list of ints)."""
    phrases: tuple[Phrase, ...]
    ks: tuple[int | None, ...]

    def statement(self, name: str) -> str:
        parts = [p.text.format(k=k) for p, k in zip(self.phrases, self.ks)]
        body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + ", then " + parts[-1]
        return f"Write a function {name}({self.arg}) that will {body}."

    def program(self, name: str, reading: tuple[int, ...]) -> str:
        """The code of one reading: one line per step."""
        exprs = [p.readings[r].format(k=k) for p, r, k in zip(self.phrases, reading, self.ks)]
        lines = [f"def {name}({self.arg}):"]
        lines += [f"    {self.arg} = {e}" for e in exprs[:-1]]
        lines.append(f"    return {exprs[-1]}")
        return "\n".join(lines)

    def readings(self) -> list[tuple[int, ...]]:
        """Every reading of the statement: one reading index per phrase."""
        return list(itertools.product(*(range(len(p.readings)) for p in self.phrases)))

    def outputs(self, reading: tuple[int, ...], inputs: list, skip: int = -1) -> list:
        """Outputs on each input (RAISED where it raises), optionally without step `skip`."""
        out = []
        for value in inputs:
            try:
                for i, (p, r, k) in enumerate(zip(self.phrases, reading, self.ks)):
                    if i != skip:
                        value = p.fns[r](value, k)
                out.append(value)
            except Exception:
                out.append(RAISED)
        return out


RAISED = object()
"""Stands for "this reading raised on this input"."""


def _draw_chain(rng: random.Random) -> Chain:
    arg = "x" if rng.random() < 1 / 3 else "xs"
    steps, finals = (INT_STEPS, INT_FINALS) if arg == "x" else (LIST_STEPS, LIST_FINALS)
    n = rng.choices(*STEP_COUNTS)[0]
    chosen: list[Phrase] = []
    for _ in range(n - 1):
        options = [p for p in steps if not chosen or p.text != chosen[-1].text]
        chosen.append(rng.choices(options, weights=[p.weight for p in options])[0])
    # "return the result" alone would be the identity
    options = [p for p in finals if n > 1 or p.readings[0] != arg]
    chosen.append(rng.choices(options, weights=[p.weight for p in options])[0])
    ks = tuple(rng.randint(*p.k) if p.k else None for p in chosen)
    return Chain(arg, tuple(chosen), ks)


def _draw_inputs(rng: random.Random, arg: str) -> list:
    """N_INPUTS distinct inputs: ints in -5..20, or lists of 3-7 ints in -3..12."""
    if arg == "x":
        return rng.sample(range(-5, 21), N_INPUTS)
    seen: set[tuple[int, ...]] = set()
    out = []
    while len(out) < N_INPUTS:
        xs = [rng.randint(-3, 12) for _ in range(rng.randint(3, 7))]
        if tuple(xs) not in seen:
            seen.add(tuple(xs))
            out.append(xs)
    return out


@dataclass(frozen=True)
class Draft:
    """An accepted chain with its intended reading, inputs and outputs (not yet a Problem)."""

    chain: Chain
    reading: tuple[int, ...]
    inputs: list
    outputs: list
    n_public: int
    wrong: tuple[tuple[int, ...], ...]
    """Every other reading; each fails at least one public test."""


def draw_draft(rng: random.Random) -> Draft | None:
    """Draw one candidate; None if it breaks a rule (see the module docstring)."""
    chain = _draw_chain(rng)
    reading = tuple(rng.choices(range(len(p.readings)), weights=PRIOR[len(p.readings)])[0]
                    for p in chain.phrases)
    inputs = _draw_inputs(rng, chain.arg)
    n_public = rng.randint(1, 2)
    outputs = {r: chain.outputs(r, inputs) for r in chain.readings()}
    intended = outputs.pop(reading)
    if any(o is RAISED for o in intended) or len({repr(o) for o in intended}) < 2:
        return None
    for i in range(len(chain.phrases) - 1):  # every step must change some output
        if all(same(a, b) for a, b in zip(chain.outputs(reading, inputs, skip=i), intended)):
            return None
    order = _public_first(intended, list(outputs.values()), n_public)
    if order is None:
        return None  # no public tests could tell some reading from the intended one
    inputs, intended = [inputs[i] for i in order], [intended[i] for i in order]
    if all(_trivial(o) for o in intended[:n_public]):
        return None
    return Draft(chain, reading, inputs, intended, n_public, tuple(outputs))


def _public_first(intended: list, others: list[list], n_public: int) -> list[int] | None:
    """An order of the inputs whose first `n_public` catch every other reading, or None.

    Keeps the drawn order when it already does; otherwise moves the first set of inputs (in
    drawn order) that does to the front, so the public tests can always reveal the reading.
    """
    n = len(intended)
    for chosen in itertools.combinations(range(n), n_public):
        if all(any(not same(other[i], intended[i]) for i in chosen) for other in others):
            return [*chosen, *(i for i in range(n) if i not in chosen)]
    return None


def _trivial(value: Any) -> bool:
    return any(same(value, t) for t in TRIVIAL)


def same(a: Any, b: Any) -> bool:
    """Equality with exact types, recursively (True != 1, 2.0 != 2, (1,) != [1])."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)
