"""The embedded default task suite: small function-writing problems generated from a seed.

Each problem is a chain of 1-3 operations over an int `x` (1/3 of problems) or a list of ints `xs`
(2/3), one code line per operation, ending in a `return`:

    Write a function cedar(xs) that will keep the elements above 3, sort the elements, then return
    the last element.

    def cedar(xs):
        xs = [v for v in xs if v > 3]
        xs = sorted(xs)
        return xs[-1]

Some phrasings have several readings ("above 3" is `> 3` or `>= 3`; "sort" is ascending or
descending), drawn from a skewed prior (2 readings 60/40, 3 readings 50/30/20), so a model that
guesses the prior's mode is often wrong at turn 1 — and a problem is kept only if every other
reading fails at least one public test, so the feedback ("cedar([...]) returned 9") reveals the
intended one. Function names are neutral words; each problem has 7 distinct inputs, the first 1-2
public, the rest private (for an ambiguous problem whose drawn first inputs cannot tell the readings
apart, inputs that can are moved to the front). A problem is rejected if its reference raises, if
every public output is trivial ([], 0, False), if it has fewer than 2 distinct outputs, if some step
changes no output, if its test set (name masked) already exists, or if its statement already has
MAX_COPIES problems with the same intended reading. Outputs compare with exact type equality.

Splits come from a hash of the statement with the function name masked, so a statement lives in
exactly one split whatever the seed; each split is filled to its exact size. Splits: `warmup`
(references used for the warm-start SFT), `train` (the expert-iteration pool), `valid`, `test`.
At the defaults (seed 0, 8000 problems, about 2 s): warmup 5000 / train 1400 / valid 640 /
test 960, about 53% with >= 2 readings, operations 1/2/3 about 1/60/39% (the copy cap leaves few
1-operation problems: there are only a few dozen distinct ones). What the tiny model learns on it:
README, "What the main job shows".

This module assembles the suite (names, splits, the copy and overlap rules), checks it and prints its
statistics; the operations, their readings and the rules a single drawn problem must pass are in
mucode.tasks._embedded_chains.

    python -m mucode.tasks.embedded [--seed 0] [--size 8000]     # or: mucode-suite
    suite = generate_suite(EmbeddedConfig()); suite.splits["test"]; suite.info[problem.id]

Limits: `check` execs trusted generated code in-process with no timeout; it backs the suite
statistics and tests (the generator itself uses the compiled readings, `Phrase.fns`). Candidate
code from a model runs in mucode.sandbox, never here.
"""

from __future__ import annotations

import argparse
import ast
import copy
import functools
import hashlib
import itertools
import random
import re
import sys
import time
from collections import Counter
from dataclasses import astuple, dataclass
from typing import Any

from mucode.records import Problem
from mucode.tasks import EmbeddedConfig
from mucode.tasks._embedded_chains import N_INPUTS, draw_draft, same  # noqa: F401 (N_INPUTS: re-exported)

SPLITS = ("warmup", "train", "valid", "test")
NAMES = (
    "amber", "basil", "cedar", "delta", "ember", "fable", "garnet", "harbor", "indigo", "jasper",
    "kestrel", "lumen", "maple", "nectar", "onyx", "pebble", "quartz", "raven", "sable", "thistle",
    "umber", "velvet", "willow", "yarrow", "zephyr", "cobalt", "fennel", "juniper", "orchid", "tundra",
)
MAX_COPIES = 3
"""Problems per (name-masked statement, intended reading): the same words with other inputs."""


# ---------------------------------------------------------------------------------------------
# Splits, the in-process checker (generation time only) and the suite.


def mask_name(text: str, name: str) -> str:
    """`text` with calls/definitions of `name` renamed to `f` (the key for overlap checks)."""
    return re.sub(rf"\b{re.escape(name)}\(", "f(", text)


