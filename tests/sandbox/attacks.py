"""Attacks on mucode.sandbox, one per class of hole, each checked for its honest verdict and for
nothing left behind. Not a test module: ``test_attacks.py`` runs ``run_all`` in the test process
(root in CI) and, copied to a world-readable folder, as the unprivileged user ``nobody`` under
another interpreter; so this file uses only the standard library and ``mucode.sandbox``.

    python attacks.py '{"isolation": "bwrap"}'      # prints {"attack": "what went wrong", ...}

Each attack runs on a one-worker sandbox (so state a job leaves would reach the next job), then
``_after`` checks that no process carrying the attack's marker is alive anywhere on the machine
and that the same worker still gives a right program PASSED and a wrong one FAILED. A program
below reporting what it found is our own code, honest about what it saw: a breach shows up as a
wrong verdict or a found secret, never as a crash of the pool.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
import traceback
import uuid

from mucode.sandbox import Job, Sandbox, SandboxConfig, Status

RIGHT = Job("def f(x):\n    return x + 1\n", ["assert f(1) == 2", "assert f(2) == 3"], n_public=1)
WRONG = Job("def f(x):\n    return x + 2\n", ["assert f(1) == 2", "assert f(2) == 3"], n_public=1)


def marker() -> str:
    """A process name no other process has (15 characters: what /proc/<pid>/comm holds)."""
    return f"mc{uuid.uuid4().hex[:13]}"


def job(program: str, tests: list[str], **kwargs) -> Job:
    return Job(textwrap.dedent(program), tests, **kwargs)


def _named(mark: str) -> list[int]:
    """Pids on this machine whose name or command line carries ``mark``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        if mark in comm or mark in cmdline:
            found.append(int(pid))
    return found


def _after(sb: Sandbox, mark: str | None) -> None:
    if mark is not None:
        deadline = time.monotonic() + 2  # a killed process may take a moment to leave /proc
        while _named(mark) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _named(mark), f"a process of the job is still alive: {_named(mark)}"
    right, wrong = sb.run_batch([RIGHT, WRONG])
    assert right.passed and wrong.tests_passed == [False, False], \
        f"the worker gives wrong verdicts afterwards: {right}, {wrong}"


# ---------------------------------------------------------------- forging the channel
HELPER = """
import ctypes, json, os, struct, time
ctypes.CDLL(None).prctl(15, {mark!r}.encode(), 0, 0, 0)  # PR_SET_NAME
def answer(fd):
    # answer every request on every socket we hold as if the program passed
    buffer = b""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:
            return
        if not chunk:
            return
        buffer += chunk
        while len(buffer) >= 4 and len(buffer) >= 4 + struct.unpack(">I", buffer[:4])[0]:
            size = struct.unpack(">I", buffer[:4])[0]
            request, buffer = json.loads(buffer[4:4 + size]), buffer[4 + size:]
            ok = {{"f": ["h", 0, "function", "f"]}} if request.get("op") == "names" else 10
            body = json.dumps({{"ok": ok, "back": [None] * len(request.get("args", []))}}).encode()
            os.write(fd, struct.pack(">I", len(body)) + body)
"""


def forged_channel(sb: Sandbox) -> str:
    """Setsid'd helpers holding every descriptor the program has answer the judge's requests with
    forged values, racing the program's own answers; another job also writes forged frames and
    old-style verdict lines to every descriptor before its top level ends; both exit slowly. An
    answer is only ever the program's answer: wrong answers fail, whoever sends them."""
    mark = marker()
    helpers = HELPER.format(mark=mark) + """
import os, struct
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for fd in range(3, 64):
            try:
                os.fstat(fd)
            except OSError:
                continue
            if os.fork() == 0:
                answer(fd)
                os._exit(0)
        time.sleep(60)
    os._exit(0)
def f(x):
    time.sleep(0.05)
    return x
"""
    frames = """
for fd in range(3, 64):
    for forged in (b"passed\\n", b"0 T 0 p \\n", struct.pack(">I", 8) + b'{"ok":2}'):
        try:
            os.write(fd, forged)
        except OSError:
            pass
time.sleep(0.3)
"""
    tests = ["assert f(1) == 2", "assert f(5) == 6", "assert f(7) == 8"]
    racing, forging = sb.run_batch([Job(helpers, tests, n_public=1), Job(helpers + frames, tests, n_public=1)])
    assert racing.status == Status.FAILED and not any(racing.tests_passed), f"forged: {racing}"
    assert not forging.passed and not any(forging.tests_passed), f"forged: {forging}"
    return mark


