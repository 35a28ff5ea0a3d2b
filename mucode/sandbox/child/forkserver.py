"""The sandbox's two servers: the program's (one fresh process per job) and the judge's. Run in their namespaces.

Stdlib only; bind-mounted (bubblewrap) or read in place (plain) by the launcher, never imported by
the parent training process. ``mucode.sandbox.pool`` starts this file twice per worker, each in a
namespace of its own, with the other child modules beside it and ``protocol.py`` one folder up::

    python -S -s -B /run/mucode/child/forkserver.py program '{"memory_mb": 4096, ...}'
    python -S -s -B /run/mucode/child/forkserver.py judge '{"memory_mb": 4096, ...}'

Each reads jobs from the Unix socket on its stdin (``protocol``; the job's own socket comes with
the job as a passed descriptor) and answers each with one message of *facts*;
``mucode.sandbox.verdict`` turns the two servers' facts into a status.

The program server never receives a test. Per job it starts the program's process (``program``)
in new PID, IPC and mount namespaces, where the kernel allows it (root, or a user namespace the
server makes for itself): the process is PID 1 of its namespace, sees no other process, and when
it ends the kernel kills everything it started; its System V IPC objects die with the IPC
namespace; its /tmp and /dev/shm are tmpfs mounts of its own, gone with it. It runs with a new
session, stdin /dev/null, stdout/stderr in a memfd, every other descriptor closed, limits on
address space, CPU seconds, file size and processes, and either a dropped uid (the server is root)
or no capabilities. The server watches it until it exits, the deadline passes or the judge hangs
up its end of the job's socket, kills it and what it left, and answers: exit code or signal,
timed out, output limit hit.

The judge server compiles tests (cached by source) and runs each job's tests itself (``judge``):
no code of the program ever runs in it, only its answers as data, so it needs no fresh process
per job. As root it drops to a uid of its own once it has started; a timer bounds its own time
per job. It answers: loaded, load error, the tests' results in order, done.

Both servers are not dumpable (``PR_SET_DUMPABLE`` 0): no process of the same uid can trace them,
read their memory or open their descriptors through /proc, and neither can their children.
"""

from __future__ import annotations

import builtins
import ctypes
import gc
import importlib
import json
import os
import random
import resource
import select
import signal
import sys
import time
import types

if __package__:  # imported as mucode.sandbox.child.forkserver (tests); never run so
    from mucode.sandbox import protocol
    _CHILD_DIR = os.path.dirname(os.path.abspath(__file__))
else:  # run as a script: sys.path[0] is this folder, protocol.py is one folder up
    _CHILD_DIR = sys.path[0]
    sys.path.append(os.path.dirname(_CHILD_DIR))  # last: a file there never shadows a stdlib module
    import protocol

_OWN_PATHS = (_CHILD_DIR, os.path.dirname(_CHILD_DIR))
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_SET_CHILD_SUBREAPER, _PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38
_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
_CLONE_NEWPID, _CLONE_NEWNET = 0x20000000, 0x40000000
_MS_NOSUID, _MS_NODEV, _MS_REC, _MS_PRIVATE = 2, 4, 0x4000, 0x40000
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(os.uname().machine)
_SETUP_FAILED = 70  # the exit status of a program process whose harness failed
_XFSZ_EXIT = 128 + signal.SIGXFSZ  # how a program process at its output limit exits
_JUDGE_GRACE_S = 2.0  # the judge's own time after the program's deadline (its reading and comparing)
# What generated code commonly imports, imported once in each server so a job does not pay for it.
# _MORE only when a dropped uid could not import it (plain isolation, interpreter in a private
# home such as pyenv's under /root): every preloaded module makes each fork dearer.
_PRELOAD = ("bisect collections copy functools hashlib heapq itertools json math operator random "
            "re string typing").split()
_MORE = ("abc array base64 binascii calendar cmath collections.abc contextlib csv dataclasses "
         "datetime decimal difflib encodings.idna enum fnmatch fractions glob io numbers pathlib "
         "pprint queue secrets select shutil socket statistics struct subprocess tempfile "
         "textwrap threading time unicodedata uuid weakref zlib").split()
_TESTS = "unittest doctest".split()  # and what tests import that programs rarely do
_exit = os._exit  # captured: a program may replace os._exit before the child exits
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]


def _side(role: str) -> types.ModuleType:
    """This server's side, ``program`` or ``judge``: each server imports only its own, and the
    program server forks faster for it."""
    return importlib.import_module(f"{__package__}.{role}" if __package__ else role)


def _harness_modules() -> list[str]:
    """The harness's own modules, by the name they were imported under: hidden from the program."""
    return ["__main__", *(name for name, module in sys.modules.items()
                          if os.path.dirname(getattr(module, "__file__", None) or "") in _OWN_PATHS)]


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


