"""The in-process checker: runs a program, then its tests, and reports each. Runs in the child.

Stdlib only; bind-mounted (bubblewrap) or read in place (plain) beside ``forkserver.py``, never
imported by the parent training process.

The fork server (``forkserver.py``) compiles each test with ``compile_test`` before any program
runs (``rewrite.py`` turns every ``assert`` into calls to ``Hooks``), snapshots the modules
(``Pristine``) and builds each job's namespace and bound tests (``Prepared``). In the forked
child, after limits and the uid drop, ``run_tests`` runs the program's top level, reads the job's
nonce from a pipe, then runs each test and reports it at once, one line per event::

    NONCE KIND INDEX FLAG HEXTEXT      KIND: L loaded, E load error, T test, D done
                                       FLAG: p passed, f failed, m memory error, e error, - none

The hooks compare strictly and only values that cannot lie (``values.py``). Feedback text is made
only for public tests. Code that runs after the program's top level resolves builtins in a private
copy taken at import and uses functions and module attributes captured at import, and the
harness's modules (this one, ``values``, ``rewrite``, ``protocol``, the server) are removed from
``sys.modules``; a program that walks frames or the garbage collector can still reach them (the
residual risk documented in ``mucode.sandbox``).
"""

from __future__ import annotations

import builtins
import os
import sys
import types
import warnings

if __package__:  # imported as mucode.sandbox.child.checker (tests)
    from mucode.sandbox.child import rewrite, values
else:  # beside the fork server script, in the folder it runs from
    import rewrite
    import values

# Functions defined below resolve builtin names in this private copy, so a program that assigns
# ``builtins.isinstance = ...`` or ``builtins.AssertionError = ...`` does not reach the checker.
__builtins__ = dict(builtins.__dict__)
_PRISTINE = dict(builtins.__dict__)

# Captured now: called after the program ran, they must not be looked up in modules it can patch.
clip, compare, describe, rigged, show, truthy, written_in_c = (
    values.clip, values.compare, values.describe, values.rigged, values.show, values.truthy,
    values.written_in_c)
Rewriter, bind_hooks = rewrite.Rewriter, rewrite.bind_hooks
PROGRAM_FILE, TEST_FILE = values.PROGRAM_FILE, rewrite.TEST_FILE
_ModuleType, _CodeType = types.ModuleType, types.CodeType
_write, _read = os.write, os.read
_MODULES = sys.modules  # the interpreter's own dict, even if the program rebinds sys.modules


# ---------------------------------------------------------------- the hooks rewritten tests call
class _Failed(BaseException):
    """Raised by a hook when an assertion fails; never visible to the program by name."""


class Hooks:
    """What rewritten tests call. One instance per child; reached only through code constants."""

    def __init__(self, limit: int):
        self.limit = limit
        self.reset([], "")

    def reset(self, sites: list, source: str) -> None:
        """Start a test: its call and assert ``sites`` (from ``Rewriter``) and its source."""
        self.sites, self.source = sites, source
        self.failure = self.failed_site = self.exc = self.exc_site = self.last = None

    def text(self, site: int, part: int | None = None) -> str:
        """Source text of a site, or of one side of an assert site."""
        info = self.sites[site]
        return segment(self.source, info[1] if part is None else info[3][part][0])

    def call(self, site, f, /, *args, **kwargs):
        """Call ``f``; remember where an exception came from; refuse rigged return values."""
        try:
            value = f(*args, **kwargs)
        except BaseException as e:
            if self.exc is not e:
                self.exc, self.exc_site = e, site
            raise
        if not written_in_c(f):
            bad = rigged(value)
            if bad is not None:
                self.fail(None, f"{self.text(site)} returned an object of type {bad}, "
                                "which is not plain data")
        return value

    def cmp(self, op, left, right):
        self.last = (left, right)
        return compare(op, left, right)

    def chain(self, ops, *thunks):
        left = thunks[0]()
        for op, thunk in zip(ops, thunks[1:]):
            right = thunk()
            if not compare(op, left, right):
                return False
            left = right
        return True

    def truth(self, value):
        self.last = (value,)
        return truthy(value)

    def check(self, site, ok):
        if ok is not True:
            self.fail(site, self._detail(site))

    def fail(self, site, detail):
        if self.failure is None:
            self.failure, self.failed_site = detail, site
        raise _Failed

    def _detail(self, site: int) -> str:
        _, _, form, sides = self.sites[site]
        if form == "cmp" and self.last is not None and len(self.last) == 2:
            for part, ((_, is_call), value) in enumerate(zip(sides, self.last)):
                if is_call:
                    return f"{self.text(site, part)} returned {show(value, self.limit)}"
            return f"{self.text(site, 0)} is {show(self.last[0], self.limit)}"
        if form == "truth" and self.last is not None and len(self.last) == 1:
            verb = "returned" if sides[0][1] else "is"
            return f"{self.text(site, 0)} {verb} {show(self.last[0], self.limit)}"
        return ""