# ---------------------------------------------------------------- reaching the tests
SCAN = """
import ctypes, gc, re, sys
SECRET = re.compile(rb"QZX7[0-9a-f]{32}")  # matches a secret, not this pattern's own text
def scan():
    found = set()
    try:
        gc.unfreeze()
    except AttributeError:
        pass
    texts = []
    for obj in gc.get_objects():
        try:
            texts.append(repr(obj)[:100000])
        except Exception:
            pass
    frame = sys._getframe()
    while frame is not None:
        texts += [repr(frame.f_locals)[:100000], repr(frame.f_globals)[:100000]]
        frame = frame.f_back
    for text in texts:
        found.update(m.decode() for m in SECRET.findall(text.encode(errors="replace")))
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: /proc/self/mem readable again
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if "r" not in perms:
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except (OSError, OverflowError, ValueError):
                continue
            found.update(m.decode() for m in SECRET.findall(data))
    return sorted(found)
"""


def tests_out_of_reach(sb: Sandbox) -> None:
    """Another problem's private test, judged on the same worker just before, and this job's own
    private expected value are nowhere in the program's memory: not through gc (frozen or not),
    frames, nor by reading /proc/self/mem (the program text holds neither)."""
    other, own = f"QZX7{uuid.uuid4().hex}", f"QZX7{uuid.uuid4().hex}"
    first = Job("def g():\n    return 0\n", ["assert g() == 0", f"assert g() != {other!r}"], n_public=1)
    program = SCAN + "def f():\n    return scan()\ndef g():\n    return 0\n"
    second = Job(program, ["assert f() == []", f"assert g() == {own!r}"], n_public=1)
    sb.run_batch([first])
    r = sb.run_batch([second])[0]
    assert r.tests_passed == [True, False], f"a secret reached the program: {r.feedback}"


def frames_and_exceptions(sb: Sandbox) -> None:
    """Walking frames to rewrite locals, or putting what frames hold into an exception message:
    nothing of the tests is there to change or to leak."""
    program = """
    import sys
    def f(x):
        frame = sys._getframe()
        seen = []
        while frame is not None:
            for scope in (frame.f_locals, frame.f_globals):
                for key in list(scope):
                    if key in ("ok", "passed", "result", "expected", "tests", "failure"):
                        seen.append(repr(scope[key])[:200])
            frame = frame.f_back
        raise ValueError(" | ".join(seen))
    """
    r = sb.run_batch([job(program, ["assert f(1) == 2", "assert f(2) == 'private-9d41'"], n_public=1)])[0]
    assert r.tests_passed == [False, False] and "private-9d41" not in r.feedback, r


