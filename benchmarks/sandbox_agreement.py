"""Verdict agreement of mucode.sandbox with a fresh interpreter, test by test, on MBPP.

For every MBPP problem of the train, valid and test splits (964; task ids 11-974) two jobs: the
reference code and one mutant of it (``bench_sandbox.mutate``: the first arithmetic operator
swapped, else a comparison flipped, else an integer constant off by one, else a call replaced by
its argument). The reference runs each job in a fresh ``python`` process: the program, then each
test in the same namespace, each test's pass or fail printed (an exception, or the process ending,
fails it), with the same 3 s budget per job. mucode runs the same jobs through ``Sandbox.run_batch``.
Every test whose verdicts differ is listed.

    python benchmarks/sandbox_agreement.py --data ../shared/data/mbpp.jsonl [--json out.json]

Not a test: about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_sandbox import emit, mutate  # noqa: E402

from mucode.sandbox import Job, Sandbox, SandboxConfig  # noqa: E402
from mucode.tasks import mbpp  # noqa: E402

TIMEOUT = 3.0
# The reference: the program, then each test, in one namespace, in a fresh interpreter.
REFERENCE = """
import json, sys
job = json.loads(sys.stdin.read())
ns = {"__name__": "program"}
exec(compile(job["program"], "<program>", "exec"), ns)
for test in job["tests"]:
    try:
        exec(compile(test, "<test>", "exec"), ns)
        print("pass", flush=True)
    except BaseException:
        print("fail", flush=True)
"""


def jobs(path: str) -> list[tuple[str, str, Job]]:
    """(task id, kind, job) for the reference and the mutant of every problem."""
    out = []
    for split in ("train", "valid", "test"):
        for problem in mbpp.load(path, split):
            kinds = [("reference", problem.reference)]
            mutant = mutate("", problem.reference)
            if mutant is not None:
                kinds.append(("mutant", mutant))
            out += [(problem.id, kind, Job.for_problem(problem, code)) for kind, code in kinds]
    return out


def reference(job: Job) -> list[bool]:
    """Each test's verdict in a fresh interpreter (a test the process did not reach fails)."""
    payload = json.dumps({"program": job.program, "tests": job.tests})
    try:
        out = subprocess.run([sys.executable, "-c", REFERENCE], input=payload, capture_output=True,
                             text=True, timeout=TIMEOUT).stdout
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    got = [line == "pass" for line in out.split()]
    return (got + [False] * len(job.tests))[: len(job.tests)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/mbpp.jsonl")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    work = jobs(args.data)
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
        fresh = list(pool.map(reference, [j for _, _, j in work]))
    fresh_s = time.perf_counter() - start
    start = time.perf_counter()
    with Sandbox(SandboxConfig(timeout_s=TIMEOUT)) as sandbox:
        results = sandbox.run_batch([j for _, _, j in work])
    mucode_s = time.perf_counter() - start
    differ = [{"task": task, "kind": kind, "test": i, "source": job.tests[i][:200],
               "fresh": a, "mucode": b, "status": r.status.value}
              for (task, kind, job), f, r in zip(work, fresh, results)
              for i, (a, b) in enumerate(zip(f, r.tests_passed)) if a != b]
    report = {"jobs": len(work), "tests": sum(len(j.tests) for _, _, j in work),
              "jobs passing (fresh / mucode)": [sum(all(f) for f in fresh),
                                                sum(r.passed for r in results)],
              "tests that differ": len(differ), "differences": differ,
              "seconds (fresh / mucode)": [round(fresh_s, 1), round(mucode_s, 1)]}
    emit(report, args.json)


if __name__ == "__main__":
    main()