def statement_split(masked_statement: str, config: EmbeddedConfig) -> str:
    """The split a statement belongs to: a hash of the name-masked statement, seed-independent."""
    digest = hashlib.sha256(masked_statement.encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    for split, share in (("test", config.test_fraction), ("valid", config.valid_fraction),
                         ("warmup", config.warmup_fraction)):
        if u < share:
            return split
        u -= share
    return "train"


def check(program: str, tests: list[str]) -> bool:
    """Whether trusted `program` passes every test (in-process, no timeout: not a sandbox).

    `assert CALL == EXPECTED` compares with exact types (see `same`); other tests run as written.
    The tests run as one compiled module, stopping at the first failure.
    """
    source = "\n".join(tests).replace("\r\n", "\n")
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    lines = [line.encode() for line in source.split("\n")]
    parts = []
    for node in tree.body:
        if (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)
                and len(node.test.ops) == 1 and isinstance(node.test.ops[0], ast.Eq)):
            got, want = _segment(lines, node.test.left), _segment(lines, node.test.comparators[0])
            parts.append(f"assert __same__(({got}), ({want}))")
        else:
            parts.append(_segment(lines, node))
    namespace: dict[str, Any] = {"__same__": same}
    try:
        exec(program, namespace)
        exec(compile("\n".join(parts), "<tests>", "exec"), namespace)
    except Exception:
        return False
    return True


def _segment(lines: list[bytes], node: ast.AST) -> str:
    """Source text of `node` (ast offsets count UTF-8 bytes; ast.get_source_segment is slow)."""
    first, last = node.lineno - 1, node.end_lineno - 1  # type: ignore[attr-defined]
    start, end = node.col_offset, node.end_col_offset  # type: ignore[attr-defined]
    if first == last:
        return lines[first][start:end].decode()
    body = [lines[first][start:], *lines[first + 1:last], lines[last][:end]]
    return b"\n".join(body).decode()


@dataclass(frozen=True)
class ProblemInfo:
    """What the generator knows about a problem beyond its Problem record."""

    steps: int
    """Operations in the chain, the return included (1-3)."""
    arg: str
    """"x" (int input) or "xs" (list input)."""
    wrong_readings: tuple[str, ...]
    """The program of every other reading of the statement; each fails a public test."""

    @property
    def n_readings(self) -> int:
        return 1 + len(self.wrong_readings)

    @property
    def ambiguous(self) -> bool:
        return bool(self.wrong_readings)


@dataclass
class Suite:
    """A generated suite: problems per split, per-problem info by id, how long it took."""

    config: EmbeddedConfig
    splits: dict[str, list[Problem]]
    info: dict[str, ProblemInfo]
    seconds: float
    candidates: int
    """Candidates drawn (accepted or not)."""


def generate_suite(config: EmbeddedConfig) -> Suite:
    """Draw problems until every split holds exactly its share (deterministic in config)."""
    start = time.perf_counter()
    rng = random.Random(config.seed)
    targets = config.split_sizes()
    splits: dict[str, list[Problem]] = {s: [] for s in SPLITS}
    info: dict[str, ProblemInfo] = {}
    seen_tests: set[frozenset[str]] = set()
    copies: Counter[tuple[str, str]] = Counter()
    candidates = 0
    while any(len(splits[s]) < targets[s] for s in SPLITS):
        candidates += 1
        if candidates > 50 * config.size + 1000:  # about 2.3 are needed per problem at the defaults
            have = sum(len(v) for v in splits.values())
            raise ValueError(f"task.embedded.size={config.size}: only {have} distinct problems found "
                             f"in {candidates} candidates; ask for fewer")
        draft = draw_draft(rng)
        name = rng.choice(NAMES)
        if draft is None:
            continue
        statement = draft.chain.statement(name)
        split = statement_split(mask_name(statement, name), config)
        tests = [f"assert {name}({x!r}) == {y!r}" for x, y in zip(draft.inputs, draft.outputs)]
        test_key = frozenset(mask_name(t, name) for t in tests)
        copy_key = (mask_name(statement, name), repr(draft.reading))
        if (len(splits[split]) >= targets[split] or test_key in seen_tests
                or copies[copy_key] >= MAX_COPIES):
            continue
        seen_tests.add(test_key)
        copies[copy_key] += 1
        problem = Problem(
            id=f"embedded/{split}/{len(splits[split])}", prompt=statement, entry_point=name,
            public_tests=tests[:draft.n_public], private_tests=tests[draft.n_public:],
            reference=draft.chain.program(name, draft.reading))
        splits[split].append(problem)
        info[problem.id] = ProblemInfo(
            steps=len(draft.chain.phrases), arg=draft.chain.arg,
            wrong_readings=tuple(draft.chain.program(name, r) for r in draft.wrong))
    return Suite(config, splits, info, time.perf_counter() - start, candidates)


@functools.lru_cache(maxsize=2)
def _cached_suite(key: tuple) -> Suite:
    return generate_suite(EmbeddedConfig(*key))