# ---------------------------------------------------------------- fooling the comparison
def fooled_comparisons(sb: Sandbox) -> None:
    """Builtins and modules the tests use, redefined by the program; a callable the old checker
    took for C; a class that gains __eq__ after its type was checked; a meta_path finder that
    hands tests the program's own unittest. Every test must fail: every answer is wrong."""
    program = """
    import sys, types
    class Yes:
        pass
    def abs(x): return 0
    def set(x): return {1, 2}
    def sorted(x): return [1, 2, 3]
    def isinstance(x, t): return True
    def len(x): return 3
    class math:
        isclose = staticmethod(lambda *a, **k: True)
        fabs = staticmethod(lambda x: 0.0)
    def f():
        return 5.0
    def g():
        return [3, 3]
    h = staticmethod(lambda: Yes())
    def k():
        return Yes()
    class Finder:
        def find_spec(self, name, path=None, target=None):
            if name in ("unittest", "fractions", "statistics"):
                from importlib.machinery import ModuleSpec
                return ModuleSpec(name, self)
        def create_module(self, spec):
            module = types.ModuleType(spec.name)
            module.TestCase = lambda *a: types.SimpleNamespace(assertEqual=lambda *a: None)
            module.Fraction = lambda *a: 5.0
            module.mean = lambda xs: 5.0
            return module
        def exec_module(self, module):
            pass
    sys.meta_path.insert(0, Finder())
    for name in ("unittest", "fractions", "statistics"):
        sys.modules.pop(name, None)
    """
    tests = ["assert abs(f() - 3.5) < 1e-6", "assert set(g()) == {1, 2}", "assert sorted(g()) == [1, 2, 3]",
             "assert isinstance(g(), dict)", "assert len(g()) == 3", "assert math.isclose(f(), 1.0)",
             "assert math.fabs(f() - 1) < 1e-9", "assert h() == 1", "assert k() == 1",
             "Yes.__eq__ = lambda self, other: True\nassert k() == 1",
             "import unittest\nunittest.TestCase().assertEqual(f(), 1.0)",
             "from fractions import Fraction\nassert f() == Fraction(1, 2)",
             "import statistics\nassert statistics.mean([1, 2]) == f()"]
    r = sb.run_batch([job(program, tests, entry_point="f")])[0]
    assert not any(r.tests_passed), f"fooled: {[t for t, ok in zip(tests, r.tests_passed) if ok]}"


# ---------------------------------------------------------------- what a job leaves behind
def nothing_outlives_a_job(sb: Sandbox) -> str:
    """A System V shared-memory segment, files in every writable place, and a setsid'd daemon:
    none of them is there for the next job (nor for the host)."""
    mark = marker()
    first = f"""
    import ctypes, os, time
    libc = ctypes.CDLL(None, use_errno=True)
    def f():
        shm = libc.shmget(0x4d55, 4096, 0o1666)  # IPC_CREAT | 0666
        if shm >= 0:
            libc.shmat.restype = ctypes.c_void_p
            ctypes.memmove(libc.shmat(shm, None, 0), b"{mark}", 15)
        for d in ("/tmp", "/dev/shm", "/var/tmp", "/dev", "/", os.getcwd()):
            try:
                with open(os.path.join(d, "{mark}"), "w") as fh:
                    fh.write("x")
            except OSError:
                pass
        if os.fork() == 0:
            os.setsid()
            libc.prctl(15, b"{mark}", 0, 0, 0)
            time.sleep(120)
            os._exit(0)
        return 1
    """
    second = f"""
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    def f():
        found = []
        if libc.shmget(0x4d55, 0, 0) >= 0:
            found.append("shm")
        for d in ("/tmp", "/dev/shm", "/var/tmp", "/dev", "/", os.getcwd()):
            if os.path.exists(os.path.join(d, "{mark}")):
                found.append(d)
        return found
    """
    r1, r2 = sb.run_batch([job(first, ["assert f() == 1"]), job(second, ["assert f() == []"])])
    assert r1.passed and r2.passed, f"left for the next job: {r2.feedback}"
    for d in ("/tmp", "/dev/shm", "/var/tmp", "/dev", "/"):
        assert not os.path.exists(os.path.join(d, mark)), f"left on the host: {d}/{mark}"
    return mark


# ---------------------------------------------------------------- reaching the servers
def servers_out_of_reach(sb: Sandbox) -> None:
    """Signalling, tracing, and writing through /proc/<pid>/fd to every process the job can see,
    twice in one batch: the batch finishes, the job fails, later verdicts are right (none shifted)."""
    program = """
    import ctypes, os, signal, struct
    libc = ctypes.CDLL(None, use_errno=True)
    forged = struct.pack(">I", 40) + b'{"results": [[true, false, ""]], "done": 1}'
    def f(x):
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
        for pid in pids:
            libc.ptrace(16, pid, 0, 0)  # PTRACE_ATTACH
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    try:
                        with open(f"/proc/{pid}/fd/{fd}", "wb", 0) as fh:
                            fh.write(forged)
                    except OSError:
                        pass
            except OSError:
                pass
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        return x
    """
    attack = job(program, ["assert f(1) == 2"])
    results = sb.run_batch([attack, RIGHT, attack, WRONG, RIGHT])
    assert [r.passed for r in results] == [False, True, False, False, True], results


