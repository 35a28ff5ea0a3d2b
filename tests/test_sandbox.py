"""mucode.sandbox end to end (pool, servers, judge): feedback, limits, one hostile property per test.

Every hostile test checks the verdict, that the pool still runs a correct program afterwards, and
that nothing of the job is left on the host: no process of the job's uid, none whose command line
carries the test's marker, no file where the program tried to write. The attacks that forge a
verdict, and the same checks as a non-root user, are in tests/sandbox/test_attacks.py.
"""

from __future__ import annotations

import os
import signal
import socket
import textwrap
import time
import uuid

import pytest

from mucode.sandbox import (ExecResult, IsolationMode, Job, Sandbox, SandboxConfig, SandboxError,
                            Status, check_job, run)

pytestmark = [pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux only"),
              pytest.mark.timeout(120)]
OK = "def f():\n    return 1\n"


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(SandboxConfig(timeout_s=2.0, memory_mb=512)) as sb:
        yield sb


@pytest.fixture(scope="module")
def plain():
    with Sandbox(SandboxConfig(timeout_s=2.0, memory_mb=512, isolation="plain", workers=1)) as sb:
        yield sb


def host_processes(uids: set, marker: str | None = None) -> list[int]:
    """Host pids running as one of ``uids`` or whose command line contains ``marker``."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/status") as f:
                uid = int(f.read().split("\nUid:")[1].split()[0])
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except (OSError, IndexError):
            continue
        if uid in uids or (marker and marker in cmdline):
            found.append(int(name))
    return found


def go(sb: Sandbox, program: str, tests=("assert f() == 1",), marker: str | None = None,
       **job) -> ExecResult:
    """Run one job; then check the pool is alive and the job left no process behind."""
    result = sb.run_batch([Job(textwrap.dedent(program), list(tests), **job)])[0]
    uids = {i["uid"] for i in sb.info if i["uid"] is not None}  # the judge server keeps its own
    assert host_processes(uids, marker) == []
    assert sb.run_batch([Job(OK, ["assert f() == 1"])])[0].passed
    return result


def marker() -> str:
    return f"mucode-test-{uuid.uuid4().hex}"


# ---------------------------------------------------------------- verdicts and feedback
def test_feedback_names_the_call_and_its_value(sandbox):
    r = go(sandbox, "def fold(x):\n    return x * 3\n", ["assert fold(3) == 10", "assert fold(1) == 3"])
    assert r.status == Status.FAILED and r.tests_passed == [False, True]
    assert r.feedback == "Failed: assert fold(3) == 10\nfold(3) returned 9"


def test_feedback_gives_the_exception_and_the_programs_line(sandbox):
    program = "def fold(xs):\n    out = []\n    for x in xs:\n        out = out + x\n    return out\n"
    r = go(sandbox, program, ["assert fold([1, 2]) == [2, 4]"])
    assert r.feedback == ("Failed: assert fold([1, 2]) == [2, 4]\nfold([1, 2]) raised TypeError: "
                          'can only concatenate list (not "int") to list (line 4)')


def test_syntax_error_is_an_error_with_its_line(sandbox):
    r = go(sandbox, "def f():\n    return (1\n\nx = 2 +\n", ["assert f() == 1"])
    assert r.status == Status.ERROR and r.tests_passed == [False]
    assert r.feedback.startswith("Error: SyntaxError: ") and "(line " in r.feedback


def test_exception_at_import_is_an_error(sandbox):
    r = go(sandbox, "def f():\n    return 1\nundefined_name\n")
    assert r.status == Status.ERROR
    assert r.feedback == "Error: NameError: name 'undefined_name' is not defined (line 3)"


def test_passing_program_has_no_feedback(sandbox):
    r = go(sandbox, OK, ["assert f() == 1", "x = f()\nassert x + 1 == 2"], n_public=1)
    assert r.passed and r.tests_passed == [True, True] and r.feedback == ""
    assert r.public_passed and r.private_passed


def test_comparisons_mean_what_they_mean_in_python(sandbox):
    # the judge compares its own copies of the values: 0 == False and 1 == 1.0 as in a fresh
    # interpreter (MBPP 414's reference returns 0 where its test expects False), [1] != (1,)
    r = go(sandbox, "def f(x):\n    return x > 1\ndef g():\n    return [1]\n",
           ["assert f(2) == 1", "assert f(0) == 0", "assert f(0) is False", "assert f(2)",
            "assert g() != (1,)", "assert g() == [1.0]", "assert g() == (1,)"])
    assert r.tests_passed == [True] * 6 + [False]
    assert r.feedback == "Failed: assert g() == (1,)\ng() returned [1]"


def test_a_value_that_cannot_be_sent_fails_the_test_that_reads_it(sandbox):
    r = go(sandbox, "x = []\nx.append(x)\ndef f():\n    return x\n",
           ["assert x == 1", "assert f() == 1", "assert True"])
    assert r.tests_passed == [False, False, True]
    assert r.test_feedback[1] == "Failed: assert f() == 1\nf() raised EncodeError: a value nested more " \
                                 "than 200 deep (or cyclic)"


def test_namedtuples_and_float_tolerance_tests_pass(sandbox):
    program = ("import collections\nP = collections.namedtuple('P', 'x y')\n"
               "def f():\n    return P(1, 2)\ndef g():\n    return 0.1 + 0.2\n")
    tests = ["assert f() == (1, 2)", "assert abs(g() - 0.3) < 1e-9", "assert g() != 0.3",
             "assert 0 < g() < 1", "assert 3 in [g(), 3]", "assert not g() > 1 and g()"]
    assert go(sandbox, program, tests).passed


def test_multiline_humaneval_style_test(sandbox):
    check = "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(2) == 3\n\ncheck(g)"
    assert go(sandbox, "def g(x):\n    return x + 1\n", [check]).passed
    r = go(sandbox, "def g(x):\n    return 2\n", [check])
    assert r.status == Status.FAILED
    assert r.feedback == "Failed: assert candidate(2) == 3\ncandidate(2) returned 2"


def test_private_results_never_reach_feedback(sandbox):
    program = "import time\ndef f(x):\n    if x == 2:\n        time.sleep(60)\n    return 0\n"
    alone = go(sandbox, program, ["assert f(1) == 1"])
    r = go(sandbox, program, ["assert f(1) == 1", "assert f(2) == 0", "assert f(3) == 0"],
           n_public=1, timeout_s=1)
    assert r.status == Status.TIMEOUT and r.tests_passed == [False, False, False]
    assert r.feedback == alone.feedback == "Failed: assert f(1) == 1\nf(1) returned 0"


def test_results_before_a_hang_are_kept(sandbox):
    program = "import time\ndef f(x):\n    if x == 2:\n        time.sleep(60)\n    return x\n"
    r = go(sandbox, program, ["assert f(1) == 1", "assert f(2) == 2", "assert f(3) == 3"],
           n_public=1, timeout_s=1)
    assert r.status == Status.TIMEOUT and r.tests_passed == [True, False, False]
    assert r.feedback == "" and r.public_passed and not r.private_passed


def test_a_public_hang_says_timed_out(sandbox):
    r = go(sandbox, "def f():\n    while True:\n        pass\n", timeout_s=1)
    assert r.status == Status.TIMEOUT and r.feedback == "Failed: assert f() == 1\nTimed out after 1 s"
    assert 1 <= r.duration_s < 3


def test_runs_are_deterministic(sandbox):
    program = "import random\ndef f():\n    return [random.random(), sorted({'b', 'a', 'c'}), hash('x')]\n"
    first, second = go(sandbox, program), go(sandbox, program)
    assert first.feedback == second.feedback and "f() returned [0.844421851" in first.feedback


def test_no_public_tests_means_no_feedback(sandbox):
    r = go(sandbox, "def f():\n    return 2\n", n_public=0)
    assert r.status == Status.FAILED and r.feedback == ""


# ---------------------------------------------------------------- limits
def test_infinite_loop_at_top_level(sandbox):
    r = go(sandbox, "while True:\n    pass\n", timeout_s=1)
    assert r.status == Status.TIMEOUT and r.feedback == "Timed out after 1 s"


def test_sleep(sandbox):
    r = go(sandbox, "import time\ndef f():\n    time.sleep(100)\n", timeout_s=1)
    assert r.status == Status.TIMEOUT and not r.passed


def test_memory_bomb(sandbox):
    r = go(sandbox, "x = bytearray(1 << 34)\n")
    assert r.status == Status.MEMORY and r.feedback == "Memory limit exceeded"


def test_gradual_memory_bomb_in_a_test(sandbox):
    r = go(sandbox, "def f():\n    xs = []\n    while True:\n        xs.append(' ' * 10**7)\n")
    assert r.status == Status.MEMORY
    assert r.feedback == "Failed: assert f() == 1\nMemory limit exceeded"


def test_fork_bomb(sandbox):
    program = """
    import os
    while True:
        try:
            os.fork()
        except OSError:
            pass
    """
    r = go(sandbox, program, timeout_s=1)
    assert r.status == Status.TIMEOUT


def test_child_that_outlives_its_parent(sandbox):
    m = marker()
    program = f"""
    import os
    def f():
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv("/bin/sh", ["/bin/sh", "-c", "while :; do sleep 1; done", "{m}"])
            os._exit(0)
        return 1
    """
    assert go(sandbox, program, marker=m).passed


def test_megabytes_of_output(sandbox):
    r = go(sandbox, "print('x' * 10**7)\ndef f():\n    return 1\n")
    assert r.status == Status.OUTPUT_LIMIT and r.feedback == "Output limit exceeded"


def test_output_in_a_loop_during_a_test(sandbox):
    r = go(sandbox, "def f():\n    while True:\n        print('spam' * 1000)\n")
    assert r.status == Status.OUTPUT_LIMIT
    assert r.feedback == "Failed: assert f() == 1\nOutput limit exceeded"


def test_sigterm_ignored(sandbox):
    r = go(sandbox, "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    pass\n",
           timeout_s=1)
    assert r.status == Status.TIMEOUT


def test_deep_recursion(sandbox):
    r = go(sandbox, "def f(n=0):\n    return f(n + 1)\n")
    assert r.status == Status.FAILED
    assert r.feedback.startswith("Failed: assert f() == 1\nf() raised RecursionError: maximum recursion")
    r = go(sandbox, "import sys\nsys.setrecursionlimit(10**7)\ndef f(n=0):\n    return f(n + 1)\n",
           timeout_s=1)
    assert r.status in (Status.FAILED, Status.MEMORY, Status.TIMEOUT) and not r.passed


def test_segfault_via_ctypes(sandbox):
    r = go(sandbox, "import ctypes\nctypes.string_at(0)\n")
    assert r.status == Status.ERROR
    assert r.feedback == "Error: the program crashed (SIGSEGV) before the tests ran"


def test_stray_threads(sandbox):
    program = """
    import threading, time
    def spin():
        while True:
            time.sleep(0.001)
    threading.Thread(target=spin).start()
    def f():
        threading.Thread(target=spin).start()
        return 1
    """
    assert go(sandbox, program, ["assert f() == 1"] * 3).passed


def test_reading_stdin_gets_end_of_file(sandbox):
    r = go(sandbox, "def f():\n    return input()\n")
    assert r.feedback == "Failed: assert f() == 1\nf() raised EOFError: EOF when reading a line (line 2)"


def test_null_bytes_in_the_program_are_an_error(sandbox):
    r = go(sandbox, "def f():\n    return 1\x00\n")
    assert r.status == Status.ERROR and r.feedback.startswith("Error: ")


# ---------------------------------------------------------------- isolation
def write_attempts(paths: list[str]) -> str:
    return f"""
    import os
    def f():
        made = []
        for p in {paths!r}:
            try:
                with open(p, "w") as fh:
                    fh.write("x")
                made.append(p)
            except OSError:
                pass
        return made
    """


def test_writes_outside_the_work_dir(sandbox, plain, tmp_path):
    m = marker()
    paths = [f"/tmp/{m}", f"../{m}", f"{tmp_path}/{m}", f"{os.getcwd()}/{m}", f"/root/{m}",
             f"/etc/{m}", f"/var/tmp/{m}", f"/dev/shm/{m}", f"/dev/{m}", f"/{m}",
             f"{os.path.expanduser('~')}/{m}"]
    # a job writes only its own empty tmpfs mounts (/tmp, /dev/shm, /var/tmp), gone when it ends
    own = "assert [p for p in f() if not p.startswith(('/tmp/', '/var/tmp/', '/dev/shm/'))] == []"
    for sb in (sandbox, plain):
        assert go(sb, write_attempts(paths), [own]).passed
        for p in paths[:1] + paths[2:]:
            assert not os.path.exists(p), p


def test_deleting_files(sandbox, tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("data")
    program = f"""
    import os, shutil
    def f():
        for p in ({str(victim)!r}, "/etc/hostname", "/usr/bin/env"):
            try:
                os.remove(p)
            except OSError:
                pass
        shutil.rmtree({str(tmp_path)!r}, ignore_errors=True)
        shutil.rmtree("/usr/share/doc", ignore_errors=True)
        return 1
    """
    assert go(sandbox, program).passed
    assert victim.read_text() == "data" and os.path.exists("/usr/bin/env")


def test_no_network(sandbox):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        program = f"""
        import socket
        def f():
            reached = []
            for address in [("127.0.0.1", {port}), ("1.1.1.1", 53), ("8.8.8.8", 443)]:
                try:
                    socket.create_connection(address, timeout=0.3).close()
                    reached.append(address)
                except OSError:
                    pass
            return reached
        """
        assert go(sandbox, program, ["assert f() == []"]).passed
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_the_sandbox_test")
    monkeypatch.setenv("WANDB_API_KEY", "fake_wandb_key_for_the_sandbox_test")
    program = """
    import os
    def f():
        seen = [k for k in os.environ if "TOKEN" in k or "KEY" in k]
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/environ", "rb") as fh:
                    if b"fake" in fh.read():
                        seen.append(pid)
            except OSError:
                pass
        return seen
    """
    with Sandbox(SandboxConfig(workers=1)) as sb:
        assert go(sb, program, ["assert f() == []"]).passed


# ---------------------------------------------------------------- spoofing
def test_printing_a_success_marker(sandbox):
    r = go(sandbox, "print('passed')\nprint('All tests passed')\ndef f():\n    print('ok')\n    return 2\n")
    assert r.status == Status.FAILED


def test_sys_exit_before_the_tests(sandbox):
    r = go(sandbox, "import sys\ndef f():\n    return 2\nsys.exit(0)\n")
    assert r.status == Status.ERROR and r.feedback == "Error: SystemExit: 0 (line 4)"


def test_os_exit_before_the_tests(sandbox):
    r = go(sandbox, "import os\nos._exit(0)\n")
    assert r.status == Status.ERROR
    assert r.feedback == "Error: the program exited (exit code 0) before the tests ran"


def test_os_exit_during_a_test(sandbox):
    r = go(sandbox, "import os\ndef f():\n    os._exit(0)\n", ["assert f() == 1", "assert True"])
    assert r.status == Status.FAILED and r.tests_passed == [False, False]
    assert r.feedback == "Failed: assert f() == 1\nThe program exited (exit code 0)"


def test_replacing_builtins(sandbox):
    program = """
    import builtins
    builtins.AssertionError = type("Nope", (Exception,), {})
    builtins.isinstance = lambda *a: True
    builtins.bool = lambda *a: True
    builtins.len = lambda *a: 3
    __builtins__["isinstance"] = lambda *a: True
    def f():
        return "x"
    """
    r = go(sandbox, program, ["assert isinstance(f(), int)", "assert len(f()) == 3", "assert f() == 1"])
    assert r.tests_passed == [False, False, False]
    r = go(sandbox, "__builtins__.isinstance = lambda *a: True\ndef f():\n    return 2\n")
    assert not r.passed


def test_patching_the_harness_helpers(sandbox):
    program = """
    import sys, operator, collections
    for module in list(sys.modules.values()):
        for name in ("equal", "compare", "truthy", "rigged", "describe", "check"):
            try:
                setattr(module, name, lambda *a, **k: True)
            except (AttributeError, TypeError):
                pass
    operator.eq = operator.lt = lambda *a: True
    collections.Counter = type("C", (dict,), {"__eq__": lambda *a: True})
    import math
    math.fabs = lambda x: 0.0
    math.isclose = lambda *a, **k: True
    sys.modules["statistics"] = type(sys)("statistics")
    sys.modules["statistics"].mean = lambda xs: 2
    def f():
        return 2
    """
    check = "def check(candidate):\n    import math\n    assert math.fabs(candidate() - 1) < 1e-6\n\ncheck(f)"
    tests = ["assert f() == 1", "assert f() < 1", "assert math.isclose(f(), 1)", check,
             "import statistics\nassert statistics.mean([0, 1]) == f()"]
    assert go(sandbox, program, tests).tests_passed == [False] * 5


def test_the_harness_modules_and_folders_are_out_of_reach(sandbox, plain):
    program = """
    import sys
    def f():
        names = ("checker", "values", "rewrite", "protocol", "forkserver", "judge", "wire",
                 "_checker", "_harness")
        return ([k for k in sys.modules if k in names or k.startswith("mucode")]
                + [p for p in sys.path if "mucode" in p]
                + [k for k in ("program", "__main__") if sys.modules[k].__dict__ is not globals()])
    """
    for sb in (sandbox, plain):
        r = go(sb, program, ["assert f() == []"])
        assert r.passed, r.feedback


def test_object_equal_to_everything(sandbox):
    program = """
    class Yes:
        def __eq__(self, other): return True
        def __ne__(self, other): return False
        def __hash__(self): return 0
        def __bool__(self): return True
        def __sub__(self, other): return 0
        def __abs__(self): return 0
    def f():
        return Yes()
    """
    tests = ["assert f() == 1", "assert not f() != 1", "assert f()", "assert abs(f() - 1) < 1e-6",
             "assert [f()] == [1]", "assert 1 in [f()]"]
    r = go(sandbox, program, tests)
    assert r.tests_passed == [False] * 6
    assert "returned an object of type Yes, which is not plain data" in r.feedback


def test_rigged_str_and_int_subclasses(sandbox):
    program = """
    class S(str):
        def __eq__(self, other): return True
        __hash__ = str.__hash__
    class I(int):
        def __eq__(self, other): return True
        __hash__ = int.__hash__
    def f():
        return S("no")
    def g():
        return I(0)
    def h():
        return {"k": I(0)}
    """
    r = go(sandbox, program, ['assert f() == "yes"', "assert g() == 1", 'assert h() == {"k": 1}'])
    assert r.tests_passed == [False, False, False]


def test_forged_results_on_every_fd(sandbox):
    program = """
    import os, struct, json
    def forge():
        lines = [b"passed\\n", b'{"passed": true}\\n', b"0 T 0 p \\n"]
        lines.append(struct.pack(">I", 11) + json.dumps({"ok": 1}).encode())
        for fd in range(3, 64):
            for line in lines:
                try:
                    os.write(fd, line)
                except OSError:
                    pass
    def f():
        forge()
        return 2
    forge()
    """
    r = go(sandbox, program, ["assert f() == 1", "assert f() == 1"])
    assert not r.passed and r.tests_passed == [False, False]


def test_reading_every_descriptor(sandbox):
    program = """
    import os
    for fd in range(3, 64):
        try:
            os.set_blocking(fd, False)
            os.read(fd, 64)
        except OSError:
            pass
    def f():
        return 1
    """
    assert go(sandbox, program).passed  # nothing to steal, nothing broken: the honest verdict


# ---------------------------------------------------------------- the plain fallback
def test_plain_isolation_still_limits_and_cleans(plain):
    m = marker()
    assert go(plain, OK).passed
    assert go(plain, "while True:\n    pass\n", timeout_s=1).status == Status.TIMEOUT
    daemon = f"""
    import os
    def f():
        if os.fork() == 0:
            os.setsid()
            os.execv("/bin/sh", ["/bin/sh", "-c", "while :; do sleep 1; done", "{m}"])
        return 1
    """
    assert go(plain, daemon, marker=m).passed
    assert go(plain, "def f():\n    return f()\n").status == Status.FAILED


def test_plain_isolation_fork_bomb_and_network(plain):
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    assert go(plain, bomb, timeout_s=1).status == Status.TIMEOUT
    if all(i["network_isolated"] for i in plain.info):
        net = "import socket\ndef f():\n    socket.create_connection(('1.1.1.1', 53), timeout=0.3)\n    return 1\n"
        assert go(plain, net).status == Status.FAILED


# ---------------------------------------------------------------- API and command line
def test_run_batch_keeps_input_order_and_submit_returns_futures(sandbox):
    jobs = [Job("import time\ntime.sleep(0.3)\n" + OK, ["assert f() == 1"])] + \
           [Job(f"def f():\n    return {i}\n", ["assert f() == 1"]) for i in range(6)]
    results = sandbox.run_batch(jobs, progress=True)
    assert [r.passed for r in results] == [True, False, True, False, False, False, False]
    assert sandbox.submit(Job(OK, ["assert f() == 1"])).result().passed


def test_auto_never_falls_back_silently_and_plain_says_what_it_loses(monkeypatch, caplog):
    monkeypatch.setattr("mucode.sandbox.pool._find_bwrap", lambda: "/bin/false")
    with pytest.raises(SandboxError, match=r"bubblewrap is not usable here .* shares the host's "
                                           r"filesystem .* set sandbox.isolation=plain"):
        Sandbox(SandboxConfig(workers=1))
    with pytest.raises(SandboxError, match="isolation=bwrap but bubblewrap is not usable"):
        Sandbox(SandboxConfig(workers=1, isolation="bwrap"))
    with Sandbox(SandboxConfig(workers=1, isolation="plain")) as sb:
        assert sb.isolation == IsolationMode.plain and go(sb, OK).passed
    assert "sandbox.isolation=plain: plain isolation shares the host's filesystem" in caplog.text


def our_children() -> set[int]:
    """Direct children of this process (the sandbox servers, or bwrap around them)."""
    kids = set()
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                    kids.add(int(name))
        except (OSError, IndexError, ValueError):
            continue
    return kids


def test_a_dead_worker_is_restarted():
    before = our_children()
    with Sandbox(SandboxConfig(workers=1)) as sb:
        for pid in our_children() - before:
            os.kill(pid, signal.SIGKILL)
        assert go(sb, OK).passed


def test_a_worker_that_dies_during_a_job_fails_only_that_job():
    before = our_children()
    with Sandbox(SandboxConfig(workers=1, timeout_s=10)) as sb:
        servers = our_children() - before
        slow = sb.submit(Job("import time\ndef f():\n    time.sleep(3)\n    return 1\n", ["assert f() == 1"]))
        after = sb.submit(Job(OK, ["assert f() == 1"]))
        time.sleep(0.5)
        for pid in servers:  # the OOM killer, a bug, an admin: not the job's doing
            os.kill(pid, signal.SIGKILL)
        r = slow.result()
        assert r.status == Status.FAILED and r.tests_passed == [False]
        assert r.feedback.startswith("Failed: the sandbox worker stopped during this job (the ")
        assert after.result().passed and go(sb, OK).passed


def test_another_interpreter_runs_the_programs():
    python = "/usr/bin/python3"
    if not os.path.exists(python):
        pytest.skip("no /usr/bin/python3")
    for isolation in ("auto", "plain"):
        config = SandboxConfig(workers=1, python=python, isolation=isolation)
        assert run("import sys\ndef f():\n    return sys.version_info >= (3, 10)\n",
                   ["assert f() == True"], config).passed


def test_run_one_job():
    assert run(OK, ["assert f() == 1"]).passed
    assert run(OK, ["assert f() == 2"], n_public=0).feedback == ""


def test_config_is_validated():
    with pytest.raises(ValueError, match="sandbox.isolation must be one of auto, bwrap, plain"):
        SandboxConfig(isolation="docker")
    with pytest.raises(ValueError, match="sandbox.timeout_s must be > 0"):
        SandboxConfig(timeout_s=0)
    with pytest.raises(ValueError, match="sandbox.workers must be >= 0"):
        SandboxConfig(workers=-1)
    assert SandboxConfig(workers=10**6).workers == 10**6  # clamped to the cores by Sandbox
    from omegaconf import OmegaConf  # as Hydra builds it from YAML values

    yaml = OmegaConf.merge(OmegaConf.structured(SandboxConfig), {"isolation": "plain", "timeout_s": 2})
    assert OmegaConf.to_object(yaml).isolation is IsolationMode.plain
    with pytest.raises(ValueError, match="field 'tests' must be a list of strings"):
        check_job(Job(OK, "assert f() == 1"))  # type: ignore[arg-type]
