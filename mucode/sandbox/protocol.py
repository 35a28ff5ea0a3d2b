"""What both sides of the sandbox share: message framing and the one text-capping rule. Stdlib only.

Runs on both sides. The pool (``mucode.sandbox.pool``, in the training process) imports it as
``mucode.sandbox.protocol``; the fork server, run as a script inside the namespace, imports it as
the top-level module ``protocol`` (the launcher keeps this file one folder above ``child/``; see
``mucode.sandbox``). So it imports nothing from mucode and nothing outside the standard library.

A message is a 4-byte big-endian length, then that many bytes of JSON. The server's first message
says whether it is ready; after that the parent sends one job and the server answers with one
message of facts about it.
"""

from __future__ import annotations

import json
import os
import struct

HEADER = struct.Struct(">I")
MAX_MESSAGE = 1 << 30


def send_message(fd: int, obj: dict) -> None:
    """Write one length-prefixed JSON message to a file descriptor."""
    data = json.dumps(obj).encode()
    view = memoryview(HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def recv_message(fd: int) -> dict | None:
    """Read one length-prefixed JSON message; None at end of stream."""
    head = _read_exact(fd, HEADER.size)
    if head is None:
        return None
    (size,) = HEADER.unpack(head)
    if size > MAX_MESSAGE:
        raise ValueError(f"message of {size} bytes is over the {MAX_MESSAGE} limit")
    body = _read_exact(fd, size)
    if body is None:
        return None
    return json.loads(body)


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def clip(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its first ``limit - 3`` and "...".

    The result is never longer than ``limit`` when ``limit >= 3`` (below that it is "...").
    Uses nothing but builtins and its arguments: the checker rebinds it to its private copy of
    the builtins (``child/checker.py``), where a module global would not be found.
    """
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."
