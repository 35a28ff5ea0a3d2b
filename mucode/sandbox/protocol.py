"""What every side of the sandbox shares: message framing and the one text-capping rule. Stdlib only.

Runs everywhere. The pool (``mucode.sandbox.pool``, in the training process) imports it as
``mucode.sandbox.protocol``; the servers, run as scripts inside their namespaces, import it as the
top-level module ``protocol`` (the launcher keeps this file one folder above ``child/``; see
``mucode.sandbox``). So it imports nothing from mucode and nothing outside the standard library.

A message is a 4-byte big-endian length, then that many bytes of JSON, on a pipe or a Unix
socket; ``send_message`` can pass file descriptors with it (SCM_RIGHTS, sockets only). Every read
takes a deadline: a peer that stops in the middle of a message, or announces more than it sends,
costs at most the wait the caller chose, never a hang.
"""

from __future__ import annotations

import array
import json
import os
import select
import struct
import time

import _socket  # the C module: fd passing without socket.py's imports (enum, selectors), ~8 ms at start

HEADER = struct.Struct(">I")
MAX_MESSAGE = 1 << 30
JOB_MESSAGE = 64 << 20
"""The largest message either side of a job's socket reads (a request, or an answer's value)."""


class Timeout(Exception):
    """No whole message arrived before the deadline."""


def send_message(fd: int, obj: object, fds: tuple[int, ...] = ()) -> None:
    """Write one length-prefixed JSON message; ``fds`` go with its first byte (``fd`` a socket)."""
    data = json.dumps(obj, separators=(",", ":")).encode()
    view = memoryview(HEADER.pack(len(data)) + data)
    if fds:
        sock = _socket.socket(fileno=os.dup(fd))
        try:
            view = view[sock.sendmsg([view], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                               array.array("i", fds))]):]
        finally:
            sock.close()
    while view:
        view = view[os.write(fd, view):]


class Reader:
    """Reads messages from one descriptor, usually one read per message (what a read returns
    beyond the message it needs is kept for the next)."""

    def __init__(self, fd: int):
        self.fd, self.buffer = fd, b""

    def recv(self, deadline: float | None = None, limit: int = MAX_MESSAGE,
             fds: list | None = None) -> object:
        """One message; None at end of stream. ``deadline`` (time.monotonic) raises Timeout; a
        length over ``limit`` raises ValueError; descriptors passed with it go to ``fds``."""
        if not self._fill(HEADER.size, deadline, fds):
            return None
        (size,) = HEADER.unpack(self.buffer[:HEADER.size])
        if size > limit:
            raise ValueError(f"message of {size} bytes is over the {limit} limit")
        if not self._fill(HEADER.size + size, deadline, None):
            return None
        body = self.buffer[HEADER.size:HEADER.size + size]
        self.buffer = self.buffer[HEADER.size + size:]
        return json.loads(body)

    def _fill(self, size: int, deadline: float | None, fds: list | None) -> bool:
        while len(self.buffer) < size:
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0 or not select.select([self.fd], [], [], wait)[0]:
                    raise Timeout(f"no whole message within the deadline ({len(self.buffer)} bytes)")
            want = max(size - len(self.buffer), 1 << 16)
            if fds is not None:
                chunk = _recv_with_fds(self.fd, want, fds)
                fds = None  # descriptors travel with the first byte only
            else:
                chunk = os.read(self.fd, want)
            if not chunk:
                return False
            self.buffer += chunk
        return True


def _recv_with_fds(fd: int, size: int, fds: list) -> bytes:
    sock = _socket.socket(fileno=os.dup(fd))
    try:
        data, ancillary, _, _ = sock.recvmsg(size, _socket.CMSG_SPACE(16 * 4))
    finally:
        sock.close()
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            got = array.array("i")
            got.frombytes(payload[: len(payload) - len(payload) % got.itemsize])
            fds.extend(got)
    return data


def clip(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its first ``limit - 3`` and "...".

    The result is never longer than ``limit`` when ``limit >= 3`` (below that it is "...").
    """
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."
