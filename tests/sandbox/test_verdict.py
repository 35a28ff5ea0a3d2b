"""mucode.sandbox.verdict: a fork server's facts -> status and feedback, without a process."""

from __future__ import annotations

from mucode.sandbox import Job, SandboxConfig, Status
from mucode.sandbox.verdict import verdict


def facts(**changes) -> dict:
    """Facts of a job whose top level loaded and that ran no test yet."""
    return {"loaded": True, "load_error": None, "load_memory": False, "done": False, "results": [],
            "timed_out": False, "exit_code": None, "signal": None,
            "output_limit": False, "duration_s": 0.5, **changes}


def test_verdict_is_pure_and_counts_missing_tests_as_failed():
    r = verdict(facts(results=[[True, False, ""]], signal="SIGKILL"),
                Job("", ["a", "b", "c"], n_public=2), SandboxConfig())
    assert r.status == Status.FAILED and r.tests_passed == [True, False, False]
    assert r.feedback == "Failed: b\nThe program crashed (SIGKILL)"


def test_a_timeout_names_the_running_tests_first_line():
    r = verdict(facts(timed_out=True), Job("", ["assert f(1) == 2\nassert f(2) == 3"], n_public=1),
                SandboxConfig())
    assert r.status == Status.TIMEOUT and r.tests_passed == [False]
    assert r.feedback == "Failed: assert f(1) == 2 ...\nTimed out after 3 s"


def test_feedback_is_clipped_to_max_feedback_chars():
    r = verdict(facts(loaded=False, load_error="NameError: name 'x' is not defined"),
                Job("", ["assert True"]), SandboxConfig(max_feedback_chars=10))
    assert r.status == Status.ERROR and r.feedback == "Error: ..."


def test_a_worker_that_died_fails_its_job_and_says_so():
    r = verdict({"worker_died": "the program server exited"}, Job("", ["a", "b"], n_public=1),
                SandboxConfig())
    assert r.status == Status.FAILED and r.tests_passed == [False, False]
    assert r.feedback == "Failed: the sandbox worker stopped during this job (the program server exited)"


def test_a_judge_out_of_time_is_a_timeout():
    r = verdict(facts(results=[[True, False, ""]], judge_timed_out=True), Job("", ["a", "b"]),
                SandboxConfig())
    assert r.status == Status.TIMEOUT and r.tests_passed == [True, False]


def test_per_test_feedback_for_every_public_test_and_never_a_private_one():
    results = [[True, False, ""], [False, False, "Failed: f(2)\nf(2) returned 5"], [False, False, "private text"]]
    r = verdict(facts(results=results, done=True), Job("", ["a", "b", "c", "d"], n_public=2), SandboxConfig())
    assert r.test_feedback == ["", "Failed: f(2)\nf(2) returned 5", "", ""]
