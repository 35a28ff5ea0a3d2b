"""The fork server: one fresh child per job, limits, cleanup. Runs inside the namespace.

Stdlib only; bind-mounted (bubblewrap) or read in place (plain) by the launcher, never imported by
the parent training process. ``mucode.sandbox.pool`` starts this file as a script, usually inside a
bubblewrap namespace, with the other child modules beside it and ``protocol.py`` one folder up::

    python -S -s -B /run/mucode/child/forkserver.py '{"memory_mb": 4096, "workdir": "/tmp", ...}'

It answers one length-prefixed JSON job on stdin (``protocol``) with one message of *facts* on
stdout: whether the top level loaded, each test's outcome in order, which limit was hit, how the
child ended. ``mucode.sandbox.verdict`` turns facts into a status; nothing here decides one.

Once, ``prepare`` sets what every child inherits (environment, work dir path, signal dispositions,
no-new-privs, subreaper, preloaded modules, frozen garbage collector). Per job the server compiles
the tests (cached by source) and builds the job's namespace, builtins copies and bound hooks
(``checker.Prepared``), then forks. The child starts a new session, points stdin at /dev/null and
stdout/stderr at a memfd, closes every other descriptor, caps address space, CPU seconds, file size
and (as a dropped uid) processes, drops to the server's random unprivileged uid when the server is
root, reseeds ``random``, and hands over to ``checker.run_tests``. The server reads the child's
report lines as they come (so a later hang does not lose earlier results), kills the child's
process group at the deadline, then sweeps: every process the job left behind is killed — the
whole PID namespace under bubblewrap, every process of the job's uid when root, the process group
and reparented orphans otherwise (the server is a child subreaper) — and reaped before the next
job starts. A self-test job at start proves the whole path works before the server says it is
ready.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import random
import resource
import select
import shutil
import signal
import sys
import time

if __package__:  # imported as mucode.sandbox.child.forkserver (tests); never run so
    from mucode.sandbox import protocol
    from mucode.sandbox.child import checker
    _CHILD_DIR = os.path.dirname(os.path.abspath(__file__))
else:  # run as a script: sys.path[0] is this folder (checker.py), protocol.py is one folder up
    _CHILD_DIR = sys.path[0]
    sys.path.append(os.path.dirname(_CHILD_DIR))  # last: a file there never shadows a stdlib module
    import checker
    import protocol

_OWN_PATHS = (_CHILD_DIR, os.path.dirname(_CHILD_DIR))
# Every module loaded from those folders (this server, checker, values, rewrite, protocol), by the
# name it was imported under: the checker never restores them, the child drops them from sys.modules.
_HARNESS_MODULES = ("__main__", *(
    name for name, module in sys.modules.items()
    if os.path.dirname(getattr(module, "__file__", None) or "") in _OWN_PATHS))
_MAX_CHANNEL_BYTES = 8 << 20
_PR_SET_PDEATHSIG, _PR_SET_CHILD_SUBREAPER, _PR_SET_NO_NEW_PRIVS = 1, 36, 38
_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000
# What generated code commonly imports, imported once in the server so a job does not pay for it.
# _MORE only when a dropped uid could not import it (plain isolation, interpreter in a private
# home such as pyenv's under /root): every preloaded module makes each fork dearer.
_PRELOAD = ("bisect collections copy functools hashlib heapq itertools json math operator random "
            "re string typing").split()
_MORE = ("abc array base64 binascii calendar cmath collections.abc contextlib csv dataclasses "
         "datetime decimal difflib encodings.idna enum fnmatch fractions glob io numbers pathlib "
         "pprint queue secrets select shutil socket statistics struct subprocess tempfile "
         "textwrap threading time unicodedata uuid weakref zlib").split()
_exit = os._exit  # captured: a program may replace os._exit before the child exits


def enter_child(cfg: dict, job: dict, out_fd: int, keep: tuple, uid: int | None) -> None:
    """In the forked child: session, descriptors, limits, privileges (the rest: ``prepare``)."""
    os.setsid()
    os.dup2(cfg["null_fd"], 0)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    lo, hi = min(keep), max(keep)
    os.closerange(3, lo)
    os.closerange(lo + 1, hi)
    os.closerange(hi + 1, 1 << 16)
    os.chdir(cfg["workdir"])
    for which, value in ((resource.RLIMIT_AS, cfg["memory_mb"] << 20),
                         (resource.RLIMIT_CPU, int(job["timeout_s"]) + 1),
                         (resource.RLIMIT_CORE, 0), (resource.RLIMIT_FSIZE, cfg["max_output_bytes"])):
        resource.setrlimit(which, (value, value))
    if uid is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (cfg["max_processes"],) * 2)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    if not cfg["pid_namespace"]:  # no namespace is torn down if the server dies: die with it
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    random.seed(0)  # again: the random module reseeds itself from urandom in every forked child


def prepare(cfg: dict) -> bool:
    """Once per server: what every child inherits. Returns whether the network is cut off."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    cfg["null_fd"] = null
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)  # inherited: no setuid binary raises a child's privileges
    network = True if cfg["pid_namespace"] else cfg["unshare_net"] and _unshare_network()
    stdlib = os.path.dirname(os.__file__)
    everything = os.geteuid() == 0 and not _readable_by_anyone(stdlib)
    for name in _PRELOAD + (_MORE if everything else []):
        __import__(name)
    cfg["workdir"] = workdir = os.path.join(cfg["workdir"], f"job-{os.getpid()}")
    os.environ.clear()
    os.environ.update(PATH="/usr/local/bin:/usr/bin:/bin", HOME=workdir, TMPDIR=workdir,
                      LANG="C.UTF-8")
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; a child must die of it
    sys.argv[:] = ["program"]
    sys.path[:] = [p for p in sys.path if p not in _OWN_PATHS]  # programs import no harness file
    gc.collect()
    gc.freeze()  # forked children do not touch these objects' gc headers
    return network


