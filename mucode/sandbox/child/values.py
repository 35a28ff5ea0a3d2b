"""The values a test sees: which can lie, strict equality, and their text in feedback. In the child.

Stdlib only; bind-mounted (bubblewrap) or read in place (plain) beside ``forkserver.py``, never
imported by the parent training process. ``checker.py`` calls these from the hooks of rewritten
tests, after the program's top level ran, so they resolve builtins in a private copy taken at
import and use module attributes captured at import (a program that replaces ``builtins.len`` or
``operator.eq`` does not reach them).

``equal``: bool is not a number, list is not tuple, ints and floats by value, dict subclasses such
as Counter as dicts, namedtuples as tuples. ``rigged``: an instance of a Python class overriding
comparison, hashing, truth, conversion or arithmetic dunders could lie, so it is never compared.
"""

from __future__ import annotations

import builtins
import collections
import operator
import types

if __package__:  # imported as mucode.sandbox.child.values (tests)
    from mucode.sandbox import protocol
else:  # beside the fork server script, which put protocol.py's folder on sys.path
    import protocol

# Functions defined below resolve builtin names in this private copy, so a program that assigns
# ``builtins.isinstance = ...`` or ``builtins.AssertionError = ...`` does not reach them.
__builtins__ = dict(builtins.__dict__)
# protocol.clip rebound to the private builtins above: called after the program ran, it must not
# look up ``len`` in the real builtins module, which the program may have patched.
clip = types.FunctionType(protocol.clip.__code__, globals(), "clip")

PROGRAM_FILE = "<program>"
_HEAPTYPE = 1 << 9
_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_ATOMS = frozenset({int, float, complex, str, bytes, bool, type(None)})
_RIGGABLE = frozenset(
    [f"__{n}__" for n in "eq ne lt le gt ge hash bool len contains iter next getitem index int "
     "float complex abs neg pos invert round trunc floor ceil str format".split()]
    + [f"__{p}{n}__" for p in ("", "r") for n in
       "add sub mul matmul truediv floordiv mod divmod pow lshift rshift and xor or".split()])
_COUNTER, _DEQUE = collections.Counter, collections.deque
_FUNCTIONS = (types.FunctionType, types.MethodType)
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
    return clip(text, limit)


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
    text = clip(f"{name}: {message}" if message else name, limit)
    return f"{text} (line {line})" if line else text


def written_in_c(f: object) -> bool:
    """Whether ``f`` is a function or class written in C (so it cannot return a rigged value)."""
    t = type(f)
    if issubclass(t, type):
        return not _type_flags(f) & _HEAPTYPE
    return not _type_flags(t) & _HEAPTYPE and t not in _FUNCTIONS
