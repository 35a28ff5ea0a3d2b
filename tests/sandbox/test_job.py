"""mucode.sandbox.job: Job.for_problem and the public/private split of a result."""

from __future__ import annotations

from mucode.records import Problem
from mucode.sandbox import ExecResult, Job, Status


def test_job_for_problem_runs_every_test_public_ones_first():
    problem = Problem("p/1", "Add one.", "f", ["assert f(1) == 2"],
                      ["assert f(2) == 3", "assert f(0) == 1"])
    job = Job.for_problem(problem, "def f(x):\n    return x + 1\n")
    assert job == Job("def f(x):\n    return x + 1\n",
                      ["assert f(1) == 2", "assert f(2) == 3", "assert f(0) == 1"], n_public=1,
                      entry_point="f")
    assert job.timeout_s is None
    job.tests.append("assert False")  # the job's list is its own
    assert len(problem.tests) == 3 and len(problem.public_tests) == 1


def test_public_and_private_passed():
    r = ExecResult(Status.FAILED, [True, False, True], "", 0.1, n_public=1)
    assert r.public_passed and not r.private_passed and not r.passed
    r = ExecResult(Status.FAILED, [False, True], "Failed: ...", 0.1, n_public=1)
    assert not r.public_passed and r.private_passed
    r = ExecResult(Status.FAILED, [True, False], "", 0.1)  # n_public None: every test is public
    assert not r.public_passed and r.private_passed
    r = ExecResult(Status.PASSED, [True], "", 0.1, n_public=0)
    assert r.passed and r.public_passed and r.private_passed
