"""mucode.sandbox.child.wire: values across the boundary, in one process (no sandbox)."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import json

import pytest

from mucode.sandbox.child import wire


class Color(enum.Enum):
    RED = 1


@dataclasses.dataclass
class Point:
    x: int
    y: list


class Yes:
    def __eq__(self, other):
        return True

    __hash__ = object.__hash__


def across(value, handles=None):
    """Encode on the program's side, send as JSON, decode in the judge."""
    return wire.decode(json.loads(json.dumps(wire.encode(value, handles or wire.Handles()))), link=None)


@pytest.mark.parametrize("value", [
    None, True, 0, -7, pytest.param(10 ** 5000, id="big-int"), 1.5, float("inf"), "é", b"\x00\xff",
    bytearray(b"ab"), [1, (2, 3)],
    {(1, 2): {"a": [None]}}, {1, 2}, frozenset({3}), collections.deque([1, 2]), 3 + 4j, range(1, 9, 2),
    fractions.Fraction(1, 3), decimal.Decimal("1.10"), datetime.date(2024, 2, 29),
    datetime.datetime(2024, 1, 2, 3, 4, 5, 6), datetime.time(1, 2), datetime.timedelta(days=1, seconds=3),
])
def test_data_arrives_equal_and_of_the_same_builtin_type(value):
    got = across(value)
    assert got == value and type(got) is type(value)


def test_library_types_arrive_as_what_they_equal():
    assert type(across(collections.Counter("aab"))) is dict
    assert across(collections.ChainMap({1: 2}, {3: 4})) == {1: 2, 3: 4}
    assert across({1: 2}.keys()) == {1} and type(across(collections.OrderedDict(a=1))) is dict
    row = across(collections.namedtuple("P", "x y")(1, 2))
    assert row == (1, 2) and row.y == 2 and repr(row) == "P(x=1, y=2)"


def test_subclasses_arrive_as_their_data_and_program_objects_as_handles():
    class S(str):
        def __eq__(self, other):
            return True

    assert type(across(S("no"))) is str and across(S("no")) != "yes"
    handles = wire.Handles()
    yes = across(Yes(), handles)
    assert type(yes) is wire.Remote and yes != 1 and yes != yes.__class__ and yes == yes
    with pytest.raises(wire.NotData):
        bool(yes)
    with pytest.raises(wire.NotData):
        _ = yes < 1


def test_enums_and_dataclasses_equal_by_class_and_value():
    handles = wire.Handles()
    red, point = across(Color.RED, handles), across(Point(1, [2]), handles)
    assert red == across(Color.RED, handles) and repr(red) == "<Color.RED>"
    assert point == across(Point(1, [2]), handles) and point != across(Point(1, [3]), handles)
    assert point.x == 1 and point.y == [2]
    assert wire.decode_arg(wire.encode(Point(0, []), handles), handles) == Point(0, [])


@pytest.mark.parametrize("tree", [["?"], ["F", 1.5, 2], ["d", ["l"], 1], {"a": 1}, ["T", "date", "x"]])
def test_what_the_judge_cannot_read_raises_value_or_type_error(tree):
    with pytest.raises((ValueError, TypeError)):
        wire.decode(tree, link=None)


def test_the_judge_sends_data_and_builtins_by_name_nothing_else():
    assert wire.encode([1, "a"], None) == ["l", 1, "a"] and wire.encode(len, None) == ["x", "len"]
    with pytest.raises(wire.EncodeError):
        wire.encode(lambda: 1, None)
    deep: list = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(wire.EncodeError):
        wire.encode(deep, None)
