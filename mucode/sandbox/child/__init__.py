"""The sandbox's child side: stdlib only; bind-mounted into the namespace (run in place under plain
isolation); never imported by the parent training process.

``forkserver.py`` is the server the pool starts as a script, one per worker; ``checker.py`` runs a
program and its tests in each forked child, with ``values.py`` (strict comparison) and
``rewrite.py`` (asserts -> hooks). They import each other and ``../protocol.py`` as top-level
modules (how: ``mucode.sandbox``), so nothing here may import mucode or a package outside the
standard library. This ``__init__`` exists so that tests can import ``mucode.sandbox.child.*``;
the server never executes it.
"""
