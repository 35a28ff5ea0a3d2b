"""The verdict rules: a fork server's facts about one job -> its ExecResult. Pure; parent side.

The two fork servers (``child/forkserver.py``) only report facts. The judge's: whether the top
level loaded, each test's outcome in order, whether it finished. The program's: which limit was
hit, how its process ended. Or the pool's: the worker died during the job.
The rules that turn them into a status and feedback live here, testable without a process. The
statuses are listed in ``mucode.sandbox``.
"""

from __future__ import annotations

from mucode.sandbox.job import ExecResult, Job, SandboxConfig, Status
from mucode.sandbox.protocol import clip


def verdict(facts: dict, job: Job, config: SandboxConfig) -> ExecResult:
    """Turn the server's facts about one job into its result (pure)."""
    n = len(job.tests)
    n_public = n if job.n_public is None else job.n_public
    if "worker_died" in facts:
        return ExecResult(Status.FAILED, [False] * n, clip(
            f"Failed: the sandbox worker stopped during this job ({facts['worker_died']})",
            config.max_feedback_chars), 0.0, n_public, [""] * n)
    results = facts["results"]
    passed = [bool(r[0]) for r in results] + [False] * (n - len(results))
    timeout = job.timeout_s or config.timeout_s
    limit = _limit(facts)
    texts = [str(r[2]) if j < n_public else "" for j, r in enumerate(results)] + [""] * (n - len(results))

    def result(status: Status, feedback: str, tests: list[bool] = passed, per_test: list[str] = texts
               ) -> ExecResult:
        text = clip(feedback, config.max_feedback_chars)
        return ExecResult(status, tests, text, round(facts["duration_s"], 4), n_public, per_test)

    if facts["done"] and all(passed):
        return result(Status.PASSED, "")
    if not facts["loaded"]:
        if limit is not None:
            return result(limit, _cause(facts, limit, timeout))
        if facts["load_error"] is not None:
            return result(Status.ERROR, f"Error: {facts['load_error']}")
        cause = _cause(facts, None, timeout)
        return result(Status.ERROR, f"Error: {cause[0].lower()}{cause[1:]} before the tests ran")
    for j in range(n_public):
        if j >= len(results):  # test j was running when the process ended
            cause = _cause(facts, limit, timeout)
            return result(limit or Status.FAILED, f"Failed: {_head(job.tests[j])}\n{cause}")
        if not results[j][0]:
            return result(limit or Status.FAILED, results[j][2] or f"Failed: {_head(job.tests[j])}")
    return result(limit or Status.FAILED, "")


def _limit(facts: dict) -> Status | None:
    """The limit the job hit anywhere (private tests included), or None."""
    if facts["timed_out"] or facts.get("judge_timed_out"):
        return Status.TIMEOUT
    if facts["output_limit"]:
        return Status.OUTPUT_LIMIT
    if facts["load_memory"] or any(r[1] for r in facts["results"]):
        return Status.MEMORY
    return None


def _cause(facts: dict, limit: Status | None, timeout: float) -> str:
    """Why the process stopped: the limit it hit, else its signal or exit code."""
    if limit is not None:
        return {Status.TIMEOUT: f"Timed out after {timeout:g} s", Status.MEMORY:
                "Memory limit exceeded", Status.OUTPUT_LIMIT: "Output limit exceeded"}[limit]
    if facts.get("broken"):
        return f"The program wrote over the sandbox's channel ({facts['broken']})"
    if facts["signal"]:
        return f"The program crashed ({facts['signal']})"
    return f"The program exited (exit code {facts['exit_code']})"


def _head(test: str) -> str:
    """A test's only line, or its first line and "..."."""
    lines = test.strip().splitlines()
    return lines[0] if len(lines) == 1 else f"{lines[0]} ..." if lines else ""
