"""Run untrusted generated programs against tests: limits, isolation, honest verdicts, feedback.

Every reward, label and evaluation in mucode comes from here. A job is a program and its tests
(Python snippets run after it, seeing its names: ``assert CALL == EXPECTED``, or HumanEval's
``def check(candidate): ...`` plus a call); the first ``n_public`` are public. The result gives a
status, which tests passed, and feedback for the next turn that only describes public tests.
Whatever the program does (crash, hang, fork, write, connect, print megabytes) is data.

Run it::

    from mucode.sandbox import Job, Sandbox, SandboxConfig, run
    run("def f(x):\n    return x + 1", ["assert f(1) == 2"]).passed         # one job (~0.2 s)
    with Sandbox(SandboxConfig(timeout_s=3)) as sandbox:                     # a reusable pool
        results = sandbox.run_batch([Job(program, tests, n_public=1)], progress=True)
        future = sandbox.submit(Job.for_problem(problem, program))           # non-blocking

    mucode-exec samples.jsonl -o results.jsonl --timeout 3 --workers 2       # or python -m mucode.sandbox

Where each part runs. Parent side, imported by the training process: ``job.py`` (SandboxConfig,
Job, ExecResult, Status), ``pool.py`` (``Sandbox``: two fork servers per worker, bubblewrap, the
isolation layers and their cost), ``verdict.py`` (facts -> ExecResult, pure) and ``cli.py``
(``mucode-exec``). Child side, ``child/``, stdlib only, never imported by the parent:
``forkserver.py`` (both servers: one fork per job, namespaces, limits, cleanup), ``program.py``
(the program's side: its top level, then answers to the judge), ``judge.py`` (runs the tests and
decides), ``wire.py`` (values across the boundary), ``values.py`` (feedback text) and
``rewrite.py`` (asserts -> hooks). ``protocol.py`` (message framing, ``clip``) is imported by all.

How the child side starts and finds ``protocol``. The pool runs each server as a script,
``python -S -s -B <dir>/child/forkserver.py ROLE CONFIG``, where ``<dir>`` holds ``protocol.py`` and
``child/`` as this package does: this folder itself under plain isolation, read-only bind mounts of
exactly those files under ``/run/mucode`` in bubblewrap (``pool._SERVER_FILES``). The script's
folder is ``sys.path[0]``, so its siblings import as top-level modules (``import judge``); the
server appends the folder above to ``sys.path`` (last, so no file there shadows the stdlib),
imports ``protocol`` the same way, and removes both folders from ``sys.path`` before any program
runs. One layout in both modes: no copy, no environment variable, no import of ``mucode`` (which is
not in the namespace). Imported as ``mucode.sandbox.child.*`` (by tests), the same modules take
their ``if __package__:`` branch and import each other by package name.

Verdicts. The program's process never holds a test: it runs the program's top level, then answers
the judge's requests (call this function with these arguments, read this attribute) with data. The
judge, another process in another namespace that no program code ever runs in, runs the tests with
the judge's own builtins and modules, decodes each answer into objects of its own (``wire``) and
compares with Python's ``==`` on them: a comparison means what it means in a fresh interpreter
(``0 == False``, ``1 == 1.0``, ``[1] != (1,)``, a namedtuple equals a tuple), no method the program
wrote is ever called, and fractions, decimals, dates, enums and dataclasses compare by value. An
object of the program's own classes that is none of these equals only itself; its truth, order or
arithmetic fail the test ("not plain data"). A test's builtin names (``abs``, ``sorted``) and
standard-library module names (``math``) are always the judge's, except the job's entry point.
So printing a success marker, exiting early, a rigged ``__eq__`` or str subclass, replacing
builtins or modules, writing to any descriptor, walking frames or the garbage collector, or
reading the process's own memory all end as the honest verdict (tests/sandbox/attacks.py).

What it does not cover (honest). A test that hands the program an expected value (calling a
program function with it) gives the program that value, and names a test reads that the program
defines (other than builtins and stdlib modules) are the program's. Tests run in the long-lived
judge server and are trusted code from the task's data; one that hangs inside C code is ended only
by the pool's deadline (the worker is replaced and the job fails). Kernel exploits and timing side
channels are out of scope. The timeout is wall clock on a shared machine, so a program near the
limit can flip between runs. Under ``isolation=plain`` see ``pool.PLAIN_LOSES``.

Statuses: PASSED iff every test passed; ERROR when the program does not load (syntax error,
exception or exit at top level); TIMEOUT / MEMORY / OUTPUT_LIMIT when that limit was hit anywhere
(private tests included; the feedback still describes public tests only); FAILED otherwise,
including a job whose worker died under it (the feedback says so).
Linux only (fork, clone, pidfd, prctl; kernel >= 5.3).
"""

from mucode.sandbox.cli import main
from mucode.sandbox.job import ExecResult, IsolationMode, Job, SandboxConfig, Status, check_job
from mucode.sandbox.pool import Sandbox, SandboxError, run

# ``verdict`` (the function) is not re-exported: bound here it would hide the module of that name
# (``import mucode.sandbox.verdict as v`` would give the function); use mucode.sandbox.verdict.verdict.
__all__ = ["ExecResult", "IsolationMode", "Job", "Sandbox", "SandboxConfig", "SandboxError", "Status",
           "check_job", "main", "run"]
