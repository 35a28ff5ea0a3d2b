import pytest

from mucode.prompts import extract_code, first_turn, format_code, next_turn, render
from mucode.records import Problem

P = Problem("p", "Write a function f(x) that adds 1.", "f", ["assert f(1) == 2"], ["assert f(5) == 6"])


def test_first_turn_shows_public_tests_only():
    [msg] = first_turn(P)
    assert msg["role"] == "user"
    assert "assert f(1) == 2" in msg["content"] and "f(5)" not in msg["content"]


def test_next_turn_appends_code_and_feedback():
    state = next_turn(first_turn(P), "def f(x):\n    return x", "Failed: assert f(1) == 2\nf(1) returned 1")
    assert [m["role"] for m in state] == ["user", "assistant", "user"]
    assert state[1]["content"] == format_code("def f(x):\n    return x")
    assert state[2]["content"].startswith("Failed: assert f(1) == 2")
    assert extract_code(state[1]["content"], "f") == "def f(x):\n    return x"


@pytest.mark.parametrize("response, expected", [
    ("```python\ndef f(x):\n    return x + 1\n```", "def f(x):\n    return x + 1"),
    ("Here:\n```py\nimport math\n```\nand\n```python\ndef f(x):\n    return x\n```\nDone.", "def f(x):\n    return x"),
    ("```python\nimport math\n```\n```python\ndef g(x):\n    return x\n```", "import math\n\ndef g(x):\n    return x"),
    ("```python\ndef f(x):\n    return x +", "def f(x):\n    return x +"),
    ("def f(x):\n    return 2\n", "def f(x):\n    return 2"),
    ("```\ndef f(x):\n    return 3\n```", "def f(x):\n    return 3"),
    ("```python\ndef f(x): return 1\n```\n```python\ndef f(x): return 2\n```", "def f(x): return 2"),
])
def test_extract_code(response, expected):
    assert extract_code(response, "f") == expected


def test_render_ends_at_assistant_turn(tiny_tokenizer):
    text = render(tiny_tokenizer, first_turn(P))
    assert text.startswith("<|bos|><|user|>Write a function") and text.endswith("<|end|><|assistant|>")
