"""The judge: runs a job's tests against the program over a socket and decides each. In the judge's process.

Stdlib only; bind-mounted (bubblewrap) or read in place (plain) beside ``forkserver.py``, never
imported by the parent training process. The judge server compiles each test once (``rewrite``
turns every ``assert`` into calls to ``Hooks``) and runs each job's tests itself; the program runs
in another process, forked by another server, that the judge shares no memory with (``program``).
No code of the program ever runs here, so the server needs no fresh process per job.

A test runs here, in the judge's own namespace with the judge's own builtins and modules. A name
it reads that the program defines is fetched from the program: a function or other object as a
``wire.Remote`` (calling it is a request to the program), data as the judge's own copy. Two
exceptions keep the program from changing what a test means: a builtin name (``abs``, ``sorted``,
``isinstance``) is always the judge's, unless it is the job's entry point (MBPP 126 asks for a
function ``sum``); and a name that is a standard-library module (``math``, ``sys``), which a test
may use because the program imported it, is the judge's own import of that module, whatever the
program bound to it. What the program returns arrives as data built by ``wire.decode``; the test
compares it with Python's ``==`` on the judge's objects, so no method the program wrote is called
and a comparison means what it means in a fresh interpreter (``0 == False``, ``1 == 1.0``,
``[1] != (1,)``). The program never sees a test or an expected value, only the arguments of the
calls the test makes.

The judge records what it decides as it goes: whether the top level loaded, then each test's
[passed, memory error, feedback] in order, then done. When the program's process ends mid-test, the
judge stops without recording that test: the program server's facts say why.
"""

from __future__ import annotations

import builtins
import operator
import sys
import warnings

if __package__:  # imported as mucode.sandbox.child.judge (tests)
    from mucode.sandbox import protocol
    from mucode.sandbox.child import rewrite, values, wire
else:  # beside the fork server script, in the folder it runs from
    import protocol
    import rewrite
    import values
    import wire

_BUILTINS = frozenset(vars(builtins))
_STDLIB = frozenset(sys.stdlib_module_names)
_OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
        ">=": operator.ge, "is": operator.is_, "is not": operator.is_not,
        "in": lambda a, b: a in b, "not in": lambda a, b: a not in b}
ENDED = "the program's process ended"


class ProgramGone(BaseException):
    """The program's process ended, or broke the protocol: no further test can run."""


class Expired(BaseException):
    """The judge's own time for the job ran out (raised from a timer by the judge server)."""


class Link:
    """The judge's end of the job's socket: requests to the program, decoded replies."""

    def __init__(self, sock: int, deadline: float):
        self.sock, self.deadline, self.reader = sock, deadline, protocol.Reader(sock)

    def _ask(self, request: dict) -> object:
        try:
            protocol.send_message(self.sock, request)
            reply = self.reader.recv(self.deadline, protocol.JOB_MESSAGE)
        except (OSError, protocol.Timeout):  # it died, or it is out of time: its server says which
            raise ProgramGone(ENDED) from None
        except (ValueError, RecursionError) as e:
            raise ProgramGone(f"an answer the judge cannot read ({type(e).__name__})") from None
        if reply is None:
            raise ProgramGone(ENDED)
        if type(reply) is not dict or not ("raise" in reply or "ok" in reply):
            raise ProgramGone("it answered with something other than the sandbox's messages")
        if "raise" in reply:
            raise _exception(reply)
        return reply["ok"], reply

    def value(self, tree: object) -> object:
        try:
            return wire.decode(tree, self)
        except (ValueError, TypeError, KeyError, IndexError, RecursionError, OverflowError) as e:
            raise ProgramGone(f"an answer the judge cannot read ({type(e).__name__})") from None

    def first(self) -> dict:
        """The program's first message: whether its top level loaded ({} if its process ended)."""
        try:
            message = self.reader.recv(self.deadline, 1 << 20)
        except (OSError, protocol.Timeout):
            return {}
        except (ValueError, RecursionError):
            message = "unreadable"
        if message is None:
            return {}
        if type(message) is not dict or not ("loaded" in message or "load_error" in message):
            raise ProgramGone("its first message is not the sandbox's")
        return message

    def names(self, names: list[str]) -> dict:
        tree, _ = self._ask({"op": "names", "names": names})
        if type(tree) is not dict:
            raise ProgramGone("it answered with something other than the sandbox's messages")
        return {k: self.value(v) for k, v in tree.items() if k in names}

    def call(self, handle: int, args: tuple, kwargs: dict) -> object:
        request = {"op": "call", "h": handle, "args": [self.encode(a) for a in args],
                   "kw": {str(k): self.encode(v) for k, v in kwargs.items()}}
        tree, reply = self._ask(request)
        back = reply.get("back")
        if type(back) is list and len(back) == len(args):
            for arg, new in zip(args, back):
                if new is not None and wire.send_back(arg):
                    wire.update(arg, self.value(new))
        return self.value(tree)

    def getattr(self, handle: int, name: str) -> object:
        return self.value(self._ask({"op": "getattr", "h": handle, "name": name})[0])

    def setattr(self, handle: int, name: str, value: object) -> None:
        self._ask({"op": "setattr", "h": handle, "name": name, "value": self.encode(value)})

    def iterate(self, handle: int):
        it = self.value(self._ask({"op": "iter", "h": handle})[0])
        if type(it) is not wire.Remote:
            raise ProgramGone("it answered with something other than the sandbox's messages")
        while True:
            try:
                yield self.value(self._ask({"op": "next", "h": it._handle})[0])
            except StopIteration:
                return

    def encode(self, value: object) -> object:
        """An argument for the program: the judge's data, or a handle for the program's objects."""
        if type(value) is wire.Remote:
            if value._link is not self:
                raise TypeError("an object of another job")
            return ["h", value._handle]
        if type(value) in (wire.Member, wire.Record):
            return ["h", value._handle]
        if type(value) in (list, tuple, set, frozenset, dict):  # may hold Remotes
            tag = {list: "l", tuple: "t", set: "s", frozenset: "f", dict: "d"}[type(value)]
            if tag == "d":
                return ["d", *(self.encode(x) for kv in value.items() for x in kv)]
            return [tag, *(self.encode(x) for x in value)]
        try:
            return wire.encode(value, None)
        except wire.EncodeError as e:
            raise TypeError(str(e)) from None