def process_limit(sb: Sandbox, limit: int) -> str:
    """A fork bomb stops at the process limit, in every mode; nothing of it survives."""
    mark = marker()
    program = f"""
    import ctypes, os, time
    def f():
        made = 0
        for _ in range(1000):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                ctypes.CDLL(None).prctl(15, b"{mark}", 0, 0, 0)
                time.sleep(60)
                os._exit(0)
            made += 1
        return made
    """
    r = sb.run_batch([job(program, [f"assert f() < {limit}"])])[0]
    assert r.passed, f"more processes than the limit: {r.feedback}"
    return mark


# ---------------------------------------------------------------- no false negatives
def rich_values_pass(sb: Sandbox) -> None:
    """Honest answers of rich types pass: fractions, decimals, enums, dataclasses, namedtuples,
    Counters, deques, dates, generators, unittest assertions, MBPP 414's 0 == False."""
    program = """
    import collections, dataclasses, datetime, decimal, enum, fractions
    class Color(enum.Enum):
        RED = 1
        BLUE = 2
    @dataclasses.dataclass(frozen=True)
    class Point:
        x: int
        y: int
    P = collections.namedtuple("P", "x y")
    def half(): return fractions.Fraction(1, 2)
    def price(): return decimal.Decimal("1.10")
    def color(): return Color.BLUE
    def point(): return Point(1, 2)
    def pair(): return P(1, 2)
    def counts(): return collections.Counter("aab")
    def window(): return collections.deque([1, 2], maxlen=3)
    def day(): return datetime.date(2024, 2, 29)
    def squares(n): return (i * i for i in range(n))
    def overlapping(a, b): return 0
    def sort_in_place(xs): xs.sort()
    """
    tests = ["from fractions import Fraction\nassert half() == Fraction(1, 2) and half() == 0.5",
             "from decimal import Decimal\nassert price() == Decimal('1.10')",
             "assert color() == Color.BLUE and color() != Color.RED and color() is not None",
             "assert point() == Point(1, 2) and point().x == 1 and point() != Point(2, 1)",
             "assert pair() == (1, 2) and pair().y == 2",
             "assert counts() == {'a': 2, 'b': 1}",
             "import collections\nassert window() == collections.deque([1, 2])",
             "import datetime\nassert day() == datetime.date(2024, 2, 29)",
             "assert list(squares(4)) == [0, 1, 4, 9]",
             "import unittest\nunittest.TestCase().assertEqual(half(), 0.5)",
             "assert overlapping([1, 2], [3, 4]) == False",
             "xs = [3, 1, 2]\nsort_in_place(xs)\nassert xs == [1, 2, 3]"]
    r = sb.run_batch([job(program, tests)])[0]
    assert r.passed, f"an honest value failed: {r.feedback or r.tests_passed}"


def run_all(config: dict) -> dict[str, str]:
    """Every attack on a fresh one-worker sandbox; {attack: what went wrong} (empty: all held)."""
    limit = 20
    attacks = {"forged_channel": forged_channel, "tests_out_of_reach": tests_out_of_reach,
               "frames_and_exceptions": frames_and_exceptions, "fooled_comparisons": fooled_comparisons,
               "nothing_outlives_a_job": nothing_outlives_a_job, "servers_out_of_reach": servers_out_of_reach,
               "process_limit": lambda sb: process_limit(sb, limit), "rich_values_pass": rich_values_pass}
    problems = {}
    with Sandbox(SandboxConfig(**{"timeout_s": 2.0, "memory_mb": 1024, "workers": 1,
                                  "max_processes": limit, **config})) as sb:
        problems["isolation"] = "" if sb.isolation.value == config.get("isolation", "bwrap") else \
            f"ran under {sb.isolation.value}"
        if sb.isolation.value == "plain" and not sb.info[0]["job_namespaces"]:  # README: plain loses
            return {"skipped": "no per-job namespaces here (plain isolation without root or user "
                               "namespaces), which the README lists as what plain loses"}
        for name, attack in attacks.items():
            try:
                _after(sb, attack(sb))
            except Exception as e:  # noqa: BLE001 - reported per attack
                problems[name] = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
    return {k: v for k, v in problems.items() if v}


if __name__ == "__main__":
    print(json.dumps(run_all(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})))