def _readable_by_anyone(path: str) -> bool:
    """Whether a uid with no rights but "other" can list ``path`` (and so import from it)."""
    path = os.path.realpath(path)
    need, p = 0o005, path
    while True:
        if os.stat(p).st_mode & need != need:
            return False
        if p == "/":
            return True
        need, p = 0o001, os.path.dirname(p)


_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


# ---------------------------------------------------------------- the server
class _Reader:
    """Parses the child's report lines; any line without the nonce or out of order is tampering."""

    def __init__(self, nonce: str, n_tests: int):
        self.nonce, self.n_tests = nonce.encode(), n_tests
        self.buffer, self.total = b"", 0
        self.facts = {"loaded": False, "load_error": None, "load_memory": False, "results": [],
                      "done": False, "tampered": False}

    def feed(self, data: bytes) -> None:
        """Consume bytes read from the channel."""
        self.total += len(data)
        if self.total > _MAX_CHANNEL_BYTES:
            self.facts["tampered"] = True
            return
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if not self.facts["tampered"]:
                self.facts["tampered"] = not self._line(line)

    def _line(self, line: bytes) -> bool:
        parts = line.split(b" ")
        if len(parts) != 5 or parts[0] != self.nonce or not parts[2].isdigit():
            return False
        kind, index, flag = parts[1].decode(), int(parts[2]), parts[3].decode()
        try:
            text = bytes.fromhex(parts[4].decode()).decode("utf-8", "replace")
        except ValueError:
            return False
        f, results = self.facts, self.facts["results"]
        started = f["loaded"] or f["load_error"] is not None
        if kind in "LE" and not started and index == 0:
            f["loaded"], f["load_error"] = kind == "L", text if kind == "E" else None
            f["load_memory"] = flag == "m"
            return True
        if kind == "T" and f["loaded"] and not f["done"] and index == len(results) < self.n_tests:
            results.append([flag == "p", flag == "m", text])
            return True
        if kind == "D" and f["loaded"] and not f["done"] and index == len(results) == self.n_tests:
            f["done"] = True
            return True
        return False


