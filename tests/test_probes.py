"""mucode.probes: probe calls from public tests only, and the output signature the sandbox gives."""

from mucode.probes import SENTINEL, outputs, probe_tests
from mucode.records import Problem
from mucode.sandbox import Job, Sandbox, SandboxConfig


def probe(call: str) -> str:
    return f"assert {call} == {SENTINEL!r}"


PROBLEM = Problem("p", "", "f", ["assert f([1, 2, 3], k=2) == 4", "assert abs(f([], k=-1) - 1) < 1e-6"],
                  ["assert f([7], k=9) == 0"])


def test_probe_calls_are_the_public_calls_then_variants_round_robin():
    assert probe_tests(PROBLEM, 0) == [probe("f([1, 2, 3], k=2)"), probe("f([], k=-1)")]
    assert probe_tests(PROBLEM, 8)[2:] == [probe(c) for c in (
        "f([3, 2, 1], k=2)", "f([], k=0)",   # the first change of each public call,
        "f([1, 2], k=2)", "f([], k=-2)",     # then the second,
        "f([1, 2, 3], k=3)", "f([1, 2, 3], k=1)")]
    assert len(probe_tests(PROBLEM, 3)) == 5


def test_probes_never_read_private_tests_and_keep_a_prelude():
    probes = probe_tests(PROBLEM, 100)
    assert not any("7" in t or "9" in t for t in probes)  # the private test's inputs
    humaneval = Problem("h", "", "g", ["def helper(x):\n    return x\nassert g(helper(2)) == 3"], [])
    assert probe_tests(humaneval, 4) == [f"def helper(x):\n    return x\n{probe('g(helper(2))')}"]
    assert probe_tests(Problem("q", "", "g", ["assert True", "assert g("], []), 4) == []


def test_outputs_agree_on_behaviour_and_split_near_misses():
    problem = Problem("p", "", "f", ["assert f(3) == 9"], [])
    programs = {
        "square": "def f(x):\n    return x * x",
        "square_again": "def f(x):\n\n    y = x ** 2\n    return y",   # same outputs, other lines
        "three_x": "def f(x):\n    return 3 * x",                      # passes f(3), differs on f(4)
        "crash": "def f(x):\n    return 1 // (x - 2)",
        "crash_later": "def f(x):\n\n    return 1 // (x - 2)",          # the same exception, another line
    }
    tests = probe_tests(problem, 2)
    assert tests == [probe("f(3)"), probe("f(4)"), probe("f(2)")]
    with Sandbox(SandboxConfig(timeout_s=2.0, workers=1)) as sandbox:
        results = sandbox.run_batch([Job(code, tests) for code in programs.values()])
    sig = dict(zip(programs, map(outputs, results)))
    assert sig["square"] == sig["square_again"] != sig["three_x"]
    assert sig["crash"] == sig["crash_later"] and "ZeroDivisionError" in sig["crash"][-1]
    assert sig["square"][2].endswith("f(3) returned 9") and sig["three_x"][3].endswith("f(4) returned 12")