class RemoteError(Exception):
    """An exception the program raised that is not one of Python's builtin exceptions."""


def _exception(reply: dict) -> BaseException:
    """The judge's own exception for one the program raised (a builtin type when it was one)."""
    text = str(reply.get("text", ""))
    if reply.get("memory"):
        error: BaseException = MemoryError()
    else:
        cls = getattr(builtins, str(reply.get("raise", "")), None)
        safe = isinstance(cls, type) and issubclass(cls, Exception)
        message = str(reply.get("message", ""))
        error = cls(message) if safe and cls is not StopIteration else RemoteError(message)
        if cls is StopIteration:
            error = StopIteration()
    error.mucode_text = text  # what feedback shows: "Type: message (line N)", the program's line
    return error


# ---------------------------------------------------------------- the hooks rewritten tests call
class _Failed(BaseException):
    """Raised by a hook when an assertion fails."""


class Hooks:
    """What rewritten tests call: ``call``, ``cmp``, ``chain``, ``truth``, ``check``."""

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
        """Call ``f``; remember where an exception came from."""
        try:
            return f(*args, **kwargs)
        except BaseException as e:
            if self.exc is not e:
                self.exc, self.exc_site = e, site
            raise

    def cmp(self, op, left, right):
        self.last = (left, right)
        return self._ok(_OPS[op](left, right))

    def chain(self, ops, *thunks):
        left = thunks[0]()
        for op, thunk in zip(ops, thunks[1:]):
            right = thunk()
            if not self._ok(_OPS[op](left, right)):
                return False
            left = right
        return True

    def truth(self, value):
        self.last = (value,)
        return self._ok(value)

    @staticmethod
    def _ok(value) -> bool:
        if type(value) is wire.Remote:
            bool(value)  # raises NotData: a program object is not a truth value
        return bool(value)

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
                    return f"{self.text(site, part)} returned {self.show(value)}"
            return f"{self.text(site, 0)} is {self.show(self.last[0])}"
        if form == "truth" and self.last is not None and len(self.last) == 1:
            verb = "returned" if sides[0][1] else "is"
            return f"{self.text(site, 0)} {verb} {self.show(self.last[0])}"
        return ""

    def show(self, value: object) -> str:
        if type(value) is wire.Remote:
            return f"an object of type {value._type}, which is not plain data"
        return values.show(value, self.limit)


def segment(source: str, pos: tuple) -> str:
    """The text at an AST position (lineno, col, end_lineno, end_col; columns in UTF-8 bytes)."""
    lineno, col, end_lineno, end_col = pos
    lines = source.encode("utf-8").splitlines()[lineno - 1:end_lineno]
    if not lines:
        return ""
    lines[-1] = lines[-1][:end_col]
    lines[0] = lines[0][col:]
    return b"\n".join(lines).decode("utf-8", "replace")