def load_split(config: EmbeddedConfig, split: str) -> list[Problem]:
    """The problems of one split (the suite is generated once per config and cached)."""
    return copy.deepcopy(_cached_suite(astuple(config)).splits[split])


# ---------------------------------------------------------------------------------------------
# Statistics and the command line.


@dataclass
class SuiteStats:
    """The numbers `python -m mucode.tasks.embedded` prints (and the tests assert)."""

    sizes: dict[str, int]
    statement_overlap: dict[str, int]
    """"a/b" -> name-masked statements found in both splits (must be 0)."""
    test_set_overlap: dict[str, int]
    """"a/b" -> name-masked test sets found in both splits (must be 0)."""
    reference_pass: float
    """Share of references passing all their tests under `check` (must be 1.0)."""
    revealing: float
    """Share of problems with >= 2 readings, every wrong one failing a public test under `check`."""
    unrevealed: int
    """Problems with a wrong reading that passes every public test (must be 0)."""
    readings: dict[int, int]
    steps: dict[int, int]
    distinct_statements: int
    seconds: float


def suite_stats(suite: Suite) -> SuiteStats:
    """Recompute the suite's guarantees from its Problems, running `check` on every program."""
    problems = [p for split in SPLITS for p in suite.splits[split]]
    statements = {s: {mask_name(p.prompt, p.entry_point) for p in suite.splits[s]} for s in SPLITS}
    test_sets = {s: {frozenset(mask_name(t, p.entry_point) for t in p.tests)
                     for p in suite.splits[s]} for s in SPLITS}
    pairs = list(itertools.combinations(SPLITS, 2))
    revealing = unrevealed = 0
    for p in problems:
        caught = [not check(w, p.public_tests) for w in suite.info[p.id].wrong_readings]
        revealing += bool(caught) and all(caught)
        unrevealed += not all(caught)
    return SuiteStats(
        sizes={s: len(suite.splits[s]) for s in SPLITS},
        statement_overlap={f"{a}/{b}": len(statements[a] & statements[b]) for a, b in pairs},
        test_set_overlap={f"{a}/{b}": len(test_sets[a] & test_sets[b]) for a, b in pairs},
        reference_pass=sum(check(p.reference or "", p.tests) for p in problems) / len(problems),
        revealing=revealing / len(problems), unrevealed=unrevealed,
        readings=dict(sorted(Counter(suite.info[p.id].n_readings for p in problems).items())),
        steps=dict(sorted(Counter(suite.info[p.id].steps for p in problems).items())),
        distinct_statements=len(set().union(*statements.values())),
        seconds=suite.seconds)


def format_stats(stats: SuiteStats, config: EmbeddedConfig) -> str:
    """A short human-readable report."""
    total = sum(stats.sizes.values())

    def hist(counts: dict[int, int]) -> str:
        return ", ".join(f"{k}: {100 * v / total:.1f}%" for k, v in counts.items())

    def overlap(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in counts.items())

    return "\n".join([
        f"embedded suite: seed {config.seed}, {total} problems generated in {stats.seconds:.2f} s",
        "split sizes: " + ", ".join(f"{k} {v}" for k, v in stats.sizes.items()),
        f"distinct statements (function name masked): {stats.distinct_statements}",
        "statement overlap between splits: " + overlap(stats.statement_overlap),
        "test-set overlap between splits: " + overlap(stats.test_set_overlap),
        f"references passing all their tests: {100 * stats.reference_pass:.1f}%",
        f"feedback-revealing ambiguity (>= 2 readings, each wrong one fails a public test): "
        f"{100 * stats.revealing:.1f}%; wrong readings passing the public tests: {stats.unrevealed}",
        "readings per problem: " + hist(stats.readings),
        "operations per problem: " + hist(stats.steps),
    ])


def main(argv: list[str] | None = None) -> int:
    """Print the suite statistics: `python -m mucode.tasks.embedded [--seed S] [--size N]`."""
    parser = argparse.ArgumentParser(prog="mucode-suite", description=main.__doc__)
    parser.add_argument("--seed", type=int, default=EmbeddedConfig.seed, help="generator seed")
    parser.add_argument("--size", type=int, default=EmbeddedConfig.size, help="problems in all")
    args = parser.parse_args(argv)
    try:
        config = EmbeddedConfig(seed=args.seed, size=args.size)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_stats(suite_stats(generate_suite(config)), config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