def segment(source: str, pos: tuple) -> str:
    """The text at an AST position (lineno, col, end_lineno, end_col; columns in UTF-8 bytes)."""
    lineno, col, end_lineno, end_col = pos
    lines = source.encode("utf-8").splitlines()[lineno - 1:end_lineno]
    if not lines:
        return ""
    lines[-1] = lines[-1][:end_col]
    lines[0] = lines[0][col:]
    return b"\n".join(lines).decode("utf-8", "replace")


# ---------------------------------------------------------------- in the server, before any program
def compile_test(source: str, pristine: Pristine | None = None) -> tuple:
    """(rewritten code with hook placeholders, or the text of its syntax error; its sites;
    the module dicts to restore before it runs)."""
    rewriter = Rewriter(source)
    try:
        tree = rewriter.rewrite()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "'str' object is not callable" on placeholders
            code = compile(tree, TEST_FILE, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        return f"the test does not compile: {describe(e, 300)}", [], (frozenset(), [])
    return code, rewriter.sites, pristine.plan(code) if pristine else (frozenset(), [])


class Pristine:
    """Modules as they were in the server before any program ran, to restore before each test.

    A program may assign ``math.fabs = ...`` or plant ``sys.modules["statistics"] = fake``: before
    a test runs, every module the test names gets its attributes back, ``sys.modules`` its
    entries, and entries the test names that were not there are dropped (the test's ``import``
    then loads the real module).
    """

    def __init__(self, harness: tuple[str, ...]):
        self.harness = harness  # the harness's own modules: never restored, hidden in the child
        self.modules = {k: m for k, m in _MODULES.items() if k not in harness}
        self.dicts = {k: (m.__dict__, dict(m.__dict__)) for k, m in self.modules.items()
                      if type(m) is _ModuleType}

    def plan(self, code: types.CodeType) -> tuple:
        """What to restore before ``code`` runs: the names it mentions, the module dicts named."""
        names, stack = set(), [code]
        while stack:
            c = stack.pop()
            names.update(c.co_names)
            stack.extend(x for x in c.co_consts if type(x) is _CodeType)
        pairs = [pair for name, pair in self.dicts.items() if not names.isdisjoint(name.split("."))]
        return frozenset(names), pairs

    def restore(self, plan: tuple) -> None:
        """Put back the modules a test names (attributes the program added stay).

        Only names the test mentions: touching every module would copy their pages in the child.
        """
        names, pairs = plan
        for name in names:
            saved = self.modules.get(name)
            if saved is not None:
                _MODULES[name] = saved
            else:  # planted or imported by the program: the test's import loads the real one
                _MODULES.pop(name, None)
        for live, saved in pairs:
            live.update(saved)


class Prepared:
    """A job made ready in the server before the fork: namespace, hooks, bound tests, builtins.

    Building these in the child would copy-on-write every page their objects touch (builtins
    copies alone cost ~50 page faults each); built before the fork, the child only uses them.
    """

    def __init__(self, job: dict, compiled: list, pristine: Pristine, limit: int):
        self.program, self.n_public, self.pristine, self.limit = (
            job["program"], job["n_public"], pristine, limit)
        self.hooks = Hooks(limit)
        self.module = _ModuleType("program")
        self.module.__dict__["__builtins__"] = dict(_PRISTINE)
        self.tests = [(src, code if type(code) is str else bind_hooks(code, self.hooks), sites,
                       plan, dict(_PRISTINE))
                      for src, (code, sites, plan) in zip(job["tests"], compiled)]


# ---------------------------------------------------------------- the child
def run_tests(job: Prepared, channel: int, nonce_fd: int) -> None:
    """Run the top level, then each test; report each on ``channel`` as soon as it is known."""
    for name in job.pristine.harness:
        _MODULES.pop(name, None)
    _MODULES["program"] = _MODULES["__main__"] = job.module
    ns = job.module.__dict__
    load_error = _load(job.program, ns, job.limit)
    nonce = _read(nonce_fd, 64).decode("ascii", "replace")
    emit = _Emitter(channel, nonce)
    if load_error is not None:
        emit("E", 0, "m" if load_error == "Memory limit exceeded" else "e", load_error)
        return
    emit("L", 0, "-", "")
    for i, (src, code, sites, plan, builtins_copy) in enumerate(job.tests):
        job.hooks.reset(sites, src)
        job.pristine.restore(plan)
        ns["__builtins__"] = builtins_copy
        ok, memory, feedback = _run_one(src, code, ns, job.hooks, i < job.n_public, job.limit)
        emit("T", i, "p" if ok else "m" if memory else "f", feedback)
    emit("D", len(job.tests), "-", "")


def _load(program: str, ns: dict, limit: int) -> str | None:
    try:
        exec(compile(program, PROGRAM_FILE, "exec", dont_inherit=True), ns)
    except BaseException as e:  # noqa: BLE001 - the program's failure is data
        return describe(e, limit)
    return None


def _run_one(src: str, code, ns: dict, hooks: Hooks, public: bool, limit: int):
    if type(code) is str:
        return False, False, clip(f"Failed: {src.strip()}\n{code}", limit) if public else ""
    error = None
    try:
        exec(code, ns)
    except BaseException as e:  # noqa: BLE001
        error = e
    ok = error is None and hooks.failure is None
    memory = isinstance(error, MemoryError)
    if ok or not public:
        return ok, memory, ""
    return ok, memory, _feedback(src, error, hooks, limit)


def _feedback(src: str, error: BaseException | None, hooks: Hooks, limit: int) -> str:
    if hooks.failed_site is not None:
        header = hooks.text(hooks.failed_site)
    else:
        header = _test_line(src, error)
    if hooks.failure is not None:
        detail = hooks.failure
    elif hooks.exc is error and hooks.exc_site is not None and not isinstance(error, MemoryError):
        detail = f"{hooks.text(hooks.exc_site)} raised {describe(error, limit)}"
    else:
        detail = describe(error, limit)
    return clip(f"Failed: {header}" + (f"\n{detail}" if detail else ""), limit)


def _test_line(src: str, error: BaseException | None) -> str:
    """The test's line where ``error`` passed last, else the snippet itself."""
    line, tb = None, error.__traceback__ if error is not None else None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == TEST_FILE:
            line = tb.tb_lineno
        tb = tb.tb_next
    lines = src.strip("\n").splitlines()
    if line is not None and 0 < line <= len(src.splitlines()):
        return src.splitlines()[line - 1].strip()
    return lines[0].strip() if len(lines) == 1 else src.strip()


class _Emitter:
    """Writes nonce-framed report lines: ``NONCE KIND INDEX FLAG HEXTEXT``."""

    def __init__(self, fd: int, nonce: str):
        self.fd, self.nonce = fd, nonce

    def __call__(self, kind: str, index: int, flag: str, text: str) -> None:
        line = f"{self.nonce} {kind} {index} {flag} {text.encode('utf-8', 'replace').hex()}\n"
        view = memoryview(line.encode("ascii"))
        while view:
            view = view[_write(self.fd, view):]


