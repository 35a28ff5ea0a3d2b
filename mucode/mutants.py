"""Minimal-pair verifier data: mutants of a correct code, each one edit away, labelled by its tests.

    mutants("def f(x):\n    return x + 3", limit=4, seed=0)   # [Mutant("def f(x):\n    return x - 3", "binop"), ...]
    with Sandbox(SandboxConfig()) as sandbox:
        added, counts = mutant_examples(train_examples, problems_by_id, limit=4, seed=0, sandbox=sandbox)

The generator's wrong codes are near misses (one constant or operator off) and a verifier trained only
on its pairs does not learn to rank them; a mutant of a correct code paired with its source is a
minimal pair (Kaushik et al. 2021; PRLCoder). Operators, one site each (OPERATORS):
    constant  an int or float literal n -> n + 1 or n - 1 (so 0 <-> 1); True <-> False
    binop     + <-> -, * -> //, // -> * or /, / -> //, % -> //, ** -> *, << <-> >>, & <-> |, ^ -> |
              (in an expression or an augmented assignment, `x += 1` -> `x -= 1`)
    compare   < <-> <=, > <-> >=, == <-> !=, in <-> not in, is <-> is not (one operator of a chain)
    boolop    and <-> or (every operator of that one expression)
    not       `not e` -> `e`;  negation: `-e` -> `e`
    range     a range(...) bound that is not a literal +/- 1 (a literal bound is a constant mutant)
    minmax    min <-> max
    sort      sorted(...) / .sort(...) without a reverse= gets reverse=True
    step      a slice step s -> -s (a negative step loses its sign by `negation`)
Each mutant is the source text with one span replaced (comments, quotes and layout are kept, so the
pair differs only in the edit; ast.unparse would reformat the whole code). It is kept only if it
parses to exactly the intended tree (the source's tree with that one node changed), which also
rejects edits that precedence would change (`0 ** x` -> `-1 ** x`), and if its tree differs from the
source's. Which sites are drawn is seeded by (seed, code); a code that does not parse has none.

Labels (mutant_examples): each new mutant runs in the sandbox against its problem's public and private
tests, as rollouts are run (Job.for_problem), and is correct iff both pass (Turn.correct); an
equivalent mutant is a positive. The training stage adds them for training problems only
(mucode.stages.train_verifier, `verifier.mutants`). Limits: mutants are uniform over sites, not weighted
like the generator's own mistakes; a mutant that loops costs one sandbox timeout.
"""

from __future__ import annotations

import ast
import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mucode.records import Problem, VerifierExample
from mucode.sandbox import Job

OPERATORS = ("constant", "binop", "compare", "boolop", "not", "negation", "range", "minmax", "sort", "step")
"""The mutation operators, in the order a code's sites are listed."""

_BINOPS: dict[type, tuple[type, ...]] = {
    ast.Add: (ast.Sub,), ast.Sub: (ast.Add,), ast.Mult: (ast.FloorDiv,), ast.FloorDiv: (ast.Mult, ast.Div),
    ast.Div: (ast.FloorDiv,), ast.Mod: (ast.FloorDiv,), ast.Pow: (ast.Mult,), ast.LShift: (ast.RShift,),
    ast.RShift: (ast.LShift,), ast.BitAnd: (ast.BitOr,), ast.BitOr: (ast.BitAnd,), ast.BitXor: (ast.BitOr,),
}
_COMPARES: dict[type, type] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}
_SYMBOLS: dict[type, str] = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Div: "/", ast.Mod: "%", ast.Pow: "**",
    ast.LShift: "<<", ast.RShift: ">>", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.Lt: "<",
    ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in", ast.NotIn: "not in",
    ast.Is: "is", ast.IsNot: "is not", ast.And: "and", ast.Or: "or",
}
_GAP = r"[\s()\\]*"  # what may surround an operator between its operands: spaces, parentheses, continuations


@dataclass(frozen=True)
class Mutant:
    """A code one edit away from its source."""

    code: str
    operator: str
    """The operator that made it (one of OPERATORS)."""


@dataclass(frozen=True)
class _Site:
    """One candidate edit: the node it replaces, the replacement node, and the text edits that should
    parse to it (alternatives, tried in order; each a list of (start byte, end byte, new text))."""

    operator: str
    node: ast.AST
    new: ast.AST
    texts: tuple[tuple[tuple[int, int, str], ...], ...]


