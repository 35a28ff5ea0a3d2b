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
        future = sandbox.submit(Job.for_problem(problem, program))           # non-blocking

    mucode-exec samples.jsonl -o results.jsonl --timeout 3 --workers 2       # or python -m mucode.sandbox

Where each part runs. Parent side, imported by the training process: ``job.py`` (SandboxConfig,
Job, ExecResult, Status), ``pool.py`` (``Sandbox``: fork servers, bubblewrap, the isolation layers
and their cost), ``verdict.py`` (facts -> ExecResult, pure) and ``cli.py`` (``mucode-exec``). Child
side, ``child/``, stdlib only, never imported by the parent: ``forkserver.py`` (one fork per job,
limits, cleanup), ``checker.py`` (runs the program and its tests in the forked child),
``values.py`` (strict comparison, values that could lie) and ``rewrite.py`` (asserts -> hooks).
``protocol.py`` (message framing, ``clip``) is imported by both.

How the child side starts and finds ``protocol``. The pool runs the server as a script,
``python -S -s -B <dir>/child/forkserver.py CONFIG``, where ``<dir>`` holds ``protocol.py`` and
``child/`` as this package does: this folder itself under plain isolation, read-only bind mounts of
exactly those files under ``/run/mucode`` in bubblewrap (``pool._SERVER_FILES``). The script's
folder is ``sys.path[0]``, so its siblings import as top-level modules (``import checker``); the
server appends the folder above to ``sys.path`` (last, so no file there shadows the stdlib),
imports ``protocol`` the same way, and removes both folders from ``sys.path`` before any program
runs. One layout in both modes: no copy, no environment variable, no import of ``mucode`` (which is
not in the namespace). Imported as ``mucode.sandbox.child.*`` (by tests), the same modules take
their ``if __package__:`` branch and import each other by package name.

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
function results) is not checked. Without bubblewrap, see the isolation layers in ``pool.py``; if
the whole Python process is killed mid-job, a job's setsid'd orphans may survive. The timeout is
wall clock on a shared machine, so a program near the limit can flip between runs.

Statuses: PASSED iff every test passed; ERROR when the program does not load (syntax error,
exception or exit at top level); TIMEOUT / MEMORY / OUTPUT_LIMIT when that limit was hit anywhere
(private tests included; the feedback still describes public tests only); FAILED otherwise.
Linux only (fork, pidfd, prctl; kernel >= 5.3).
"""

from mucode.sandbox.cli import main
from mucode.sandbox.job import ExecResult, IsolationMode, Job, SandboxConfig, Status, check_job
from mucode.sandbox.pool import Sandbox, SandboxError, run

# ``verdict`` (the function) is not re-exported: bound here it would hide the module of that name
# (``import mucode.sandbox.verdict as v`` would give the function); use mucode.sandbox.verdict.verdict.
__all__ = ["ExecResult", "IsolationMode", "Job", "Sandbox", "SandboxConfig", "SandboxError", "Status",
           "check_job", "main", "run"]
