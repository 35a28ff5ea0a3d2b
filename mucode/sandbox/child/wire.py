"""Values across the boundary between a program and its judge. Stdlib only; both sides import it.

The program's process encodes what its functions return (and the arguments the judge sends back
decode there); the judge decodes into objects of its own. Decoding builds nothing but builtins,
``Fraction``, ``Decimal``, ``deque``, ``datetime`` values and the four classes below, whose
methods are ours: no class, method or code of the program ever exists in the judge, so what a
test compares is data, compared by Python's own ``==`` on it. A value's encoding is JSON::

    None, bool, int (up to 4,000 digits), float, str    as themselves
    ["i", hex]  bigger int        ["l", ...] list          ["t", ...] tuple
    ["n", type_name, [field, ...], ...]               a namedtuple: a tuple whose items have names
    ["d", k, v, ...] dict (Counter, OrderedDict, defaultdict, ChainMap, UserDict too)
    ["s", ...] set (and keys or items views)
    ["f", ...] frozenset          ["q", ...] deque         ["b", hex] bytes     ["B", hex] bytearray
    ["c", re, im] complex         ["r", a, b, c] range      ["F", n, d] Fraction ["D", text] Decimal
    ["T", kind, text] date, time, datetime (ISO) or timedelta (microseconds)
    ["e", handle, class_handle, class_name, member_name]              an Enum member (not int/str)
    ["a", handle, class_handle, class_name, [name, value], ...]       a dataclass instance
    ["h", handle, type_name, repr_text]                               anything else
    ["x", name]                               a builtin function or type a test passes as an argument

A handle names an object kept alive in the program's process; the judge sees it as ``Remote``
(what a call, an attribute, an iteration gives back), ``Member`` or ``Record`` (``Row`` is a
namedtuple: a tuple whose items also read by name), and sends the
handle when it passes the object back. Members equal members of the same class and name; records
equal records of the same class and equal compared fields (what dataclass ``__eq__`` does), so an
honest enum or dataclass passes without the program's ``__eq__`` being called.
"""

from __future__ import annotations

import builtins
import collections
import importlib
import sys

# fractions, decimal, datetime, enum and dataclasses are not imported here: a value can be of
# their types only when the program imported them (``_loaded``), and the program server forks
# faster without them. The judge imports them when it decodes such a value.
_BIG = 10 ** 4000
_MAX_DEPTH = 200
_TIMES = ("datetime", "date", "time")  # datetime first: it is a subclass of date
_AS_DICT = (collections.ChainMap, collections.UserDict, type(type.__dict__))  # mappingproxy too
_KEY_VIEWS = (type({}.keys()), type({}.items()))


class EncodeError(Exception):
    """A value cannot be sent (too deep or cyclic)."""


# ---------------------------------------------------------------- the program's side
class Handles:
    """The program's side of handles: objects sent to the judge by number, kept alive."""

    def __init__(self):
        self.objects: list = []
        self.ids: dict = {}

    def get(self, obj: object) -> int:
        """The handle of ``obj`` (a new one the first time)."""
        h = self.ids.get(id(obj))
        if h is None:
            h = self.ids[id(obj)] = len(self.objects)
            self.objects.append(obj)
        return h

    def find(self, h: object) -> object:
        """The object of handle ``h``."""
        if type(h) is not int or not 0 <= h < len(self.objects):
            raise ValueError(f"no object with handle {h!r}")
        return self.objects[h]


