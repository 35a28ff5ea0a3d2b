"""The program's side of a job: run its top level, then answer the judge. Runs in the program's process.

Stdlib only; bind-mounted (bubblewrap) or read in place (plain) beside ``forkserver.py``, never
imported by the parent training process. The program server forks a child per job (``forkserver``)
which calls ``serve``: it runs the program's top level in a fresh module, says whether it loaded,
then answers requests on the job's socket until the judge hangs up. Requests (JSON, ``protocol``)::

    {"op": "names", "names": [...]}            -> {"ok": {name: value}} for the names it defines
    {"op": "call", "h": H, "args": [...], "kw": {...}}
                                               -> {"ok": value, "back": [args a call may change]}
    {"op": "getattr" | "setattr", "h": H, "name": N[, "value": V]}
    {"op": "iter" | "next", "h": H}
    any of them may answer {"raise": type name, "text": "Type: message (line N)", "memory": bool}

Values are ``wire`` encodings. Nothing here is a secret and nothing here is trusted: the program
can patch or replace any of it, which changes only what it answers, as its own code could. It
never receives a test or an expected value, only the arguments of the calls the judge makes.
"""

from __future__ import annotations

import builtins
import os
import sys
import types

if __package__:  # imported as mucode.sandbox.child.program (tests)
    from mucode.sandbox import protocol
    from mucode.sandbox.child import values, wire
else:  # beside the fork server script, which put protocol.py's folder on sys.path
    import protocol
    import values
    import wire

_EXCEPTIONS = frozenset(n for n, v in vars(builtins).items()
                        if isinstance(v, type) and issubclass(v, BaseException))


def serve(source: str, sock: int, limit: int) -> None:
    """Run ``source`` as a module, report whether it loaded, then answer requests on ``sock``."""
    module = types.ModuleType("program")
    sys.modules["program"] = sys.modules["__main__"] = module
    ns = module.__dict__
    handles = wire.Handles()
    error = _load(source, ns, limit)
    if error is not None:
        _send(sock, {"load_error": error, "memory": error == "Memory limit exceeded"})
        return
    _send(sock, {"loaded": True})
    reader = protocol.Reader(sock)
    while True:
        try:
            request = reader.recv(limit=protocol.JOB_MESSAGE)
        except BlockingIOError:  # the program made its own socket non-blocking
            os.set_blocking(sock, True)
            continue
        except (OSError, ValueError):
            return
        if request is None:
            return
        try:
            reply = _answer(request, ns, handles, limit)
        except BaseException as e:  # noqa: BLE001 - the program's failure is data
            reply = _raised(e, limit)
        _send(sock, reply)


def _send(sock: int, reply: dict) -> None:
    try:
        protocol.send_message(sock, reply)
    except (OSError, ValueError, TypeError, RecursionError, MemoryError) as e:
        protocol.send_message(sock, {"raise": type(e).__name__, "memory": isinstance(e, MemoryError),
                                     "text": f"the value could not be sent ({type(e).__name__})"})


def _load(source: str, ns: dict, limit: int) -> str | None:
    try:
        exec(compile(source, values.PROGRAM_FILE, "exec", dont_inherit=True), ns)
    except BaseException as e:  # noqa: BLE001 - the program's failure is data
        return values.describe(e, limit)
    return None


def _answer(request: dict, ns: dict, handles: wire.Handles, limit: int) -> dict:
    op = request["op"]

    def enc(value: object) -> object:
        return wire.encode(value, handles, limit)

    if op == "names":
        return {"ok": {n: enc(ns[n]) for n in request["names"] if type(n) is str and n in ns}}
    target = handles.find(request["h"])
    if op == "call":
        args = [wire.decode_arg(a, handles) for a in request["args"]]
        kwargs = {k: wire.decode_arg(v, handles) for k, v in request["kw"].items()}
        value = target(*args, **kwargs)
        return {"ok": enc(value), "back": [enc(a) if wire.send_back(a) else None for a in args]}
    if op == "getattr":
        return {"ok": enc(getattr(target, request["name"]))}
    if op == "setattr":
        setattr(target, request["name"], wire.decode_arg(request["value"], handles))
        return {"ok": None}
    if op == "iter":
        return {"ok": enc(iter(target))}
    if op == "next":
        return {"ok": enc(next(target))}
    raise ValueError(f"unknown request {op!r}")


def _raised(e: BaseException, limit: int) -> dict:
    name = type(e).__name__
    try:
        message = values.clip(str(e), limit)
    except BaseException:  # noqa: BLE001 - a failing __str__ is shown as nothing
        message = ""
    return {"raise": name if name in _EXCEPTIONS else "", "memory": isinstance(e, MemoryError),
            "message": message, "text": values.describe(e, limit)}

