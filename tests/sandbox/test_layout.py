"""Where each half of mucode.sandbox runs: the parent never imports child/; the child side (and the
protocol both halves share) needs nothing but the standard library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import mucode.sandbox
from mucode.sandbox import pool

PACKAGE = Path(mucode.sandbox.__file__).parent
CHILD_SIDE = ("protocol.py", *(f"child/{p.name}" for p in sorted((PACKAGE / "child").glob("*.py"))))
SIBLINGS = {"protocol", *(p.stem for p in (PACKAGE / "child").glob("*.py") if p.stem != "__init__")}


def test_importing_the_sandbox_loads_no_child_module():
    # In a fresh interpreter: other tests import the child modules into this one.
    # The old flat modules, and the child modules under the names they have as a script.
    others = ["mucode._harness", "mucode._checker", "_harness", "_checker", *sorted(SIBLINGS)]
    code = ("import sys, mucode.sandbox\n"
            "print(sorted(m for m in sys.modules\n"
            f"             if m.startswith('mucode.sandbox.child') or m in {others!r}))\n"
            "print('mucode.sandbox.pool' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]


def _package_branch(tree: ast.Module) -> set[int]:
    """ids of the nodes under ``if __package__:`` at module level."""
    ids = set()
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "__package__":
            ids |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return ids


def test_the_child_side_imports_only_the_standard_library():
    for rel in CHILD_SIDE:
        tree = ast.parse((PACKAGE / rel).read_text(), rel)
        package_branch = _package_branch(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{rel}:{node.lineno}: a relative import fails in a script"
                names = [(node.module, a.name) for a in node.names]
            else:
                continue
            for module, name in names:
                top = module.split(".")[0]
                if module in ("mucode.sandbox", "mucode.sandbox.child"):  # tests' package names
                    assert name in SIBLINGS and id(node) in package_branch, \
                        f"{rel}:{node.lineno}: only siblings, only under `if __package__:`"
                else:  # as a script: the stdlib, or a sibling as a top-level module
                    assert top in sys.stdlib_module_names or top == "__future__" or module in SIBLINGS, \
                        f"{rel}:{node.lineno}: imports {module}"


def test_bubblewrap_mounts_every_file_the_server_imports():
    assert sorted(pool._SERVER_FILES) == sorted(f for f in CHILD_SIDE if f != "child/__init__.py")