def encode(value: object, handles: Handles | None, limit: int = 200, depth: int = 0) -> object:
    """``value`` as JSON-able data; objects that are not data become handles (``handles`` None:
    they raise EncodeError, as the judge's own values must be data). ``limit``: repr length."""
    if depth > _MAX_DEPTH:
        raise EncodeError(f"a value nested more than {_MAX_DEPTH} deep (or cyclic)")
    t, d = type(value), depth + 1
    if value is None or t is bool or t is str:
        return value
    if t is int:
        return value if -_BIG < value < _BIG else ["i", hex(value)]
    if t is float:
        return value
    if t is list:
        return ["l", *(encode(v, handles, limit, d) for v in value)]
    if t is tuple:
        return ["t", *(encode(v, handles, limit, d) for v in value)]
    enum = _loaded("enum")
    if enum and isinstance(value, enum.Enum) and not isinstance(value, (int, str, float)):
        if handles is None:
            raise EncodeError(f"cannot pass a {t.__name__} to the program")
        return ["e", handles.get(value), handles.get(t), t.__qualname__, value.name]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return encode(int.__int__(value), handles, limit, d)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, dict):
        out = ["d"]
        for k, v in dict.items(value):
            out += [encode(k, handles, limit, d), encode(v, handles, limit, d)]
        return out
    if isinstance(value, tuple):
        items = [encode(v, handles, limit, d) for v in tuple.__iter__(value)]
        names = getattr(t, "_fields", None)  # a namedtuple: a tuple whose items have names too
        if type(names) is tuple and len(names) == len(items) and all(type(n) is str for n in names):
            return ["n", _name(t), list(names), *items]
        return ["t", *items]
    if isinstance(value, list):
        return ["l", *(encode(v, handles, limit, d) for v in list.__iter__(value))]
    if isinstance(value, _AS_DICT):  # the stdlib's other mappings equal a dict of their items
        return encode(dict(value), handles, limit, d)
    if isinstance(value, collections.UserList):
        return encode(list(value.data), handles, limit, d)
    if isinstance(value, collections.UserString):
        return encode(str(value.data), handles, limit, d)
    if isinstance(value, _KEY_VIEWS):  # set-like: a keys or items view equals a set of the same
        return ["s", *(encode(v, handles, limit, d) for v in value)]
    if isinstance(value, (set, frozenset)):
        return ["f" if isinstance(value, frozenset) else "s",
                *(encode(v, handles, limit, d) for v in set.__iter__(set(value)))]
    if isinstance(value, collections.deque):
        return ["q", *(encode(v, handles, limit, d) for v in collections.deque.__iter__(value))]
    if isinstance(value, (bytes, bytearray)):
        return ["B" if isinstance(value, bytearray) else "b", bytes(value).hex()]
    if isinstance(value, complex):
        return ["c", value.real, value.imag]
    if isinstance(value, range):
        return ["r", value.start, value.stop, value.step]
    fractions, decimal, datetime = _loaded("fractions"), _loaded("decimal"), _loaded("datetime")
    if fractions and isinstance(value, fractions.Fraction):
        return ["F", encode(value.numerator, None), encode(value.denominator, None)]
    if decimal and isinstance(value, decimal.Decimal):
        return ["D", str(value)]
    if datetime and isinstance(value, datetime.timedelta):
        return ["T", "timedelta", value // datetime.timedelta(microseconds=1)]
    for kind in _TIMES if datetime else ():
        if isinstance(value, getattr(datetime, kind)):
            return ["T", kind, value.isoformat()]
    if handles is None:
        if getattr(builtins, getattr(value, "__name__", ""), None) is value:
            return ["x", value.__name__]  # a builtin function or type passed by a test: by name
        raise EncodeError(f"cannot pass a {t.__name__} to the program")
    dataclasses = _loaded("dataclasses")
    if dataclasses and dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [[f.name, encode(getattr(value, f.name), handles, limit, d)]
                  for f in dataclasses.fields(value) if f.compare]
        return ["a", handles.get(value), handles.get(t), t.__qualname__, *fields]
    return ["h", handles.get(value), _name(t), _repr(value, limit)]


def _loaded(name: str):
    """The module ``name`` if the program's process has imported it, else None."""
    module = sys.modules.get(name)
    return module if type(module).__name__ == "module" else None


def _name(t: type) -> str:
    try:
        return str(t.__qualname__)
    except BaseException:  # noqa: BLE001 - a metaclass may make it raise
        return "object"


def _repr(value: object, limit: int) -> str:
    try:
        text = repr(value)
        if type(text) is not str:
            raise TypeError
    except BaseException:  # noqa: BLE001 - a failing repr is shown, not raised
        text = f"<{_name(type(value))} object>"
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def decode_arg(tree: object, handles: Handles) -> object:
    """In the program's process: the judge's encoding of an argument, handles resolved."""
    if type(tree) is not list:
        return tree
    tag, rest = tree[0], tree[1:]
    if tag in ("h", "e", "a"):
        return handles.find(rest[0])
    if tag == "n":  # a namedtuple sent back: a plain tuple is what the program gets
        return tuple(decode_arg(x, handles) for x in rest[2:])
    if tag == "x":
        return getattr(builtins, str(rest[0]))
    return _build(tag, rest, lambda x: decode_arg(x, handles))


# ---------------------------------------------------------------- the judge's side
class NotData(TypeError):
    """A test used a program object as data (its truth, order or arithmetic)."""


class Remote:
    """A program object that is not data, as the judge sees it: call it, read or set its
    attributes, iterate it; every one of those runs in the program's process. It equals only
    itself; its truth, order, length or arithmetic raise NotData."""

    __slots__ = ("_link", "_handle", "_type", "_repr")

    def __init__(self, link, handle: int, type_name: str, text: str):
        object.__setattr__(self, "_link", link)
        object.__setattr__(self, "_handle", handle)
        object.__setattr__(self, "_type", type_name)
        object.__setattr__(self, "_repr", text)

    def __call__(self, *args, **kwargs):
        return self._link.call(self._handle, args, kwargs)

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._link.getattr(self._handle, name)

    def __setattr__(self, name: str, value: object) -> None:
        self._link.setattr(self._handle, name, value)

    def __iter__(self):
        return self._link.iterate(self._handle)

    def __eq__(self, other: object) -> bool:
        return type(other) is Remote and other._link is self._link and other._handle == self._handle

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(("remote", self._handle))

    def __bool__(self) -> bool:
        raise NotData(f"an object of type {self._type}, which is not plain data")

    def __repr__(self) -> str:
        return self._repr

    def __reduce__(self):
        raise NotData(f"an object of type {self._type} cannot be copied")



def _not_data(self, *args):
    raise NotData(f"an object of type {self._type}, which is not plain data")


for _dunder in ("__lt__", "__le__", "__gt__", "__ge__", "__len__", "__index__", "__int__",
                "__float__", "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
                "__neg__", "__abs__", "__truediv__", "__floordiv__", "__mod__", "__pow__",
                "__contains__", "__getitem__"):
    setattr(Remote, _dunder, _not_data)


class Row(tuple):
    """The judge's copy of a namedtuple: a tuple (equal to any tuple of equal items, as a
    namedtuple is) whose items also read by name."""

    def __new__(cls, items: tuple, type_name: str, names: tuple):
        row = super().__new__(cls, items)
        row.__dict__["_row"] = (type_name, names)
        return row

    def __getattr__(self, name: str):
        _, names = self.__dict__["_row"]
        if name in names:
            return self[names.index(name)]
        raise AttributeError(name)

    def __repr__(self) -> str:
        type_name, names = self.__dict__["_row"]
        return f"{type_name}({', '.join(f'{n}={v!r}' for n, v in zip(names, self))})"


class _Copy:
    """The judge's copy of a program object that equals by value: the same kind, class and
    ``_value`` (subclasses say what that is)."""

    __slots__ = ("_handle", "_cls", "_cls_name", "_value")  # underscored: fields may be named so

    def __init__(self, handle: int, cls: int, cls_name: str, value: object):
        self._handle, self._cls, self._cls_name, self._value = handle, cls, cls_name, value

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and (other._cls, other._value) == (self._cls, self._value)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash((self._cls, self._value))


class Member(_Copy):
    """A member of one of the program's Enum classes: equal to the same member (``_value``: its
    name) of the same class."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{self._cls_name}.{self._value}>"


class Record(_Copy):
    """An instance of one of the program's dataclasses: equal to a record of the same class whose
    compared fields (``_value``: (name, value) pairs) are equal, as dataclass ``__eq__`` is. Fields
    read as attributes."""

    __slots__ = ()

    def __getattr__(self, name: str):
        for key, value in object.__getattribute__(self, "_value"):
            if key == name:
                return value
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"{self._cls_name}({', '.join(f'{k}={v!r}' for k, v in self._value)})"


def decode(tree: object, link: object) -> object:
    """In the judge: data sent by the program, as the judge's own objects (``link`` makes Remotes)."""
    if type(tree) is not list:
        if tree is None or type(tree) in (bool, int, float, str):
            return tree
        raise ValueError(f"not an encoded value: {type(tree).__name__}")
    tag, rest = tree[0], tree[1:]
    if tag == "h":
        return Remote(link, int(rest[0]), str(rest[1]), str(rest[2]))
    if tag == "e":
        return Member(int(rest[0]), int(rest[1]), str(rest[2]), str(rest[3]))
    if tag == "a":
        fields = tuple((str(k), decode(v, link)) for k, v in rest[3:])
        return Record(int(rest[0]), int(rest[1]), str(rest[2]), fields)
    if tag == "n":
        return Row(tuple(decode(x, link) for x in rest[2:]), str(rest[0]), tuple(map(str, rest[1])))
    return _build(tag, rest, lambda x: decode(x, link))


def _build(tag: str, rest: list, sub) -> object:
    """A builtin value from its tag and parts (``sub`` decodes each part)."""
    if tag == "l":
        return [sub(x) for x in rest]
    if tag == "t":
        return tuple(sub(x) for x in rest)
    if tag == "d":
        return {sub(rest[i]): sub(rest[i + 1]) for i in range(0, len(rest) - 1, 2)}
    if tag in ("s", "f"):
        return (set if tag == "s" else frozenset)(sub(x) for x in rest)
    if tag == "q":
        return collections.deque(sub(x) for x in rest)
    if tag == "i":
        return int(str(rest[0]), 16)
    if tag in ("b", "B"):
        return (bytes if tag == "b" else bytearray)(bytes.fromhex(str(rest[0])))
    if tag == "c":
        return complex(float(rest[0]), float(rest[1]))
    if tag == "r":
        return range(int(rest[0]), int(rest[1]), int(rest[2]))
    if tag == "F":
        return importlib.import_module("fractions").Fraction(_int(sub(rest[0])), _int(sub(rest[1])))
    if tag == "D":
        return importlib.import_module("decimal").Decimal(str(rest[0]))
    if tag == "T" and rest[0] == "timedelta":
        return importlib.import_module("datetime").timedelta(microseconds=int(rest[1]))
    if tag == "T" and rest[0] in _TIMES:
        return getattr(importlib.import_module("datetime"), rest[0]).fromisoformat(str(rest[1]))
    raise ValueError(f"unknown value tag {tag!r}")


def _int(x: object) -> int:
    if type(x) is not int:
        raise ValueError("not an integer")
    return x


def send_back(value: object) -> bool:
    """Whether an argument is a container a call may have changed in place (sent back after it)."""
    return type(value) in (list, dict, set, bytearray)


def update(target: object, new: object) -> None:
    """Make the judge's argument ``target`` hold what the program's copy holds after the call."""
    if type(target) is not type(new):
        return
    if type(target) is list:
        target[:] = new
    elif type(target) is bytearray:
        target[:] = new
    else:
        target.clear()
        target.update(new)
