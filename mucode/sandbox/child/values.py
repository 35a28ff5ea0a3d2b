"""How values and exceptions read in feedback. Stdlib only; the judge and the program's side import it.

Bind-mounted (bubblewrap) or read in place (plain) beside ``forkserver.py``, never imported by the
parent training process. ``describe`` runs on both sides: in the program's process for what the
program raised (with the program's own line), in the judge for what a test raised.
"""

from __future__ import annotations

if __package__:  # imported as mucode.sandbox.child.values (tests)
    from mucode.sandbox import protocol
else:  # beside the fork server script, which put protocol.py's folder on sys.path
    import protocol

clip = protocol.clip

PROGRAM_FILE = "<program>"
__all__ = ["PROGRAM_FILE", "clip", "describe", "show"]


def show(value: object, limit: int) -> str:
    """repr() capped at ``limit`` characters; never raises."""
    try:
        text = repr(value)
    except BaseException as e:  # noqa: BLE001 - a failing repr is shown, not raised
        text = f"<unprintable {type(e).__name__}>"
    return clip(text, limit)


def describe(exc: BaseException, limit: int) -> str:
    """'Type: message (line N)' with N the program's own innermost line; no paths, no frames."""
    if isinstance(exc, MemoryError):
        return "Memory limit exceeded"
    name = type(exc).__name__
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