# ---------------------------------------------------------------- once per server
def prepare(cfg: dict, role: str) -> dict:
    """What every child inherits: descriptors, environment, namespaces, preloads. Returns facts."""
    null = os.open(os.devnull, os.O_RDWR)
    cfg["null_fd"] = null
    if cfg["cpu"] is not None:  # the pool's choice: this worker's core, for both its servers
        os.sched_setaffinity(0, {cfg["cpu"]})
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)  # inherited: no setuid binary raises a child's privileges
    root = os.geteuid() == 0
    network = cfg["namespaced"] or (cfg["unshare_net"] and _unshare(_CLONE_NEWNET, not root))
    # a user namespace of our own gives the program server the capabilities to make namespaces
    own_userns = not root and role == "program" and _unshare(_CLONE_NEWUSER)
    flags = 0
    if _SYS_CLONE is not None and role == "program" and (root or own_userns) and _private_mounts():
        flags = _CLONE_NEWPID | _CLONE_NEWIPC | _CLONE_NEWNS
    cfg["clone_flags"], cfg["capabilities"] = flags, root or own_userns
    # after the uid maps are written (they are files of ours in /proc): inherited by every child,
    # nothing of this uid can trace us, read our memory or open /proc/<us>/fd
    _prctl(_PR_SET_DUMPABLE, 0)
    stdlib = os.path.dirname(os.__file__)
    everything = root and not _readable_by_anyone(stdlib)
    # the judge never forks, so it imports what tests need when they need it (a dropped uid that
    # cannot read the interpreter's stdlib needs them now)
    preload = (_PRELOAD + _MORE + _TESTS if everything else []) if role == "judge" else \
        _PRELOAD + (_MORE if everything else [])
    for name in preload:
        __import__(name)
    os.environ.clear()
    home = "/tmp" if flags else os.path.join(cfg["workdir"], f"job-{os.getpid()}")
    cfg["workdir"] = home
    os.environ.update(PATH="/usr/local/bin:/usr/bin:/bin", HOME=home, TMPDIR=home, LANG="C.UTF-8")
    sys.argv[:] = ["program"]
    sys.path[:] = [p for p in sys.path if p not in _OWN_PATHS]  # programs import no harness file
    cfg["nproc"] = cfg["max_processes"] + (0 if root or own_userns else _processes_of(os.getuid()))
    gc.collect()
    gc.freeze()  # forked children do not touch these objects' gc headers
    return {"network_isolated": bool(network), "job_namespaces": bool(flags)}


def _unshare(flags: int, map_user: bool = True) -> bool:
    """unshare(2); a new user namespace maps our uid and gid onto themselves."""
    uid, gid = os.geteuid(), os.getegid()
    if _libc.unshare(flags) != 0:
        if flags & _CLONE_NEWUSER or not map_user:
            return False
        return _unshare(flags | _CLONE_NEWUSER)
    if flags & _CLONE_NEWUSER:
        for path, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                           ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{path}", "w") as f:
                f.write(text)
    return True


def _private_mounts() -> bool:
    """Our own mount namespace with nothing shared: a job's tmpfs mounts never reach the host."""
    return _libc.unshare(_CLONE_NEWNS) == 0 and \
        _libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) == 0


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


def _processes_of(uid: int) -> int:
    """How many processes ``uid`` has now (RLIMIT_NPROC counts all of them without namespaces)."""
    count = 0
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{name}").st_uid == uid:
                count += 1
        except OSError:
            continue
    return count


def limit_child(cfg: dict, timeout_s: float, keep: tuple, uid: int | None) -> None:
    """In a forked child: session, descriptors, limits, privileges."""
    os.setsid()
    os.dup2(cfg["null_fd"], 0)
    _close_except(keep)
    for which, value in ((resource.RLIMIT_AS, cfg["memory_mb"] << 20),
                         (resource.RLIMIT_CPU, int(timeout_s) + 1),
                         (resource.RLIMIT_CORE, 0), (resource.RLIMIT_FSIZE, cfg["max_output_bytes"]),
                         (resource.RLIMIT_NPROC, cfg["nproc"])):
        resource.setrlimit(which, (value, value))
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # from root: every capability goes
    elif cfg["capabilities"]:
        _drop_capabilities()
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    random.seed(0)  # the random module reseeds itself from urandom in every forked child


def _close_except(keep: tuple) -> None:
    fd = 3
    for k in sorted(keep):
        os.closerange(fd, k)
        fd = k + 1
    os.closerange(fd, 1 << 16)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


