"""Test rewriting: every ``assert`` of a test snippet becomes calls to the checker's hooks. In the server.

Stdlib only; bind-mounted (bubblewrap) or read in place (plain) beside ``forkserver.py``, never
imported by the parent training process. Runs in the fork server before any program, when a test
is first seen (``checker.compile_test``) and when a job is prepared (``bind_hooks``), never after
a program ran.

``assert f(x) == y`` becomes ``check(site, cmp("==", call(site2, f, x), y))``: each call goes
through ``Hooks.call`` (which remembers where an exception came from and refuses rigged return
values) and each comparison through ``Hooks.cmp``, reached through code constants (placeholders
that ``bind_hooks`` swaps for the hooks' bound methods), not names a program could rebind.
"""

from __future__ import annotations

import ast
import types

TEST_FILE = "<test>"
_HOOKS = ("call", "cmp", "chain", "truth", "check")
_OPS = {"Eq": "==", "NotEq": "!=", "Lt": "<", "LtE": "<=", "Gt": ">", "GtE": ">=",
        "Is": "is", "IsNot": "is not", "In": "in", "NotIn": "not in"}


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


def bind_hooks(code: types.CodeType, hooks: object) -> types.CodeType:
    """Replace the hook placeholders in ``code`` (and nested code) with the bound methods of
    ``hooks`` (a ``checker.Hooks``: call, cmp, chain, truth, check)."""
    table = {f"\x00mucode-hook:{n}": getattr(hooks, n) for n in _HOOKS}

    def swap(c):
        if type(c) is types.CodeType:
            return c.replace(co_consts=tuple(swap(x) for x in c.co_consts))
        return table.get(c, c) if type(c) is str else c

    return swap(code)
