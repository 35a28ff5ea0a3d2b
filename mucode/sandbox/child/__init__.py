"""The sandbox's child side: stdlib only; bind-mounted into the namespaces (run in place under plain
isolation); never imported by the parent training process.

``forkserver.py`` is the script the pool starts twice per worker: as the program server, which
runs each program in a fresh process (``program.py``), and as the judge server, which runs the
tests against it (``judge.py``, with ``rewrite.py``: asserts -> hooks). Values cross between
them as data (``wire.py``); ``values.py`` writes feedback text. They import each other and
``../protocol.py`` as top-level modules (how: ``mucode.sandbox``), so nothing here may import
mucode or a package outside the standard library. This ``__init__`` exists so that tests can
import ``mucode.sandbox.child.*``; the servers never execute it.
"""