def mutants(code: str, limit: int, seed: int = 0) -> list[Mutant]:
    """Up to `limit` distinct mutants of `code`, each one edit away (module docstring); the same
    (code, limit, seed) gives the same list."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return []
    source = code.encode()
    sites = list(_sites(tree, source))
    random.Random(f"{seed}\0{code}").shuffle(sites)
    parents = {id(child): (node, name) for node in ast.walk(tree) for name, child in _children(node)}
    original, seen, out = ast.dump(tree), {code}, []
    for site in sites:
        if len(out) >= limit:
            break
        expected = _replaced_dump(tree, parents, site.node, site.new)
        for edits in site.texts:
            text = _apply(source, edits)
            if text not in seen and _dump(text) == expected != original:
                seen.add(text)
                out.append(Mutant(text, site.operator))
                break
    return out


def mutant_examples(examples: list[VerifierExample], problems: dict[str, Problem], limit: int, seed: int,
                    sandbox) -> tuple[list[VerifierExample], dict[str, Any]]:
    """(new examples, counts): up to `limit` mutants of every correct example's code, those not already
    an example of their problem run in `sandbox` (a mucode.sandbox.Sandbox) against the problem's public
    and private tests and labelled as rollouts are (correct iff both pass). counts: sources (correct
    codes mutated), made, run, failed (the new negatives), passed, and run/failed by operator."""
    known = {(ex.problem_id, ex.code) for ex in examples}
    todo: list[tuple[VerifierExample, Mutant]] = []
    made = 0
    sources = [ex for ex in examples if ex.label]
    for ex in sources:
        for m in mutants(ex.code, limit, seed):
            made += 1
            if (ex.problem_id, m.code) not in known:
                known.add((ex.problem_id, m.code))
                todo.append((ex, m))
    results = sandbox.run_batch([Job.for_problem(problems[ex.problem_id], m.code) for ex, m in todo]) if todo else []
    added = [VerifierExample(ex.problem_id, ex.prompt, m.code, r.public_passed and r.private_passed, ex.iteration)
             for (ex, m), r in zip(todo, results)]
    failed = sum(not a.label for a in added)
    counts = {
        "sources": len(sources), "made": made, "run": len(added), "failed": failed, "passed": len(added) - failed,
        "run_by_operator": dict(Counter(m.operator for _, m in todo)),
        "failed_by_operator": dict(Counter(m.operator for (_, m), a in zip(todo, added) if not a.label)),
    }
    return added, counts


# ---------------------------------------------------------------------------------------------
# Sites: where one edit can go, and what the edited tree must be


def _sites(tree: ast.AST, source: bytes) -> Iterator[_Site]:
    """Every candidate edit of the tree, in walk order."""
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))

    def start(n: ast.AST) -> int:
        return starts[n.lineno - 1] + n.col_offset  # col_offset counts UTF-8 bytes, as `source` does

    def end(n: ast.AST) -> int:
        return starts[n.end_lineno - 1] + n.end_col_offset

    def between(a: ast.AST, b: ast.AST, old: str, new: str) -> tuple[int, int, str] | None:
        """The edit turning the operator `old` between a and b into `new` (None: not found alone there)."""
        gap = source[end(a):start(b)].decode()
        words = r"\s+".join(re.escape(w) for w in old.split())
        match = re.fullmatch(f"{_GAP}({words}){_GAP}", gap)
        return (end(a) + len(gap[:match.start(1)].encode()), end(a) + len(gap[:match.end(1)].encode()),
                new) if match else None

    def drop_prefix(n: ast.UnaryOp, word: str) -> tuple[tuple[int, int, str], ...]:
        """Delete the unary operator `word` (and the spaces after it), keeping any parentheses."""
        gap = source[start(n):start(n.operand)].decode()
        match = re.match(rf"{re.escape(word)}\s*", gap)
        return ((start(n), start(n) + len(match.group(0).encode()), ""),) if match else ()

    def span(n: ast.AST, *texts: str) -> tuple[tuple[tuple[int, int, str], ...], ...]:
        return tuple(((start(n), end(n), t),) for t in texts)

    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            yield _Site("constant", node, ast.Constant(not node.value), span(node, repr(not node.value)))
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
            for value in dict.fromkeys((node.value + 1, node.value - 1)):
                new = ast.Constant(value) if value >= 0 else ast.UnaryOp(ast.USub(), ast.Constant(-value))
                yield _Site("constant", node, new, span(node, repr(value), f"({value!r})"))
        elif isinstance(node, (ast.BinOp, ast.AugAssign)):
            augmented = isinstance(node, ast.AugAssign)
            a, b = (node.target, node.value) if augmented else (node.left, node.right)
            for op in _BINOPS.get(type(node.op), ()):
                new = ast.AugAssign(a, op(), b) if augmented else ast.BinOp(a, op(), b)
                eq = "=" if augmented else ""
                if edit := between(a, b, _SYMBOLS[type(node.op)] + eq, _SYMBOLS[op] + eq):
                    yield _Site("binop", node, new, ((edit,),))
        elif isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                swap = _COMPARES[type(op)]
                ops = [*node.ops[:i], swap(), *node.ops[i + 1:]]
                before = node.left if i == 0 else node.comparators[i - 1]
                edit = between(before, node.comparators[i], _SYMBOLS[type(op)], _SYMBOLS[swap])
                if edit:
                    yield _Site("compare", node, ast.Compare(node.left, ops, node.comparators), ((edit,),))
        elif isinstance(node, ast.BoolOp):
            swap = ast.Or if isinstance(node.op, ast.And) else ast.And
            old, new = _SYMBOLS[type(node.op)], _SYMBOLS[swap]
            edits = [between(a, b, old, new) for a, b in zip(node.values, node.values[1:])]
            if all(edits):
                yield _Site("boolop", node, ast.BoolOp(swap(), node.values), (tuple(edits),))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            if edit := drop_prefix(node, "not" if isinstance(node.op, ast.Not) else "-"):
                yield _Site("not" if isinstance(node.op, ast.Not) else "negation", node, node.operand, (edit,))
        elif isinstance(node, ast.Call):
            yield from _call_sites(node, start, end, source)
        elif isinstance(node, ast.Name) and node.id in ("min", "max") and isinstance(node.ctx, ast.Load):
            other = "max" if node.id == "min" else "min"
            yield _Site("minmax", node, ast.Name(other, ast.Load()), span(node, other))
        elif isinstance(node, ast.Slice) and node.step is not None and not _negative(node.step):
            text = source[start(node.step):end(node.step)].decode()
            new = ast.UnaryOp(ast.USub(), node.step)
            yield _Site("step", node.step, new, span(node.step, f"-{text}", f"-({text})"))


def _call_sites(node: ast.Call, start, end, source: bytes) -> Iterator[_Site]:
    """range(...) bounds off by one; sorted(...) / x.sort(...) reversed."""
    name = node.func.id if isinstance(node.func, ast.Name) else None
    if name == "range" and 1 <= len(node.args) <= 3 and not node.keywords:
        for bound in node.args[:1] if len(node.args) == 1 else node.args[:2]:
            if _literal_offset(bound):
                continue  # a constant mutant moves it already
            text = source[start(bound):end(bound)].decode()
            for op, sign in ((ast.Add, "+"), (ast.Sub, "-")):
                # a bound of lower precedence than + (a conditional, a lambda) is kept whole in parentheses
                texts = (((start(bound), end(bound), f"{text} {sign} 1"),),
                         ((start(bound), end(bound), f"({text}) {sign} 1"),))
                yield _Site("range", bound, ast.BinOp(bound, op(), ast.Constant(1)), texts)
    sort = name == "sorted" or (isinstance(node.func, ast.Attribute) and node.func.attr == "sort")
    if sort and not any(k.arg == "reverse" for k in node.keywords):
        new = ast.Call(node.func, node.args, [*node.keywords, ast.keyword("reverse", ast.Constant(True))])
        at = end(node) - 1  # before the closing parenthesis
        text = ", reverse=True" if node.args or node.keywords else "reverse=True"
        yield _Site("sort", node, new, (((at, at, text),),))


def _literal_offset(node: ast.AST) -> bool:
    """A literal number, or an expression +/- a literal: a constant mutant shifts it by one already."""
    if isinstance(node, ast.Constant) or _negative(node):
        return True
    return (isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub))
            and isinstance(node.right, ast.Constant))


def _negative(node: ast.AST) -> bool:
    return isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)


def _children(node: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    """(field name, child) for each AST child of `node` ("name.i" for the i-th of a list)."""
    for name, value in ast.iter_fields(node):
        if isinstance(value, ast.AST):
            yield name, value
        elif isinstance(value, list):
            yield from ((f"{name}.{i}", v) for i, v in enumerate(value) if isinstance(v, ast.AST))


def _replaced_dump(tree: ast.AST, parents: dict[int, tuple[ast.AST, str]], old: ast.AST, new: ast.AST) -> str:
    """ast.dump of `tree` with `old` replaced by `new` (put back before returning)."""
    if old is tree:
        return ast.dump(new)
    parent, name = parents[id(old)]
    field, _, index = name.partition(".")
    holder = getattr(parent, field)
    if index:
        holder[int(index)] = new
    else:
        setattr(parent, field, new)
    try:
        return ast.dump(tree)
    finally:
        if index:
            holder[int(index)] = old
        else:
            setattr(parent, field, old)


def _apply(source: bytes, edits: tuple[tuple[int, int, str], ...]) -> str:
    """`source` with each (start, end, text) span replaced (spans do not overlap)."""
    out, at = [], 0
    for start, end, text in sorted(edits):
        out += [source[at:start], text.encode()]
        at = end
    return b"".join([*out, source[at:]]).decode()


def _dump(code: str) -> str | None:
    """ast.dump of `code`, None when it does not parse or compile."""
    try:
        tree = ast.parse(code)
        compile(tree, "<mutant>", "exec")
    except (SyntaxError, ValueError):
        return None
    return ast.dump(tree)
