"""What a sandbox run takes and gives: SandboxConfig, Job, ExecResult, Status. Parent side.

Plain data, no processes: ``pool.py`` runs jobs, ``verdict.py`` turns what a fork server reports
into an ``ExecResult``, ``cli.py`` reads jobs from JSONL. All of it is re-exported by
``mucode.sandbox``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mucode.records import Problem


class Status(str, Enum):
    """How a job ended."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    OUTPUT_LIMIT = "output-limit"


class IsolationMode(str, Enum):
    """auto: bubblewrap, or an error saying what plain would lose; bwrap: the same, said so;
    plain: no bubblewrap, chosen by the user (a warning says what is lost on this machine)."""

    auto = "auto"
    bwrap = "bwrap"
    plain = "plain"


@dataclass
class SandboxConfig:
    """Limits and isolation of the sandbox (a Hydra structured config)."""

    timeout_s: float = 3.0
    """Wall-clock limit per job, seconds (a Job may override it)."""
    memory_mb: int = 4096
    """Address-space limit per job (RLIMIT_AS), MiB."""
    max_output_bytes: int = 1 << 20
    """Cap of stdout+stderr and of any file the program writes (RLIMIT_FSIZE), bytes."""
    max_feedback_chars: int = 1000
    """Cap of the feedback text, characters."""
    max_processes: int = 64
    """Processes and threads per job (RLIMIT_NPROC)."""
    disk_mb: int = 256
    """Size of each job's private /tmp (and /dev/shm), MiB."""
    workers: int = 0
    """Concurrent jobs; 0 = the usable cores; never more than the usable cores."""
    isolation: IsolationMode = IsolationMode.auto
    """auto or bwrap (bubblewrap, else an error), or plain: the one setting that accepts weaker
    isolation where bubblewrap cannot run (``PLAIN_LOSES`` in ``pool.py`` says what is lost)."""
    pin_cpus: bool = True
    """Pin each worker's two servers (and so its jobs) to one core of their own: the judge's
    requests and the program's answers then switch on one core (a bare round trip 15 instead of
    37 us; the HumanEval benchmark cold 3.68 against 3.98 s, medians of 5 alternating runs,
    benchmarks/README.md). False on a machine whose cores other work pins itself to."""
    python: str = ""
    """Interpreter that runs the programs (Python >= 3.10); empty = the current one."""

    def __post_init__(self) -> None:
        positive = {"timeout_s": self.timeout_s, "memory_mb": self.memory_mb,
                    "max_output_bytes": self.max_output_bytes, "disk_mb": self.disk_mb,
                    "max_feedback_chars": self.max_feedback_chars,
                    "max_processes": self.max_processes}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"sandbox.{name} must be > 0, got {value!r}")
        if self.workers < 0:
            raise ValueError(f"sandbox.workers must be >= 0 (0 = all usable cores), got {self.workers}")
        try:
            self.isolation = IsolationMode(self.isolation)
        except ValueError:
            allowed = ", ".join(m.value for m in IsolationMode)
            raise ValueError(f"sandbox.isolation must be one of {allowed}, got {self.isolation!r}") from None


@dataclass
class Job:
    """One program and its tests; the first ``n_public`` tests are public (None: all).

    ``entry_point``: the function the tests are about. A test's builtin names are always the
    judge's own (a program cannot redefine ``abs`` for its tests), except this one (MBPP 126 asks
    for a function named ``sum``)."""

    program: str
    tests: list[str]
    n_public: int | None = None
    timeout_s: float | None = None
    entry_point: str | None = None

    @classmethod
    def for_problem(cls, problem: Problem, code: str) -> Job:
        """``code`` against all of ``problem``'s tests, its public tests first and public."""
        return cls(code, problem.tests, n_public=len(problem.public_tests),
                   entry_point=problem.entry_point)


def check_job(job: Job) -> None:
    """Raise ValueError naming the field when a Job is malformed."""
    if not isinstance(job.program, str):
        raise ValueError(f"field 'program' must be a string, got {type(job.program).__name__}")
    if not isinstance(job.tests, list) or not all(isinstance(t, str) for t in job.tests):
        raise ValueError("field 'tests' must be a list of strings")
    if job.n_public is not None and not (
            type(job.n_public) is int and 0 <= job.n_public <= len(job.tests)):
        raise ValueError(f"field 'n_public' must be an integer in 0..{len(job.tests)}, "
                         f"got {job.n_public!r}")
    if job.entry_point is not None and not (isinstance(job.entry_point, str) and
                                            job.entry_point.isidentifier()):
        raise ValueError(f"field 'entry_point' must be a Python name, got {job.entry_point!r}")
    if job.timeout_s is not None and not (
            type(job.timeout_s) in (int, float) and 0 < job.timeout_s < 86400):
        raise ValueError(f"field 'timeout_s' must be a number of seconds > 0, got {job.timeout_s!r}")


@dataclass
class ExecResult:
    """Outcome of one job. ``feedback`` describes public tests only ("" when they all pass)."""

    status: Status
    tests_passed: list[bool]
    feedback: str
    duration_s: float
    n_public: int | None = None
    test_feedback: list[str] = field(default_factory=list)
    """Per test, in order: what a failing public test reported ("Failed: f(3) == 4\nf(3) returned 5", or
    the exception it raised); "" for a passed, private or unfinished test. What execution clustering
    reads (mucode.probes): a test's call and its value, for every public test, not only the first failing."""

    @property
    def passed(self) -> bool:
        """Every test passed."""
        return self.status == Status.PASSED

    @property
    def public_passed(self) -> bool:
        """Every public test passed."""
        return all(self.tests_passed[: self.n_public])  # n_public None: all are public

    @property
    def private_passed(self) -> bool:
        """Every private test passed (True when there are none)."""
        return self.n_public is None or all(self.tests_passed[self.n_public:])