def _drop_capabilities() -> None:
    """capset(2) to nothing: what our own user namespace gave us, the job does not keep."""
    data = (ctypes.c_uint32 * 6)()
    if _libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _spawn(flags: int) -> int:
    """fork(2), or clone(2) into new namespaces: 0 in the child, its pid in the parent.

    ``os.fork`` cannot make namespaces; the raw clone skips Python's after-fork hooks, which a
    single-threaded server does not need (the child reseeds ``random`` itself).
    """
    if not flags:
        return os.fork()
    pid = _libc.syscall(_SYS_CLONE, flags | signal.SIGCHLD, 0, 0, 0, 0)
    if pid < 0:
        raise OSError(ctypes.get_errno(), "clone failed")
    return pid


# ---------------------------------------------------------------- the program server
class ProgramServer:
    """Runs each job's program in a fresh child; never holds a test."""

    def __init__(self, cfg: dict, uid: int | None):
        self.cfg, self.uid, self.program = cfg, uid, _side("program")
        self.harness = _harness_modules()  # hidden from the program (looked up once, not per job)

    def run(self, job: dict, fds: list) -> dict:
        """Run one program on the job's socket ``fds[0]``; return the facts of its process."""
        sock = fds[0]
        start = time.monotonic()
        workdir, flags = self.cfg["workdir"], self.cfg["clone_flags"]
        if not flags:
            _clear(workdir)
            os.mkdir(workdir, 0o700)
            if self.uid is not None:
                os.chown(workdir, self.uid, self.uid)
        out_fd = os.memfd_create("output")
        pid = _spawn(flags)
        if pid == 0:
            code = 0
            try:
                if flags:
                    self._mount_tmp()
                os.dup2(out_fd, 1)
                os.dup2(out_fd, 2)
                limit_child(self.cfg, job["timeout_s"], (sock,), self.uid)
                # Python ignores SIGXFSZ, and as PID 1 of a namespace the kernel would drop it at its
                # default action anyway: a handler ends the process at its output limit
                signal.signal(signal.SIGXFSZ, _output_limit)
                os.chdir(workdir)
                for name in self.harness:
                    sys.modules.pop(name, None)
                self.program.serve(job["program"], sock, self.cfg["max_feedback_chars"])
            except BaseException as e:  # noqa: BLE001 - the child must never return into the server
                code = _SETUP_FAILED
                try:
                    os.write(2, f"\n{type(e).__name__}: {e}".encode())  # the memfd: the server reads it back
                except BaseException:  # noqa: BLE001
                    pass
            _exit(code)
        try:
            facts = self._watch(pid, sock, start + job["timeout_s"])
        finally:
            os.close(sock)
            self._sweep(pid)
        facts["duration_s"] = time.monotonic() - start
        if facts["exit_code"] == _SETUP_FAILED:  # the harness failed in the child (or the program
            tail = os.pread(out_fd, 300, max(os.fstat(out_fd).st_size - 300, 0))  # exited so)
            facts["setup_error"] = (tail.decode(errors="replace").strip().splitlines() or [""])[-1]
        facts["output_limit"] = facts.pop("xfsz") or os.fstat(out_fd).st_size >= \
            self.cfg["max_output_bytes"]
        os.close(out_fd)
        if not flags:
            _clear(workdir)
        return facts

    def _mount_tmp(self) -> None:
        """In the child's own mount namespace: empty tmpfs on every place a job may write."""
        size = f"size={self.cfg['disk_mb']}m,mode=1777".encode()
        for path in ("/tmp", "/dev/shm", "/var/tmp"):
            if os.path.isdir(path) and _libc.mount(b"tmpfs", path.encode(), b"tmpfs",
                                                   _MS_NOSUID | _MS_NODEV, size) != 0:
                raise OSError(ctypes.get_errno(), f"cannot mount a tmpfs on {path}")

    def _watch(self, pid: int, sock: int, deadline: float) -> dict:
        """Until the child exits, the deadline passes or the judge hangs up; then kill the job."""
        pidfd = os.pidfd_open(pid)
        poll = select.poll()
        poll.register(pidfd, select.POLLIN)
        poll.register(sock, select.POLLRDHUP)
        timed_out = hung_up = False
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = not hung_up
                    break
                events = dict(poll.poll(left * 1000))
                if pidfd in events:
                    break
                if events.get(sock, 0) & (select.POLLRDHUP | select.POLLHUP | select.POLLERR):
                    # the judge is done (or gone): the program exits on its own when it reads the
                    # end of its requests; whatever it does instead, it gets a moment, then a kill
                    poll.unregister(sock)
                    hung_up, deadline = True, min(deadline, time.monotonic() + 0.05)
        finally:
            os.close(pidfd)
        _kill(pid)
        _kill_group(pid)
        status = os.waitpid(pid, 0)[1]
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        return {"timed_out": timed_out or sig == signal.SIGXCPU,
                "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                "signal": signal.Signals(sig).name if sig else None,
                "xfsz": sig == signal.SIGXFSZ or os.WIFEXITED(status) and
                os.WEXITSTATUS(status) == _XFSZ_EXIT}

    def _sweep(self, pid: int) -> None:
        """Kill whatever the job left running and reap it: nothing of a job outlives the job."""
        if self.cfg["clone_flags"]:  # the job's PID namespace died with its init; reap strays
            _reap()
            return
        deadline = time.monotonic() + 5
        _kill_group(pid)
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


