"""The in-process checker of :mod:`mucode.sandbox`: runs a program, then its tests, strictly. Stdlib.

The fork server (``mucode/_harness.py``) compiles each test with ``compile_test`` before any
program runs (``Rewriter`` turns every ``assert`` into calls to ``Hooks``, which the code reaches
through constants, not names a program could rebind: ``assert f(x) == y`` becomes
``check(site, cmp("==", call(site2, f, x), y))``), and snapshots the modules (``Pristine``). In
the forked child, after limits and the uid drop, ``run_tests`` runs the program's top level, reads
the job's nonce from a pipe, then runs each test and reports it at once, one line per event::

    NONCE KIND INDEX FLAG HEXTEXT      KIND: L loaded, E load error, T test, D done
                                       FLAG: p passed, f failed, m memory error, e error, - none

The hooks compare strictly (``equal``: bool is not a number, list is not tuple, ints and floats by
value) and only values that cannot lie (``rigged``: no instance of a Python class overriding
comparison, hashing, truth, conversion or arithmetic dunders). Feedback text is made only for
public tests. Code that runs after the program's top level resolves builtins in a private copy
taken at import and uses module attributes captured at import, and this module is removed from
``sys.modules``; a program that walks frames or the garbage collector can still reach it (the
residual risk documented in ``mucode.sandbox``).
"""

from __future__ import annotations

import ast
import builtins
import collections
import operator
import os
import sys
import types
import warnings

# Functions defined below resolve builtin names in this private copy, so a program that assigns
# ``builtins.isinstance = ...`` or ``builtins.AssertionError = ...`` does not reach the checker.
__builtins__ = dict(builtins.__dict__)
_PRISTINE = dict(builtins.__dict__)

PROGRAM_FILE = "<program>"
TEST_FILE = "<test>"
_HEAPTYPE = 1 << 9
_OPS = {"Eq": "==", "NotEq": "!=", "Lt": "<", "LtE": "<=", "Gt": ">", "GtE": ">=",
        "Is": "is", "IsNot": "is not", "In": "in", "NotIn": "not in"}
_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_ATOMS = frozenset({int, float, complex, str, bytes, bool, type(None)})
_RIGGABLE = frozenset(
    [f"__{n}__" for n in "eq ne lt le gt ge hash bool len contains iter next getitem index int "
     "float complex abs neg pos invert round trunc floor ceil str format".split()]
    + [f"__{p}{n}__" for p in ("", "r") for n in
       "add sub mul matmul truediv floordiv mod divmod pow lshift rshift and xor or".split()])
_COUNTER, _DEQUE = collections.Counter, collections.deque
_FUNCTIONS = (types.FunctionType, types.MethodType)
_ModuleType, _CodeType = types.ModuleType, types.CodeType
_write, _read = os.write, os.read
_MODULES = sys.modules  # the interpreter's own dict, even if the program rebinds sys.modules
_type_dict = type.__dict__["__dict__"].__get__
_type_mro = type.__dict__["__mro__"].__get__
_type_flags = type.__dict__["__flags__"].__get__
_type_name = type.__dict__["__name__"].__get__
_rigged_cache: dict = {}


def _type_rigged(t: type) -> bool:
    """Whether a class written in Python overrides a method a comparison or arithmetic could call."""
    hit = _rigged_cache.get(id(t))
    if hit is not None and hit[0] is t:
        return hit[1]
    rigged = False
    if _type_flags(t) & _HEAPTYPE and t is not _COUNTER:
        for k in _type_mro(t):
            if _type_flags(k) & _HEAPTYPE and not _RIGGABLE.isdisjoint(_type_dict(k)):
                rigged = True
                break
    _rigged_cache[id(t)] = (t, rigged)
    return rigged


def rigged(value: object) -> str | None:
    """Name of the first class in ``value`` (walking builtin containers) that could lie, or None."""
    stack, seen = [value], set()
    while stack:
        v = stack.pop()
        t = type(v)
        if t in _ATOMS or id(v) in seen:
            continue
        seen.add(id(v))
        if _type_rigged(t):
            return _type_name(t)
        if issubclass(t, dict):
            stack.extend(dict.keys(v))
            stack.extend(dict.values(v))
        elif issubclass(t, (list, tuple, set, frozenset, _DEQUE)):
            stack.extend(v)
    return None