class Server:
    """Runs jobs one at a time in fresh forked children and cleans up after each."""

    def __init__(self, cfg: dict, uid: int | None):
        self.cfg, self.uid, self.seq = cfg, uid, 0
        self.pristine = checker.Pristine(_HARNESS_MODULES)  # after the preloads, before any program
        self.compiled: dict = {}  # test source -> compile_test(source); tests recur across jobs

    def _compile(self, tests: list[str]) -> list:
        if len(self.compiled) > 4096:
            self.compiled.clear()
        new = [src for src in tests if src not in self.compiled]
        for src in new:
            self.compiled[src] = checker.compile_test(src, self.pristine)
        if new:
            gc.freeze()  # a child's collections then never walk (and copy) the cached code
        return [self.compiled[src] for src in tests]

    def run(self, job: dict) -> dict:
        """Run one job; return its facts."""
        self.seq += 1
        prepared = checker.Prepared(job, self._compile(job["tests"]), self.pristine,
                                    self.cfg["max_feedback_chars"])  # before any program runs
        workdir = self.cfg["workdir"]  # one path per server: HOME and TMPDIR point at it
        _clear(workdir)
        os.mkdir(workdir, 0o700)
        if self.uid is not None:
            os.chown(workdir, self.uid, self.uid)
        out_fd = os.memfd_create("output")
        channel_r, channel_w = os.pipe()
        nonce_r, nonce_w = os.pipe()
        nonce = os.urandom(16).hex()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            self._child(job, prepared, out_fd, (channel_w, nonce_r))
        for fd in (channel_w, nonce_r):
            os.close(fd)
        try:
            os.write(nonce_w, nonce.encode())
        except BrokenPipeError:  # the child is gone already; _watch will see it
            pass
        os.close(nonce_w)
        try:
            facts = self._watch(pid, channel_r, _Reader(nonce, len(job["tests"])),
                                start + job["timeout_s"])
        finally:
            self._sweep(pid)
            os.close(channel_r)
        facts["duration_s"] = time.monotonic() - start
        facts["output_limit"] = facts.pop("xfsz") or os.fstat(out_fd).st_size >= \
            self.cfg["max_output_bytes"]
        os.close(out_fd)
        _clear(workdir)
        return facts

    def _child(self, job: dict, prepared: checker.Prepared, out_fd: int, keep: tuple) -> None:
        code = 0
        try:
            enter_child(self.cfg, job, out_fd, keep, self.uid)
            checker.run_tests(prepared, *keep)
        except BaseException:  # noqa: BLE001 - the child must never return into the server
            code = 70
        _exit(code)

    def _watch(self, pid: int, channel: int, reader: _Reader, deadline: float) -> dict:
        pidfd = os.pidfd_open(pid)
        fds, timed_out = [channel, pidfd], False
        try:
            while pidfd in fds:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                for fd in select.select(fds, [], [], left)[0]:
                    data = os.read(fd, 1 << 16) if fd == channel else b""  # pidfd: child exited
                    if data:
                        reader.feed(data)
                    else:
                        fds.remove(fd)
        finally:
            os.close(pidfd)
        _kill_group(pid)
        status = os.waitpid(pid, 0)[1]
        os.set_blocking(channel, False)
        while channel in fds:
            try:
                data = os.read(channel, 1 << 16)
            except BlockingIOError:
                break
            reader.feed(data)
            if not data:
                break
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        return dict(reader.facts, timed_out=timed_out or sig == signal.SIGXCPU,
                    exit_code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                    signal=signal.Signals(sig).name if sig else None,
                    xfsz=sig == signal.SIGXFSZ)

    def _sweep(self, pid: int) -> None:
        """Kill whatever the job left running and reap it: nothing of a job outlives the job."""
        _kill_group(pid)
        deadline = time.monotonic() + 5
        if self.cfg["pid_namespace"] and os.getpid() == 2:  # our own namespace, we are its pid 2
            # kill(-1) hits everything in it but its init and us, zombies included, and fails
            # with ESRCH once nothing is left: usually at once, with no /proc read
            while _kill(-1) and time.monotonic() < deadline:
                _reap()
                time.sleep(0.0005)
            _reap()
            return
        _reap()
        while _children() and time.monotonic() < deadline:
            if self.uid is not None:
                _kill_uid(self.uid)
            else:
                for child in _children():
                    _kill_group(child)
                    _kill(child)
            time.sleep(0.001)
            _reap()

    def selftest(self) -> str | None:
        """Run one trivial job end to end; the reason it failed, or None."""
        job = {"program": "x = 1\n", "tests": ["assert x == 1"], "n_public": 1, "timeout_s": 10}
        facts = self.run(job)
        if facts["results"] == [[True, False, ""]] and facts["done"]:
            return None
        return f"the sandbox self-test failed: {json.dumps(facts)}"


def _clear(workdir: str) -> None:
    """Remove a job's work dir; set aside what cannot be removed (a non-root plain run)."""
    try:
        os.rmdir(workdir)  # the common case, much cheaper than rmtree on a disk
        return
    except FileNotFoundError:
        return
    except OSError:
        shutil.rmtree(workdir, ignore_errors=True)
    if os.path.lexists(workdir):
        os.rename(workdir, f"{workdir}.{time.monotonic_ns()}")


def _kill(pid: int) -> bool:
    """SIGKILL; whether there was a process to signal."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_uid(uid: int) -> None:
    """kill(-1) as ``uid``: atomically every process of that uid (unique to this server)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            _exit(0)
    os.waitpid(pid, 0)


def _reap() -> None:
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def _children() -> list[int]:
    """Our children, orphans of the job included (we are a child subreaper)."""
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:  # kernel without CONFIG_PROC_CHILDREN: scan /proc
        kids = []
        for name in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{name}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(name))
            except (OSError, IndexError, ValueError):
                continue
        return kids


def _unshare_network() -> bool:
    """Move the server into an empty network namespace (root, or an unprivileged user namespace)."""
    uid, gid = os.geteuid(), os.getegid()
    if _libc.unshare(_CLONE_NEWNET) == 0:
        return True
    if _libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        return False
    for path, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                       ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{path}", "w") as f:
            f.write(text)
    return True


def main() -> int:
    """Serve jobs from stdin until it closes."""
    cfg = json.loads(sys.argv[1])
    inp, out = os.dup(0), os.dup(1)
    uid = random.SystemRandom().randrange(1 << 20, 1 << 30) if os.geteuid() == 0 else None
    network = prepare(cfg)
    server = Server(cfg, uid)
    error = server.selftest()
    protocol.send_message(out, {"ready": error is None, "error": error, "uid": uid,
                                "network_isolated": network, "pid": os.getpid()})
    if error is not None:
        return 1
    while (job := protocol.recv_message(inp)) is not None:
        protocol.send_message(out, server.run(job))
    return 0


if __name__ == "__main__":
    sys.exit(main())