# ---------------------------------------------------------------- the judge server
class JudgeServer:
    """Compiles tests (cached) and runs each job's tests itself, against the program's process.

    No code of the program runs here, only its answers as data, so jobs share this process: its
    builtins are put back and ``random`` reseeded before each, and a timer bounds the judge's own
    time (the pool's deadline is the backstop for a computation no timer can interrupt).
    """

    def __init__(self, cfg: dict, uid: int | None):
        self.cfg, self.judge = cfg, _side("judge")
        self.hooks = self.judge.Hooks(cfg["max_feedback_chars"])  # one for every job: reset per test
        self.compiled: dict = {}  # test source -> judge.compile_test(source, hooks); tests recur
        self.builtins = dict(vars(builtins))
        signal.signal(signal.SIGALRM, self._expire)
        if uid is not None:  # root: the judge needs no privilege at all, so it keeps none
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)

    def _compile(self, tests: list[str]) -> list:
        if len(self.compiled) > 4096:
            self.compiled.clear()
        for src in tests:
            if src not in self.compiled:
                self.compiled[src] = self.judge.compile_test(src, self.hooks)
        return [self.compiled[src] for src in tests]

    def run(self, job: dict, fds: list) -> dict:
        """Judge one job against the program on the job's socket ``fds[0]``; return the facts."""
        sock = fds[0]
        start = time.monotonic()
        facts = {"loaded": False, "load_error": None, "load_memory": False, "results": [],
                 "done": False, "judge_timed_out": False}
        random.seed(0)
        try:
            compiled = self._compile(job["tests"])
            signal.setitimer(signal.ITIMER_REAL, job["timeout_s"] + _JUDGE_GRACE_S)
            self.judge.run_tests(job, compiled, self.hooks, sock, facts,
                                 start + job["timeout_s"] + _JUDGE_GRACE_S / 2)
        except self.judge.Expired:
            facts["judge_timed_out"] = True
        except BaseException as e:  # noqa: BLE001 - a broken judge fails the job, not the server
            facts["judge_error"] = f"{type(e).__name__}: {e}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            os.close(sock)
            live = vars(builtins)
            if live != self.builtins:
                live.clear()
                live.update(self.builtins)
        return facts

    def _expire(self, signum: int, frame: object) -> None:
        raise self.judge.Expired


def _output_limit(signum: int, frame: object) -> None:
    _exit(_XFSZ_EXIT)


def _clear(workdir: str) -> None:
    """Remove a job's work dir; set aside what cannot be removed (a non-root plain run)."""
    try:
        os.rmdir(workdir)  # the common case, much cheaper than rmtree on a disk
        return
    except FileNotFoundError:
        return
    except OSError:
        import shutil  # only here: a larger server forks slower

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


def main() -> int:
    """Serve jobs from the socket on stdin until it closes."""
    role, cfg = sys.argv[1], json.loads(sys.argv[2])
    _side(role)  # imported while this folder is still on sys.path (``prepare`` takes it off)
    control = os.dup(0)
    uid = random.SystemRandom().randrange(1 << 20, 1 << 30) if os.geteuid() == 0 else None
    try:
        info = prepare(cfg, role)
    except OSError as e:
        protocol.send_message(control, {"ready": False, "error": f"{role} server: {e}"})
        return 1
    os.dup2(cfg["null_fd"], 0)
    os.dup2(cfg["null_fd"], 1)
    server = (ProgramServer if role == "program" else JudgeServer)(cfg, uid)
    protocol.send_message(control, {"ready": True, "uid": uid, "pid": os.getpid(), **info})
    reader = protocol.Reader(control)
    while True:
        fds: list = []
        job = reader.recv(fds=fds)
        if job is None:
            return 0
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            protocol.send_message(control, {"error": f"a job needs one socket, got {len(fds)}"})
            continue
        protocol.send_message(control, server.run(job, fds))


if __name__ == "__main__":
    sys.exit(main())