def _category(v: object) -> str:
    """A string naming the builtin family of ``v`` (never a class: a metaclass could rig ``==``)."""
    t = type(v)
    if t is bool:
        return "bool"
    if v is None:
        return "none"
    for base, name in ((int, "num"), (float, "num"), (complex, "num"), (str, "str"),
                       (bytes, "bytes"), (list, "list"), (tuple, "tuple"), (dict, "dict"),
                       (_DEQUE, "deque"), (set, "set"), (frozenset, "set")):
        if issubclass(t, base):
            return name
    return "other"


def equal(a: object, b: object) -> bool:
    """Strict equality of non-rigged values: bool is not a number, list is not tuple, 1 == 1.0."""
    ca = _category(a)
    if ca != _category(b) or (ca == "other" and type(a) is not type(b)):
        return False
    if ca in ("list", "tuple", "deque"):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    if ca == "dict":
        return len(a) == len(b) and all(
            dict.__contains__(b, k) and equal(dict.get(a, k), dict.get(b, k)) for k in dict.keys(a))
    return a == b


def compare(op: str, a: object, b: object) -> bool:
    """Apply a comparison operator without calling a method the program wrote."""
    if op in ("is", "is not"):
        return (a is b) == (op == "is")
    if rigged(a) is not None or rigged(b) is not None:
        return False
    if op in ("==", "!="):
        return equal(a, b) == (op == "==")
    if op in ("in", "not in"):
        return _contains(b, a) == (op == "in")
    return _ORDER[op](a, b) is True


def _contains(container: object, item: object) -> bool:
    kind = _category(container)
    if kind == "dict":
        return dict.__contains__(container, item)
    if kind in ("list", "tuple", "deque"):
        return any(equal(item, x) for x in container)
    return item in container


def truthy(value: object) -> bool:
    """Truth value of a non-rigged value; a rigged one is false."""
    return rigged(value) is None and bool(value)


def show(value: object, limit: int) -> str:
    """repr() capped at ``limit`` characters; never raises."""
    try:
        text = repr(value)
    except BaseException as e:  # noqa: BLE001 - a failing repr is shown, not raised
        text = f"<unprintable {_type_name(type(e))}>"
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def describe(exc: BaseException, limit: int) -> str:
    """'Type: message (line N)' with N the program's own innermost line; no paths, no frames."""
    if isinstance(exc, MemoryError):
        return "Memory limit exceeded"
    name = _type_name(type(exc))
    if isinstance(exc, SyntaxError):
        return f"{name}: {exc.msg} (line {exc.lineno})"
    try:
        message = str(exc)
    except BaseException:  # noqa: BLE001
        message = ""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == PROGRAM_FILE:
            line = tb.tb_lineno
        tb = tb.tb_next
    text = f"{name}: {message}" if message else name
    text = text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."
    return f"{text} (line {line})" if line else text


# ---------------------------------------------------------------- test rewriting
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
        if not _builtin(f):
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


def _builtin(f: object) -> bool:
    """Whether ``f`` is a function or class written in C (so it cannot return a rigged value)."""
    t = type(f)
    if issubclass(t, type):
        return not _type_flags(f) & _HEAPTYPE
    return not _type_flags(t) & _HEAPTYPE and t not in _FUNCTIONS


def segment(source: str, pos: tuple) -> str:
    """The text at an AST position (lineno, col, end_lineno, end_col; columns in UTF-8 bytes)."""
    lineno, col, end_lineno, end_col = pos
    lines = source.encode("utf-8").splitlines()[lineno - 1:end_lineno]
    if not lines:
        return ""
    lines[-1] = lines[-1][:end_col]
    lines[0] = lines[0][col:]
    return b"\n".join(lines).decode("utf-8", "replace")