# ---------------------------------------------------------------- in the server, before any job
def compile_test(source: str, hooks: Hooks) -> tuple:
    """(rewritten code bound to ``hooks``, or the text of its syntax error; its sites; the names
    it reads). The judge server keeps one ``Hooks`` for every job, so compiled tests are bound once."""
    rewriter = rewrite.Rewriter(source)
    try:
        tree = rewriter.rewrite()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "'str' object is not callable" on placeholders
            code = compile(tree, rewrite.TEST_FILE, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        return f"the test does not compile: {values.describe(e, 300)}", [], ()
    names, stack = set(), [code]
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        stack.extend(x for x in c.co_consts if hasattr(x, "co_names"))
    return rewrite.bind_hooks(code, hooks), rewriter.sites, tuple(sorted(names))


# ---------------------------------------------------------------- per job, in the judge server
def run_tests(job: dict, compiled: list, hooks: Hooks, sock: int, facts: dict, deadline: float) -> None:
    """Run each test of ``job`` (compiled with ``hooks``) against the program on ``sock``; record
    each in ``facts`` as it is decided (``loaded``, ``load_error``, ``load_memory``, ``results``,
    ``done``)."""
    link, limit = Link(sock, deadline), hooks.limit
    try:
        first = link.first()
    except ProgramGone as e:
        facts["broken"] = e.args[0]
        return
    if "load_error" in first:
        facts["load_error"], facts["load_memory"] = str(first["load_error"]), bool(first.get("memory"))
        return
    if first.get("loaded") is not True:
        return  # the program's process ended before its top level finished
    facts["loaded"] = True
    ns = {"__builtins__": builtins, "__name__": "__test__"}
    entry = job.get("entry_point") or ""
    for i, (src, (code, sites, names)) in enumerate(zip(job["tests"], compiled)):
        try:
            result = _run_one(src, code, sites, ns, hooks, i < job["n_public"], limit,
                              lambda: _bind(ns, names, entry, link))
        except ProgramGone as e:
            if e.args and e.args[0] != ENDED:
                facts["broken"] = e.args[0]
            return
        facts["results"].append(result)
    facts["done"] = True


def _bind(ns: dict, names: tuple, entry: str, link: Link) -> None:
    """Put the names a test reads into its namespace (see the module docstring for which are whose)."""
    wanted = [n for n in names if n not in ns and (n not in _BUILTINS or n == entry)]
    if not wanted:
        return
    for name, value in link.names(wanted).items():
        if name in _STDLIB and name != entry:
            try:
                value = __import__(name)
            except ImportError:
                continue
        ns[name] = value


def _run_one(src: str, code, sites: list, ns: dict, hooks: Hooks, public: bool, limit: int,
             bind) -> list:
    """One test: [passed, memory error, feedback]. ``bind`` fetches the names it reads (a name whose
    value the program cannot send fails the test, as an exception in it would)."""
    if type(code) is str:
        return [False, False, values.clip(f"Failed: {src.strip()}\n{code}", limit) if public else ""]
    hooks.reset(sites, src)
    error = None
    try:
        bind()
        exec(code, ns)
    except (ProgramGone, Expired):
        raise
    except BaseException as e:  # noqa: BLE001 - a failing test is data
        error = e
    ok = error is None and hooks.failure is None
    memory = isinstance(error, MemoryError)
    if ok or not public:
        return [ok, memory, ""]
    return [ok, memory, _feedback(src, error, hooks, limit)]


def _feedback(src: str, error: BaseException | None, hooks: Hooks, limit: int) -> str:
    header = hooks.text(hooks.failed_site) if hooks.failed_site is not None else _test_line(src, error)
    if hooks.failure is not None:
        detail = hooks.failure
    elif isinstance(error, wire.NotData) and hooks.exc is None:
        detail = f"The test used {error}"
    elif hooks.exc is error and hooks.exc_site is not None and not isinstance(error, MemoryError):
        detail = f"{hooks.text(hooks.exc_site)} raised {_describe(error, limit)}"
    else:
        detail = _describe(error, limit)
    return values.clip(f"Failed: {header}" + (f"\n{detail}" if detail else ""), limit)


def _describe(error: BaseException, limit: int) -> str:
    text = getattr(error, "mucode_text", None)
    return text if isinstance(text, str) and text else values.describe(error, limit)


def _test_line(src: str, error: BaseException | None) -> str:
    """The test's line where ``error`` passed last, else the snippet itself."""
    line, tb = None, error.__traceback__ if error is not None else None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == rewrite.TEST_FILE:
            line = tb.tb_lineno
        tb = tb.tb_next
    lines = src.strip("\n").splitlines()
    if line is not None and 0 < line <= len(src.splitlines()):
        return src.splitlines()[line - 1].strip()
    return lines[0].strip() if len(lines) == 1 else src.strip()
