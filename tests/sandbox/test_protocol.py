"""mucode.sandbox.protocol: the truncation rule against hand-computed values, and message framing."""

from __future__ import annotations

import os
import socket
import time

import pytest

from mucode.sandbox.protocol import HEADER, MAX_MESSAGE, Reader, Timeout, clip, send_message


@pytest.mark.parametrize("text, limit, expected", [
    ("abcdef", 6, "abcdef"),                # exactly at the limit: unchanged
    ("abcdefg", 6, "abc..."),               # one over: limit - 3 characters and "..."
    ("hello world", 8, "hello..."),
    ("", 0, ""),
    ("ab", 2, "ab"),
    ("abc", 2, "..."),                      # below 3 the "..." alone is over the limit
    ("x" * 1001, 1000, "x" * 997 + "..."),
    ("héllo wörld", 7, "héll..."),          # characters, not bytes
])
def test_clip(text, limit, expected):
    assert clip(text, limit) == expected


def test_messages_round_trip_and_the_end_of_stream_is_none():
    r, w = os.pipe()
    send_message(w, {"program": "x = 'é'\n", "tests": ["assert x"], "n_public": 1})
    send_message(w, [1, 2])  # read ahead by the first read: kept for the next message
    os.close(w)
    reader = Reader(r)
    assert reader.recv() == {"program": "x = 'é'\n", "tests": ["assert x"], "n_public": 1}
    assert reader.recv() == [1, 2]
    assert reader.recv() is None
    os.close(r)


def test_descriptors_travel_with_a_message():
    a, b = socket.socketpair()
    r, w = os.pipe()
    send_message(a.fileno(), {"job": 1}, (w,))
    fds: list = []
    assert Reader(b.fileno()).recv(fds=fds) == {"job": 1} and len(fds) == 1
    os.write(fds[0], b"x")  # a new descriptor of the same pipe
    assert os.read(r, 1) == b"x"
    for fd in (r, w, *fds):
        os.close(fd)
    a.close()
    b.close()


def test_a_cut_oversized_or_late_message():
    r, w = os.pipe()
    os.write(w, HEADER.pack(10) + b"{}")  # promises 10 bytes, then the stream ends
    os.close(w)
    assert Reader(r).recv() is None
    os.close(r)
    r, w = os.pipe()
    os.write(w, HEADER.pack(MAX_MESSAGE + 1))
    with pytest.raises(ValueError, match="over the"):
        Reader(r).recv()
    os.close(r)
    os.close(w)
    r, w = os.pipe()
    os.write(w, HEADER.pack(10) + b"{}")  # promises 10 bytes and sends no more: a deadline ends it
    start = time.monotonic()
    with pytest.raises(Timeout):
        Reader(r).recv(deadline=start + 0.2)
    assert time.monotonic() - start < 2
    os.close(r)
    os.close(w)