class Rewriter(ast.NodeTransformer):
    """Turns each ``assert`` into hook calls and routes every call through ``Hooks.call``.

    Sites record positions, not text: text is cut from the source only for feedback.
    """

    def __init__(self, source: str):
        self.sites: list = []
        self.source = source

    def rewrite(self) -> ast.Module:
        """Parse and rewrite the test snippet (raises SyntaxError)."""
        return self.visit(ast.parse(self.source, TEST_FILE))

    def _site(self, info: tuple) -> ast.Constant:
        self.sites.append(info)
        return ast.Constant(len(self.sites) - 1)

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        return node  # no children; skips NodeTransformer's slow deprecation shim

    def visit_Call(self, node: ast.Call) -> ast.AST:
        site = self._site(("call", _pos(node), None, None))
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id == "super":
            return node
        return _hook("call", [site, node.func, *node.args], node.keywords, node)

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        test = node.test
        if isinstance(test, ast.Compare) and len(test.ops) == 1:
            form, parts = "cmp", [test.left, test.comparators[0]]
        else:
            form, parts = "truth", [test.operand if _is_not(test) else test]
        sides = [(_pos(p), isinstance(p, ast.Call)) for p in parts]
        site = self._site(("assert", _pos(node), form, sides))
        self.generic_visit(node)
        check = _hook("check", [site, self._strict(node.test)], [], node)
        return ast.copy_location(ast.Expr(check), node)

    def _strict(self, e: ast.expr) -> ast.expr:
        """An expression whose value is a real bool computed by harness code."""
        if isinstance(e, ast.Compare) and len(e.ops) == 1:
            op = ast.Constant(_OPS[type(e.ops[0]).__name__])
            return _hook("cmp", [op, e.left, e.comparators[0]], [], e)
        if isinstance(e, ast.Compare):
            ops = ast.Constant(tuple(_OPS[type(o).__name__] for o in e.ops))
            thunks = [ast.Lambda(_NO_ARGS, x) for x in (e.left, *e.comparators)]
            return _hook("chain", [ops, *thunks], [], e)
        if _is_not(e):
            return ast.copy_location(ast.UnaryOp(ast.Not(), self._strict(e.operand)), e)
        if isinstance(e, ast.BoolOp):
            return ast.copy_location(ast.BoolOp(e.op, [self._strict(v) for v in e.values]), e)
        return _hook("truth", [e], [], e)


_NO_ARGS = ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[])


def _pos(node: ast.AST) -> tuple:
    return node.lineno, node.col_offset, node.end_lineno, node.end_col_offset


def _is_not(e: ast.expr) -> bool:
    return isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.Not)


def _hook(name: str, args: list, keywords: list, at: ast.AST) -> ast.Call:
    """A call to a hook placeholder; new nodes get ``at``'s location."""
    call = ast.Call(ast.Constant(f"\x00mucode-hook:{name}"), args, keywords)
    for node in (call, call.func, *args):
        if getattr(node, "lineno", None) is None:
            ast.copy_location(node, at)
    return call


def bind_hooks(code: types.CodeType, hooks: Hooks) -> types.CodeType:
    """Replace the hook placeholders in ``code`` (and nested code) with the hooks' bound methods."""
    table = {f"\x00mucode-hook:{n}": getattr(hooks, n) for n in ("call", "cmp", "chain", "truth",
                                                                  "check")}

    def swap(c):
        if type(c) is _CodeType:
            return c.replace(co_consts=tuple(swap(x) for x in c.co_consts))
        return table.get(c, c) if type(c) is str else c

    return swap(code)


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

    def __init__(self):
        hidden = {"__main__", "_checker", "_harness", "mucode._checker", "mucode._harness"}
        self.modules = {k: m for k, m in _MODULES.items() if k not in hidden}
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
    for name in ("_checker", "_harness", "mucode._checker", "mucode._harness"):
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
        return False, False, _cap(f"Failed: {src.strip()}\n{code}", limit) if public else ""
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
    return _cap(f"Failed: {header}" + (f"\n{detail}" if detail else ""), limit)


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


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


class _Emitter:
    """Writes nonce-framed report lines: ``NONCE KIND INDEX FLAG HEXTEXT``."""

    def __init__(self, fd: int, nonce: str):
        self.fd, self.nonce = fd, nonce

    def __call__(self, kind: str, index: int, flag: str, text: str) -> None:
        line = f"{self.nonce} {kind} {index} {flag} {text.encode('utf-8', 'replace').hex()}\n"
        view = memoryview(line.encode("ascii"))
        while view:
            view = view[_write(self.fd, view):]


